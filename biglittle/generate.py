"""The public entry points: `generate` (whole result) and `stream` (chunks as they are committed).

This file checks the inputs, turns the prompt into token ids, runs the decode loop and turns
committed tokens into text, honouring stop strings.
"""
from __future__ import annotations

import time
from typing import Iterator, Sequence

from .decoding.policies import BiLD, Policy
from .decoding.result import Chunk, GenerationResult, Stats
from .decoding.sampling import Sampler
from .errors import ConfigError, PromptError, VocabMismatchError

# Text whose token ids must agree between two tokenizers that claim to be the same.
_TOKENIZER_PROBE = "def fib(n):\n    return n if n < 2 else fib(n-1) + fib(n-2)  # Grüße, 你好! 3.14"


def generate(small, big, prompt, policy: Policy | None = None, max_new_tokens: int = 64,
             temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
             seed: int | None = None, stop: str | Sequence[str] | None = None,
             chat: bool = False, allow_topk_sampling: bool = False) -> GenerationResult:
    """Generate up to `max_new_tokens` tokens after `prompt` with a small and a big model.

    prompt: a string (tokenized with the big model's tokenizer; chat=True applies its chat
    template, and a list of {"role", "content"} messages is also accepted then) or a list of
    token ids. small may be None for BigOnly, big may be None for SmallOnly.
    seed: None (the default) draws fresh randomness for every call, without touching torch's
    global RNG; an integer makes sampled output reproducible.
    allow_topk_sampling: let a big model that reports only top-k log-probs (a remote server) be
    sampled from its renormalised top-k; without it such a model is greedy-only.
    """
    final = None
    for chunk in stream(small, big, prompt, policy=policy, max_new_tokens=max_new_tokens,
                        temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, stop=stop, chat=chat,
                        allow_topk_sampling=allow_topk_sampling):
        final = chunk.final
    assert final is not None
    return final


def stream(small, big, prompt, policy: Policy | None = None, max_new_tokens: int = 64,
           temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
           seed: int | None = None, stop: str | Sequence[str] | None = None,
           chat: bool = False, allow_topk_sampling: bool = False) -> Iterator[Chunk]:
    """Like `generate`, but yields a Chunk each time tokens are committed (never tokens that a
    later rollback could take back). The last chunk carries the whole result in `.final`.
    Closing the iterator early stops the generation."""
    policy = BiLD() if policy is None else policy
    sampler = Sampler(temperature, top_k, top_p, seed)  # validates the sampling settings
    check_pair(small, big, policy)
    if not sampler.greedy and policy.uses_big and not getattr(big, "full_distribution", True) \
            and not allow_topk_sampling:
        raise ConfigError(f"{big.spec} reports only the top-k of each distribution, so sampling from it would "
                          "not be exact; use temperature=0, or pass allow_topk_sampling=True to sample from "
                          "the renormalised top-k (an approximation)")
    lead = big if policy.uses_big else small
    prompt_ids = encode_prompt(lead, prompt, chat)
    check_budget(prompt_ids, max_new_tokens, [m for m in (small, big) if m is not None], lead.vocab_size)
    stops = _stop_list(stop, lead)
    return _run(small, big, lead, prompt_ids, policy, sampler, max_new_tokens, stops)


