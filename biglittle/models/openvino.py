"""OpenVINO backend: a stateful LLM IR (openvino_model.xml/.bin) run by the OpenVINO CPU runtime.

Why it exists: OpenVINO's int4 kernels score a block of k positions for little more than one
(docs/architecture.md, "Schedules and the cost of a block"), which is what a verifier needs.

What it holds: one compiled model per loaded model, and one InferRequest per live session. The
IR is stateful (the shape openvino_genai writes): the KV cache lives in the request's state, and
each call feeds `input_ids`, `attention_mask` over every entry of the state plus the new ones,
`position_ids` and `beam_idx`; it returns logits for every new row.

Rollback by masking: the runtime has no cheap way to cut a state's sequence axis (trimming every
state tensor through numpy costs 5-38 ms a rollback and, with the u8 KV cache, re-quantizes it).
So `truncate` only marks the dropped entries dead in the session's mask: they stay in the state,
the next call feeds attention_mask 0 over them and position ids that continue from the live
length, which gives logits identical to a fresh run (measured 2026-12-04: a max difference of 0.0000
at k = 1, 8 and 16; tests/test_openvino.py checks it in the exact setting). Dead
entries cost only their share of attention; when they outnumber the live ones the session
compacts the state once (gathers the live entries through numpy).

Numerics: with the fast defaults (int8 dynamic quantization of activations, u8 KV cache) the same
tokens fed in another chunking differ by up to ~0.9 in a logit; `exact=True` (no dynamic
quantization, f32 KV cache and inference) makes chunking exact and blocks about 2x dearer.

Future work: the IR computes the output layer (896 x 151936 for Qwen2.5-0.5B, a third of its
work a row) for every new row, also for the prompt rows `keep` drops; slicing the hidden states
before the lm_head MatMul (as openvino_genai does for its last row) would save that.
"""
from __future__ import annotations

import os
import threading
from typing import Sequence

import numpy as np
import torch

from ..errors import ModelSpecError, PromptError
from .base import extend_args

INSTALL_HINT = "pip install 'biglittle[openvino]'"

# the settings that make a block's logits independent of how its tokens were chunked
EXACT_CONFIG = {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "0", "KV_CACHE_PRECISION": "f32",
                "INFERENCE_PRECISION_HINT": "f32"}

SEQ_AXIS = 2  # a state tensor is [batch, kv heads, entries, head dim]


def _import_openvino():
    try:
        import openvino
    except ImportError as e:
        raise ModelSpecError(f"the OpenVINO backend needs the openvino runtime ({INSTALL_HINT})") from e
    return openvino


def compile_config(threads: int | None = None, exact: bool = False, config: dict | None = None) -> dict:
    """The CPU plugin's settings: latency first, all cores unless told (BIGLITTLE_THREADS, as for
    llama.cpp, on a machine shared with other busy processes), the exact numerics if asked;
    `config` overrides any key."""
    threads = threads or int(os.environ.get("BIGLITTLE_THREADS") or 0) or os.cpu_count() or 1
    cfg = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads)}
    if exact:
        cfg.update(EXACT_CONFIG)
    cfg.update(config or {})
    return cfg


class OpenVINOSession:
    """One sequence: its live tokens, its InferRequest (made on first use) and the mask over the
    request's state entries (1 live, 0 dead). The i-th live entry holds position i."""

    def __init__(self, model: "OpenVINOModel"):
        self._model = model
        self.tokens: list[int] = []
        self._request = None
        self._mask: list[int] = []   # one flag per state entry, live or dead
        self._stale = False          # the state cannot be trusted: reset and re-feed the tokens

    def __len__(self) -> int:
        return len(self.tokens)

    def extend(self, token_ids: Sequence[int], keep: int | None = None) -> torch.Tensor:
        ids, keep = extend_args(token_ids, keep)
        n = len(ids)
        m = self._model
        if len(self.tokens) + n > m.context_length:
            raise PromptError(f"the sequence ({len(self.tokens) + n} tokens) would not fit {m.spec}'s "
                              f"context of {m.context_length} positions; load it with a larger context_length")
        with m.lock:  # the compiled model is shared by the model's sessions and threads
            req = self._ready()
            logp = self._feed(req, ids, keep)
            self.tokens += ids
        return logp

    def truncate(self, n: int) -> None:
        if not 0 <= n <= len(self.tokens):
            raise ValueError(f"cannot truncate a session of {len(self.tokens)} positions to {n}")
        with self._model.lock:
            if n == 0 and self._request is not None:
                self._request.reset_state()  # free, and nothing is left to mask
                self._mask, self._stale = [], False
            else:
                self._kill_live_after(n)
            del self.tokens[n:]

    # -- the state

    def _kill_live_after(self, n: int) -> None:
        """Mark every live entry after the first n dead (live entries are the mask's 1s, in order)."""
        live = 0
        for i, flag in enumerate(self._mask):
            if flag:
                live += 1
                if live > n:
                    self._mask[i] = 0

    def _ready(self):
        """The session's request, its state holding exactly self.tokens (live) and nothing more
        than half dead."""
        if self._request is None:
            self._request = self._model._compiled.create_infer_request()
            self._stale = bool(self.tokens)
        if self._stale:
            self._refeed()
        elif len(self._mask) - len(self.tokens) > len(self.tokens):
            self._compact()
        return self._request

    def _refeed(self) -> None:
        req = self._request
        req.reset_state()
        self._mask = []
        if self.tokens:
            self._feed(req, self.tokens, 1)
        self._stale = False

    def _compact(self) -> None:
        """Keep only the live entries of every state tensor (one numpy gather each)."""
        live = np.flatnonzero(np.asarray(self._mask, dtype=np.int8))
        ov = self._model._ov
        try:
            for state in self._request.query_state():
                data = state.state.data
                state.state = ov.Tensor(np.ascontiguousarray(np.take(data, live, axis=SEQ_AXIS)))
        except BaseException:
            self._stale = True  # some tensors cut, some not: re-feed on the next call
            raise
        self._mask = [1] * len(live)

    def _feed(self, req, ids: list[int], keep: int) -> torch.Tensor:
        """One infer of ids after the live tokens; float32 log-probs [keep, vocab] of the last rows.
        When it raises the state is either untouched or one block longer (then those entries
        are masked dead), else re-fed on the next call: the session is as before."""
        before = len(self._mask)
        start = sum(self._mask)
        mask = np.array([self._mask + [1] * len(ids)], dtype=np.int64)
        positions = np.arange(start, start + len(ids), dtype=np.int64)[None]
        try:
            logits = self._model._infer(req, np.array([ids], dtype=np.int64), mask, positions)
            # a copy (the request reuses its buffer), made before the mask says the block is in
            kept = torch.log_softmax(torch.from_numpy(np.array(logits[0, -keep:], dtype=np.float32)), dim=-1)
        except BaseException:
            self._recover(before, len(ids))
            raise
        self._mask += [1] * len(ids)
        return kept

    def _recover(self, before: int, n: int) -> None:
        """After a failed infer: read how many entries the state holds now, and mask or re-feed."""
        try:
            entries = self._request.query_state()[0].state.shape[SEQ_AXIS]
        except BaseException:  # noqa: BLE001 - the state cannot be read: start again from the tokens
            entries = -1
        if entries == before:
            return
        if entries == before + n:
            self._mask += [0] * n  # the block made it into the state: mask it out
        else:
            self._stale = True


