"""An encoder–decoder model bound to one source, so the loop sees a decoder-only model.

The loop, every token-level policy, contrastive decoding and cascades open their sessions with
`model.session()` and feed a "prompt". For an encoder–decoder pair, `generate` binds each model
to the request's source: the bound model's `session()` opens `model.session(source_ids=…)`, so
each model runs its own encoder over the source once per session, and the decoder prompt is
`model.decoder_start_ids`. Everything else (vocabulary, tokenizer, EOS, context length) is the
model's own.
"""
from __future__ import annotations

from typing import Sequence

from ..errors import ConfigError, PromptError, VocabMismatchError
from ..tokens import same_tokenizer


def check_source(model, source_ids: Sequence[int]) -> None:
    """The source fits the model's encoder: ids in its vocabulary, length within its positions."""
    bad = [t for t in source_ids if not 0 <= t < model.vocab_size]
    if bad:
        raise PromptError(f"source token ids must be in [0, {model.vocab_size}); got {bad[:5]}")
    if model.context_length and len(source_ids) > model.context_length:
        raise PromptError(f"the source has {len(source_ids)} tokens; {model.spec}'s encoder takes at most "
                          f"{model.context_length}")


def check_kinds(small, big) -> None:
    """Two models that draft and verify for each other are of one kind; two encoder–decoder models
    share one decoder vocabulary (no bridging: the source is encoded once, for both, in one vocabulary)."""
    kinds = ["encoder–decoder" if getattr(m, "encoder_decoder", False) else "decoder-only" for m in (small, big)]
    if kinds[0] != kinds[1]:
        raise ConfigError(f"the small model is {kinds[0]} and the big one {kinds[1]}; big–little decoding needs "
                          "two of one kind (both decoder-only, or both encoder–decoder)")
    if kinds[0] == "decoder-only":
        return
    if small.vocab_size != big.vocab_size or (small.tokenizer is not None and big.tokenizer is not None
                                              and not same_tokenizer(small.tokenizer, big.tokenizer)):
        raise VocabMismatchError(
            f"the small and big encoder–decoder models have different vocabularies (small: {small.vocab_size} "
            f"tokens, big: {big.vocab_size}); an encoder–decoder pair needs one shared tokenizer")


class SourceBound:
    """`model` with `source_ids` fixed: a model of the decoder-only protocol (models/base.py)."""

    encoder_decoder = False  # bound to its source, it is driven like a decoder-only model

    def __init__(self, model, source_ids: Sequence[int]):
        check_source(model, source_ids)
        self.unbound = model  # pair_memory keys on it, so what a pair learns outlives the request
        self.source_ids = list(source_ids)

    def session(self):
        return self.unbound.session(source_ids=self.source_ids)

    def __getattr__(self, name):
        if name == "unbound":  # not set yet (a copy being built): no attribute, rather than recursion
            raise AttributeError(name)
        # spec, backend, vocab_size, context_length, tokenizer, eos_token_ids and whatever else
        # the backend offers (full_distribution, on_failure, net, ...) are the model's own
        return getattr(self.unbound, name)

    def __repr__(self) -> str:
        return f"SourceBound({self.unbound!r}, source={len(self.source_ids)} tokens)"


def bind_source(model, source_ids: Sequence[int]) -> SourceBound | None:
    """`model` bound to the source (None stays None: a policy may run without one of the models)."""
    return None if model is None else SourceBound(model, source_ids)
