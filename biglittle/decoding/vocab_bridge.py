"""Drafting with a small model whose tokenizer is not the big model's (universal assisted
generation, HF 2024; Timor et al. 2025).

The small model keeps its own token sequence: the prompt in its own tokens, then the committed
text re-encoded with its tokenizer. Its drafts go to the big model as text: decoded with the small
tokenizer, encoded with the big one. Verification compares the big model's own tokens, so greedy
decoding stays exactly the big model's; sampling across two vocabularies is refused (the draft's
distribution over the big model's tokens is not known).
"""
from __future__ import annotations

from typing import Sequence


class VocabBridge:
    def __init__(self, small_tok, big_tok, small_prompt: Sequence[int], big_prompt_len: int):
        self.small_tok, self.big_tok = small_tok, big_tok
        self.small_prompt, self.big_prompt_len = list(small_prompt), big_prompt_len
        self._small_specials = small_tok.encode("")   # what `encode` adds around any text (a BOS)
        self._big_specials = big_tok.encode("")

    def small_seq(self, big_seq: Sequence[int]) -> list[int]:
        """The committed sequence in the small model's tokens: its own prompt, then the text the
        big model's tokens after the prompt spell, re-encoded."""
        text = self.big_tok.decode(list(big_seq[self.big_prompt_len:]))
        return self.small_prompt + _plain(self.small_tok.encode(text), self._small_specials) if text \
            else list(self.small_prompt)

    def to_big(self, small_drafts: Sequence[int]) -> list[int]:
        """The small model's drafts as big-model tokens. An incomplete character at the end (a
        multi-byte character split over tokens) is left for the next round."""
        text = self.small_tok.decode(list(small_drafts)).rstrip("\ufffd")
        return _plain(self.big_tok.encode(text), self._big_specials) if text else []


def _plain(ids: list[int], specials: list[int]) -> list[int]:
    """ids without the special tokens the tokenizer adds in front of any text."""
    n = len(specials)
    return ids[n:] if n and ids[:n] == specials else ids
