"""Prompt lookup: drafts copied from the text so far, at no model cost.

An n-gram index over the committed sequence (prompt + everything written). To draft, find the
most recent earlier occurrence of the sequence's last n tokens (n from `ngram` down to 1) and
propose the tokens that followed it (Saxena's prompt-lookup decoding). Answers that copy their
input — edits of given code, summaries, answers from a given document — are long runs of such
tokens, and the big model verifies a whole run in one pass.
"""
from __future__ import annotations

from typing import Sequence


class PromptLookup:
    """Incremental n-gram index: each committed token is indexed once (O(ngram) per token)."""

    def __init__(self, ngram: int = 3):
        if not isinstance(ngram, int) or isinstance(ngram, bool) or ngram < 1:
            raise ValueError(f"ngram must be an integer ≥ 1, got {ngram!r}")
        self.ngram = ngram
        self.seq: list[int] = []
        # index[n-1][gram] = the position right after the most recent occurrence of that n-gram
        # whose next token is known (so the sequence's own last n tokens never match themselves)
        self.index: list[dict[tuple[int, ...], int]] = [{} for _ in range(ngram)]

    def catch_up(self, seq: Sequence[int]) -> None:
        """Catch up with the committed sequence (which only grows)."""
        for token in seq[len(self.seq):]:
            self.seq.append(token)
            end = len(self.seq) - 1  # the n-grams ending just before `token` now have a known successor
            for n in range(1, self.ngram + 1):
                if end >= n:
                    self.index[n - 1][tuple(self.seq[end - n:end])] = end

    def propose(self, limit: int) -> tuple[list[int], int]:
        """Up to `limit` tokens that followed the latest earlier occurrence of the longest
        matching suffix, and that suffix's length n (0 and [] when nothing matches)."""
        if limit < 1:
            return [], 0
        for n in range(min(self.ngram, len(self.seq)), 0, -1):
            start = self.index[n - 1].get(tuple(self.seq[-n:]))
            if start is not None:
                return self.seq[start:start + limit], n
        return [], 0