class OpenVINOModel:
    backend = "openvino"

    def __init__(self, spec: str, xml_path: str, tokenizer, eos_token_ids, context_length: int,
                 threads: int | None = None, exact: bool = False, config: dict | None = None):
        """xml_path: a stateful LLM IR (openvino_model.xml with its .bin beside it); tokenizer:
        any object of the tokenizer protocol (models/base.py); context_length: positions a
        session may hold; threads, exact, config: compile_config() (config may also carry
        vocab_size, for an IR whose logits have no fixed last dimension)."""
        self._ov = _import_openvino()
        self.spec, self.path = spec, xml_path
        config = dict(config or {})
        vocab = config.pop("vocab_size", None)  # ours, not the plugin's
        self.config = compile_config(threads, exact, config)
        self.exact = exact
        core = self._ov.Core()
        ir = core.read_model(xml_path)
        names = {name for port in ir.inputs for name in port.get_names()}
        missing = {"input_ids", "attention_mask", "position_ids", "beam_idx"} - names
        if missing or not ir.get_sinks():
            raise ModelSpecError(f"{spec}: {xml_path!r} is not a stateful LLM IR "
                                 f"(missing inputs {sorted(missing)}; states {len(ir.get_sinks())})")
        self.vocab_size = _vocab_size(ir, vocab, spec)
        self._compiled = core.compile_model(ir, "CPU", self.config)
        self.context_length = int(context_length)
        self.tokenizer = tokenizer
        self.eos_token_ids = frozenset(int(t) for t in eos_token_ids)
        # held around every infer and every change of a state: sessions share the compiled model,
        # and threads share the model; re-entrant, as extend holds it while compaction runs
        self.lock = threading.RLock()

    def session(self) -> OpenVINOSession:
        return OpenVINOSession(self)

    def _infer(self, req, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray) -> np.ndarray:
        ov = self._ov
        with self.lock:
            req.set_tensor("input_ids", ov.Tensor(ids))
            req.set_tensor("attention_mask", ov.Tensor(mask))
            req.set_tensor("position_ids", ov.Tensor(positions))
            req.set_tensor("beam_idx", ov.Tensor(np.zeros(1, dtype=np.int32)))
            req.infer()
            return req.get_tensor("logits").data

    def __repr__(self) -> str:
        return f"OpenVINOModel({self.spec!r}, vocab={self.vocab_size})"


def _vocab_size(ir, vocab: int | None, spec: str) -> int:
    """The logits' last dimension, else the vocab_size the caller gave in config."""
    shape = ir.output("logits").get_partial_shape()
    last = shape[shape.rank.get_length() - 1]
    if last.is_static:
        return int(last.get_length())
    if vocab is not None:
        return int(vocab)
    raise ModelSpecError(f"{spec}: the IR's logits have no fixed vocabulary size; pass config={{'vocab_size': N}}")


def load_openvino_ir(spec: str, xml_path: str, tokenizer, eos_token_ids, context_length: int,
                     **kwargs) -> OpenVINOModel:
    """Load a stateful LLM IR for the CPU; every bad input is a ModelSpecError naming what to do."""
    _import_openvino()
    xml_path = os.path.expanduser(str(xml_path))
    if not os.path.isfile(xml_path):
        raise ModelSpecError(f"{spec}: no such OpenVINO IR {xml_path!r} (want openvino_model.xml with its .bin)")
    bin_path = os.path.splitext(xml_path)[0] + ".bin"
    if not os.path.isfile(bin_path):
        raise ModelSpecError(f"{spec}: the IR {xml_path!r} has no weights file {bin_path!r} beside it")
    try:
        return OpenVINOModel(spec, xml_path, tokenizer, eos_token_ids, context_length, **kwargs)
    except RuntimeError as e:
        raise ModelSpecError(f"{spec}: OpenVINO could not load {xml_path!r} ({e})") from e
