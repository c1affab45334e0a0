"""Committed token ids to streamed text: incremental detokenizing, stop strings, hold-back.

Every commit costs O(new tokens), and the streamed deltas add up to the final text for every
tokenizer (see TextTracker).
"""
from __future__ import annotations

from ..tokens import common_prefix

# Tokens of already-read text decoded again in front of new ones, so joins across the boundary
# come out as in a whole decode: a multi-byte character split over up to 4 byte tokens, a
# SentencePiece leading space (the same left context as vLLM's incremental detokenizer).
LEFT_CONTEXT = 5
# Characters a later token may still rewrite, so never emitted while they end the text: "\ufffd"
# (an incomplete character; at most 3 of them, one per byte, per incomplete character) and
# whitespace (a decode's cleanup drops a space before punctuation: " ," → ",").
TENTATIVE_CHARS, MAX_TENTATIVE = "\ufffd \t\n\r", 4


class Detokenizer:
    """Token ids to text, incrementally: each `add` decodes a window of LEFT_CONTEXT read tokens
    plus the new ones (vLLM's prefix/read offsets), so it costs O(new tokens), not O(answer).

    The window's text past the context's text is appended. When a decode rewrites the end of
    the context's text instead (a completed character replaces "\ufffd"; cleanup turns " ," into
    ","), those characters of `text` are rewritten too if none of them was emitted yet (`frozen`);
    otherwise the emitted ones stay and only what follows them in the new decode is added."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.ids: list[int] = []
        self.text = ""

    def add(self, new: list[int], frozen: int) -> int:
        """Append tokens; return the index of `text` from which it changed."""
        read = len(self.ids)
        start = max(0, read - LEFT_CONTEXT)
        self.ids += new
        before = self.tok.decode(self.ids[start:read]) if read > start else ""
        after = self.tok.decode(self.ids[start:])
        if after.startswith(before):
            changed, self.text = len(self.text), self.text + after[len(before):]
            return changed
        same = common_prefix(before, after)
        old, fresh = before[same:], after[same:]
        cut = len(self.text) - len(old)
        if cut >= frozen and self.text.endswith(old):
            self.text = self.text[:cut] + fresh
            return cut
        keep = max(frozen, cut)
        kept = self.text[:keep]
        self.text = kept + fresh[_overlap(kept[max(cut, 0):], fresh):]
        return keep


class TextTracker:
    """Turns committed token ids into text deltas, cuts the text at the first stop string,
    and holds back text that may still become a stop string or be rewritten (an incomplete
    character, a trailing space).

    The result's text is the text built here, delta by delta, not a fresh decode of all the
    tokens: so the streamed chunks add up to it by construction, for every tokenizer, even one
    whose decode rewrites earlier text (then it can differ from a whole decode, e.g. keep a
    space before a comma that was streamed before the comma came)."""

    def __init__(self, tokenizer, stops: list[str]):
        self.tok, self.stops = tokenizer, stops
        self.detok = Detokenizer(tokenizer) if tokenizer is not None else None
        self.emitted = 0  # characters of text already streamed: never rewritten or cut
        self.stopped = False
        self.cut: int | None = None

    @property
    def text(self) -> str:
        return self.detok.text[:self.cut] if self.detok else ""

    def add(self, new: list[int]) -> tuple[int, str]:
        """Add committed tokens; return (how many of them to keep, the text to emit now)."""
        if self.detok is None:
            return len(new), ""
        if not self.stops:
            self.detok.add(new, self.emitted)
            return len(new), self._emit(_final_length(self.detok.text, [], self.emitted))
        for keep in range(1, len(new) + 1):  # token by token, to end at the token completing a stop
            changed = self.detok.add(new[keep - 1:keep], self.emitted)
            cut = _first_stop(self.detok.text, self.stops, changed)
            if cut >= 0:
                self.stopped, self.cut = True, max(cut, self.emitted)  # emitted text is never taken back
                return keep, self._emit(self.cut)
        return len(new), self._emit(_final_length(self.detok.text, self.stops, self.emitted))

    def flush(self) -> str:
        """Whatever was held back, once no more tokens will come."""
        return self._emit(len(self.text))

    def _emit(self, upto: int) -> str:
        if upto <= self.emitted:
            return ""
        delta, self.emitted = self.detok.text[self.emitted:upto], upto
        return delta


def _overlap(emitted: str, fresh: str) -> int:
    """The longest start of `fresh` that `emitted` already ends with (not to stream it twice)."""
    return next((k for k in range(min(len(emitted), len(fresh)), 0, -1) if emitted.endswith(fresh[:k])), 0)


def _first_stop(text: str, stops: list[str], changed: int) -> int:
    """Where the first stop string in text starts (-1: none); text before `changed` had none."""
    since = max(0, changed - max(len(s) for s in stops) + 1)
    hits = [i for i in (text.find(s, since) for s in stops) if i >= 0]
    return min(hits) if hits else -1


def _final_length(text: str, stops: list[str], emitted: int) -> int:
    """How much of text is final: not a tail a later token may rewrite (TENTATIVE_CHARS), nor
    one that could still grow into a stop string. Looks only at the end, so O(1) in the text."""
    end = len(text)
    while end > max(emitted, len(text) - MAX_TENTATIVE) and text[end - 1] in TENTATIVE_CHARS:
        end -= 1
    hold = 0
    for s in stops:
        for n in range(min(len(s) - 1, end), 0, -1):
            if text.endswith(s[:n], 0, end):
                hold = max(hold, n)
                break
    return max(emitted, end - hold)