def _run(small, big, lead, prompt_ids, policy, sampler, max_new_tokens, stops) -> Iterator[Chunk]:
    stats = Stats(policy=policy.describe(), prompt_tokens=len(prompt_ids))
    text = TextTracker(lead.tokenizer, stops)
    token_ids: list[int] = []
    origins: list[str] = []
    reasons: list[str] = []
    t0 = time.perf_counter()
    steps = policy.run(small, big, prompt_ids, sampler, max_new_tokens, stats)
    for new, who, *why in steps:  # a policy may yield reasons too (see decoding.loop.decode)
        why = why[0] if why else list(who)
        keep, delta = text.add(new)
        token_ids += new[:keep]
        origins += who[:keep]
        reasons += why[:keep]
        if text.stopped:  # a stop string ended the text: stop the loop, this becomes the last chunk
            steps.close()
            stats.finish_reason = "stop"
            last = Chunk(new[:keep], who[:keep], delta, reasons=why[:keep])
            break
        yield Chunk(new, who, delta, reasons=why)
    else:
        last = Chunk([], [], text.flush(), reasons=[])
    stats.wall_s = time.perf_counter() - t0
    stats.count_output(origins)  # output counters: the returned tokens only (see Stats)
    last.final = GenerationResult(token_ids, origins, stats, text.text if lead.tokenizer else None,
                                  list(prompt_ids), reasons)
    yield last


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
        same = _common_prefix(before, after)
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


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


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


# ---------------------------------------------------------------- input checks

def check_pair(small, big, policy: Policy) -> None:
    """The models the policy needs are there and share one vocabulary."""
    if policy.uses_big and big is None:
        raise ConfigError(f"policy {policy.name!r} needs a big model (got big=None)")
    if policy.uses_small and small is None:
        raise ConfigError(f"policy {policy.name!r} needs a small model (got small=None); "
                          "use BigOnly() to run the big model alone")
    if small is None or big is None or not (policy.uses_small and policy.uses_big):
        return
    if small.vocab_size != big.vocab_size:
        raise VocabMismatchError(
            f"the small and big models have different vocabularies (small: {small.vocab_size} tokens, "
            f"big: {big.vocab_size} tokens); big–little decoding needs models that share a tokenizer")
    if small.tokenizer is not None and big.tokenizer is not None:
        a, b = small.tokenizer.encode(_TOKENIZER_PROBE), big.tokenizer.encode(_TOKENIZER_PROBE)
        if a != b:
            raise VocabMismatchError(
                f"the small and big models have vocabularies of the same size ({big.vocab_size}) but "
                "their tokenizers split text differently; big–little decoding needs one shared tokenizer")


def encode_prompt(model, prompt, chat: bool) -> list[int]:
    if isinstance(prompt, str) or (chat and isinstance(prompt, list) and prompt and isinstance(prompt[0], dict)):
        if isinstance(prompt, str) and not prompt.strip():
            raise PromptError("the prompt is empty")
        if model.tokenizer is None:
            raise PromptError(f"{model.spec} has no tokenizer: pass the prompt as a list of token ids")
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        ids = model.tokenizer.apply_chat(messages) if chat else model.tokenizer.encode(prompt)
    elif isinstance(prompt, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        ids = list(prompt)
        bad = [t for t in ids if not 0 <= t < model.vocab_size]
        if bad:
            raise PromptError(f"prompt token ids must be in [0, {model.vocab_size}); got {bad[:5]}")
    else:
        raise PromptError("the prompt must be a string or a list of token ids "
                          "(or, with chat=True, a list of {'role', 'content'} messages)")
    if not ids:
        raise PromptError("the prompt is empty")
    return ids


def check_budget(prompt_ids: list[int], max_new_tokens: int, models: list, vocab_size: int) -> None:
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be an integer ≥ 1, got {max_new_tokens!r}")
    windows = [m.context_length for m in models if m.context_length]
    if windows and len(prompt_ids) + max_new_tokens > min(windows):
        raise PromptError(
            f"the prompt ({len(prompt_ids)} tokens) plus max_new_tokens ({max_new_tokens}) is "
            f"{len(prompt_ids) + max_new_tokens} tokens, beyond the context window of {min(windows)}; "
            "shorten the prompt or lower max_new_tokens")


def _stop_list(stop, model) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    if not all(isinstance(s, str) and s for s in stops):
        raise ConfigError(f"stop must be a non-empty string or a list of them, got {stop!r}")
    if model.tokenizer is None:
        raise ConfigError("stop strings need a tokenizer; this model takes token ids only")
    return stops
