"""Hugging Face transformers backend for encoder–decoder models (T5, mT5, BART, Marian, NLLB).

A session belongs to one source: it runs the encoder once when it starts and keeps its output.
After that the session is a decoder-side session like any other — `extend` appends decoder
tokens, `truncate` rolls them back — so the loop and every token-level policy run unchanged.
The cache is an `EncoderDecoderCache`: its self-attention half is cropped in place on
`truncate`; its cross-attention half (keys and values of the encoder output) is filled by the
first `extend` and never recomputed, so a rollback never re-encodes.

A decoder sequence starts with `model.decoder_start_ids` (T5: the pad token), the way a causal
LM's prompt starts with its BOS; the source is not part of the decoder's positions.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch

from ..errors import ModelSpecError, PromptError
from .device import resolve_device
from .hf import DTYPES, HFModel, HFSession, HFTokenizer
from .source_bound import check_source


# a tokenizer's own files: save_pretrained writes the first; hub repos of T5, Marian, NLLB and BART
# may have only one of the others
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "spiece.model", "source.spm",
                   "sentencepiece.bpe.model", "vocab.json")


class Seq2SeqTokenizer(HFTokenizer):
    """The model's tokenizer; the source goes through `encode` (with the model's special tokens,
    e.g. T5's closing </s>), the decoder's output through `decode`."""

    def apply_chat(self, messages: list[dict]) -> list[int]:
        raise ModelSpecError("chat does not apply to an encoder–decoder model: give the source text as the "
                             "prompt and drop --chat / chat=True")


class HFSeq2SeqSession(HFSession):
    """An HFSession on the decoder side: the source is encoded once, when the session opens, and
    every decoder step reads that output; truncate crops the self-attention half of the cache only."""

    def __init__(self, model: "HFSeq2SeqModel", source_ids: Sequence[int]):
        self._model = model
        src = torch.tensor([list(source_ids)], dtype=torch.long, device=model.device)
        with torch.inference_mode(), model.lock:
            self._encoded = model.net.get_encoder()(input_ids=src, return_dict=True)
        self._cache, self._stuck = self._new_cache()
        self._ids: list[int] = []
        self._cached = 0

    def _new_cache(self):
        from transformers import DynamicCache, EncoderDecoderCache

        cfg = self._model.net.config
        return EncoderDecoderCache(DynamicCache(config=cfg), DynamicCache(config=cfg)), []

    def _layers(self):
        # after the first extend the cross-attention half is complete and never changes; a failure
        # in the first one starts the whole cache afresh (HFSession._restore)
        return self._cache.self_attention_cache.layers

    def _forward(self, ids: torch.Tensor, keep: int):
        # passing encoder_outputs skips the encoder
        return self._model.net(encoder_outputs=self._encoded, decoder_input_ids=ids, cache=self._cache,
                               use_cache=True)


class HFSeq2SeqModel(HFModel):
    backend = "hf-seq2seq"
    encoder_decoder = True

    def __init__(self, spec: str, net, tokenizer: Seq2SeqTokenizer | None):
        super().__init__(spec, net, tokenizer)
        start = net.generation_config.decoder_start_token_id
        if start is None:
            start = net.config.decoder_start_token_id
        if start is None:
            raise ModelSpecError(f"{spec}: the model's config names no decoder_start_token_id")
        self.decoder_start_ids = [int(start)]

    def session(self, source_ids: Sequence[int] | None = None) -> HFSeq2SeqSession:
        if not source_ids:
            raise PromptError(f"{self.spec} is an encoder–decoder model: a session needs the source's token ids "
                              "(model.session(source_ids=model.encode_source(text)))")
        check_source(self, source_ids)
        return HFSeq2SeqSession(self, source_ids)

    def encode_source(self, text: str) -> list[int]:
        """The source's token ids as this model's encoder expects them."""
        if self.tokenizer is None:
            raise PromptError(f"{self.spec} has no tokenizer; pass the source as token ids")
        return self.tokenizer.encode(text)

    def __repr__(self) -> str:
        return f"HFSeq2SeqModel({self.spec!r}, vocab={self.vocab_size})"


def load_hf_seq2seq(spec: str, path_or_id: str, dtype: str = "float32", device: str | None = "auto",
                    **kwargs) -> HFSeq2SeqModel:
    """Load an encoder–decoder model with transformers. `path_or_id` is a local folder or a hub id;
    `device` as for load_hf (the encoder output and the cache live there too)."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    if dtype not in DTYPES:
        raise ModelSpecError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    dev = resolve_device(device)
    path = os.path.expanduser(path_or_id)
    if path_or_id.startswith((".", "/", "~")) and not os.path.isdir(path):
        raise ModelSpecError(f"{spec}: no such model folder {path!r}")
    try:
        net = AutoModelForSeq2SeqLM.from_pretrained(path, dtype=DTYPES[dtype], **kwargs).to(dev).eval()
    except (OSError, ValueError) as e:
        raise ModelSpecError(f"{spec}: could not load encoder–decoder weights ({e})") from e
    tok = None  # a weights-only folder: token-id sources still work
    # transformers builds an empty-vocabulary T5 tokenizer for a folder without tokenizer files
    # (every text becomes <unk>), so a local folder must have them
    if not os.path.isdir(path) or any(os.path.exists(os.path.join(path, f)) for f in TOKENIZER_FILES):
        try:
            tok = Seq2SeqTokenizer(AutoTokenizer.from_pretrained(path))
        except (OSError, ValueError, TypeError):
            pass
    return HFSeq2SeqModel(spec, net, tok)


def is_encoder_decoder(path_or_id: str) -> bool:
    """Whether the config at `path_or_id` describes an encoder–decoder model (T5, BART, Marian, ...),
    so `hf:` can load it with this backend; an unreadable config is left for the loader to report."""
    from transformers import AutoConfig

    try:
        return bool(getattr(AutoConfig.from_pretrained(os.path.expanduser(path_or_id)), "is_encoder_decoder", False))
    except (OSError, ValueError):
        return False
