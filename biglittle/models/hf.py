"""Hugging Face transformers backend: any causal LM from a local folder or a hub id.

The session keeps a `DynamicCache`; `truncate` crops it in place, so a rollback never
recomputes the positions it keeps. transformers gives sliding-window (and chunked) attention
layers a cache that drops what falls out of the window, which can then no longer be cropped;
the session gives those layers full layers instead and lets the model's sliding mask do the
windowing (it masks by absolute position, so the result is the same). Layers whose state
cannot be rewound (the recurrent and convolution states of linear-attention and hybrid models)
are refused when a rollback would need them.

`device` (load_hf) places the net on "cpu", "cuda", "cuda:N" or "mps" ("auto": CUDA, then MPS,
then CPU; see models/device.py). Token ids are built on that device and the cache lives there;
only the log-prob rows `extend` returns cross to the CPU (see models/base.py).
"""
from __future__ import annotations

import os
import threading
from typing import Sequence

import torch

from ..errors import ModelSpecError
from .base import extend_args
from .device import resolve_device

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class HFTokenizer:
    """Adapter from a transformers tokenizer to biglittle's tokenizer protocol."""

    def __init__(self, tok):
        self.tok = tok

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=True))

    def decode(self, token_ids: Sequence[int], skip_special: bool = True) -> str:
        return self.tok.decode(list(token_ids), skip_special_tokens=skip_special)

    def token_bytes(self, token_id: int) -> bytes:
        """One token's raw bytes, also where it ends inside a character (decoded alone it reads
        U+FFFD): byte-level BPE pieces through GPT-2's byte table, SentencePiece byte pieces
        (<0xNN>); any other token the UTF-8 of its text."""
        piece = self.tok.convert_ids_to_tokens(int(token_id))
        if isinstance(piece, str):
            if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                try:
                    return bytes([int(piece[3:5], 16)])
                except ValueError:
                    pass
            decoder = getattr(getattr(self.tok, "backend_tokenizer", None), "decoder", None)
            if type(decoder).__name__ == "ByteLevel" and all(c in _BYTE_OF_CHAR for c in piece):
                return bytes(_BYTE_OF_CHAR[c] for c in piece)
        return self.decode([token_id], skip_special=False).encode("utf-8")

    def apply_chat(self, messages: list[dict]) -> list[int]:
        if not getattr(self.tok, "chat_template", None):
            raise ModelSpecError("this model's tokenizer has no chat template; drop --chat / chat=True")
        out = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(out, dict) or hasattr(out, "keys"):  # BatchEncoding in some versions
            out = out["input_ids"]
        return list(out)


def gpt2_byte_chars() -> dict[int, str]:
    """GPT-2's byte-level BPE alphabet: the printable character that stands for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


_BYTE_OF_CHAR = {c: b for b, c in gpt2_byte_chars().items()}


def croppable_cache(net):
    """A `DynamicCache` for `net` whose layers can all be cut back to any length, plus the names of
    the layer types that cannot (empty for every attention-only model)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DummyLayer, DynamicIndexedLayer, DynamicLayer, DynamicSlidingWindowLayer

    cache = DynamicCache(config=net.config)
    exact = (DynamicLayer, DynamicIndexedLayer, DummyLayer)  # crop(-k) drops exactly the last k positions
    stuck = set()
    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicSlidingWindowLayer:
            # keep every position; the model's sliding-window mask hides the ones out of reach
            cache.layers[i] = DynamicLayer()
        elif type(layer) not in exact:
            stuck.add(type(layer).__name__)
    return cache, sorted(stuck)


class HFSession:
    """One sequence's cache. A call that raises (an error or Ctrl-C in the middle of the forward
    pass, when some layers have cached the new block and others not) leaves the session exactly
    as it was before the call: the layers are cut back to the positions the session had."""

    def __init__(self, model: "HFModel"):
        self._model = model
        self._cache, self._stuck = self._new_cache()
        self._ids: list[int] = []   # the session's tokens
        self._cached = 0            # how many of them the cache holds (all, but after a failed call on a stuck cache)

    def _new_cache(self):
        return croppable_cache(self._model.net)

    def __len__(self) -> int:
        return len(self._ids)

    @torch.inference_mode()
    def extend(self, token_ids: Sequence[int], keep: int | None = None) -> torch.Tensor:
        new, keep = extend_args(token_ids, keep)
        with self._model.lock:  # the net and its modules are the model's, shared by its sessions
            fed = self._ids[self._cached:] + new  # what the cache lacks (only after a failure on a stuck cache)
            ids = torch.tensor([fed], dtype=torch.long, device=self._model.device)
            try:
                out = self._forward(ids, keep)  # the cache object is updated in place by the forward pass
                logp = logp_rows(out.logits[0, -keep:])
            except BaseException:
                self._restore()
                raise
            self._ids += new
            self._cached = len(self._ids)
            return logp

    def _forward(self, ids: torch.Tensor, keep: int):
        return self._model.net(input_ids=ids, cache=self._cache, use_cache=True, logits_to_keep=keep)

    def _restore(self) -> None:
        """Put the cache back to the `self._cached` positions it held before a call that raised
        midway: cut every layer to that length (each by its own count: a layer that did not run
        yet has nothing to drop). A cache that held nothing starts afresh; a cache with layers that
        cannot be cut back starts afresh too, and re-feeds the session's tokens on the next call."""
        if self._cached == 0 or self._stuck:
            self._cache, self._stuck = self._new_cache()
            self._cached = 0
            return
        cut_layers_to(self._layers(), self._cached)

    def _layers(self):
        return self._cache.layers

    def truncate(self, n: int) -> None:
        if not 0 <= n <= len(self._ids):
            raise ValueError(f"cannot truncate a session of {len(self._ids)} positions to {n}")
        with self._model.lock:
            if n < self._cached:
                if self._stuck:
                    raise ModelSpecError(
                        f"{self._model.spec}: its cache layers ({', '.join(self._stuck)}) keep a state that cannot be "
                        "rolled back to an earlier position, so it cannot verify or draft tokens that may be rejected; "
                        "use it alone (big-only / small-only) or pick a model with attention layers only")
                self._cache.crop(n - self._cached)  # transformers 5: a negative count removes that many
                self._cached = n
            del self._ids[n:]


def cut_layers_to(layers, n: int) -> None:
    """Cut each cache layer back to n positions, whatever its own length (a forward pass that
    raised midway leaves the layers before the failure longer than the ones after it)."""
    for layer in layers:
        # DynamicIndexedLayer's extra keys may have been updated or not, apart from the main ones:
        # cut from what they are now, not by the main keys' count
        indexer = getattr(layer, "indexer_keys", None)
        positions = getattr(layer, "indexer_position_ids", None)
        length = layer.get_seq_length() if getattr(layer, "is_initialized", False) and \
            hasattr(layer, "get_seq_length") else 0
        if length > n:
            layer.crop(n - length)
        if indexer is not None:
            layer.indexer_keys = indexer[:, :n]
        if positions is not None:
            layer.indexer_position_ids = positions[..., :n]


def logp_rows(logits: torch.Tensor) -> torch.Tensor:
    """float32 log-probs of logit rows, computed where the net ran and handed over on the CPU in one
    copy (a no-op on the CPU): only the `keep` rows asked for ever cross, once per forward pass."""
    return torch.log_softmax(logits.float(), dim=-1).cpu()


class HFModel:
    backend = "hf"

    def __init__(self, spec: str, net, tokenizer: HFTokenizer | None):
        self.spec = spec
        self.net = net
        self.tokenizer = tokenizer
        self.device = getattr(net, "device", torch.device("cpu"))  # where the weights and the cache live
        cfg = net.config
        self.vocab_size = int(net.get_output_embeddings().weight.shape[0])
        self.context_length = getattr(cfg, "max_position_embeddings", None)
        self.eos_token_ids = frozenset(_eos_ids(net, tokenizer))
        # held around every forward pass and cache edit of this model's sessions, so that threads
        # sharing the model take turns (re-entrant: a forward hook may use a session itself)
        self.lock = threading.RLock()

    def session(self) -> HFSession:
        return HFSession(self)

    def __repr__(self) -> str:
        return f"HFModel({self.spec!r}, vocab={self.vocab_size}, device={str(self.device)!r})"


def _eos_ids(net, tokenizer) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(net, "generation_config", None), net.config):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    if tokenizer is not None and tokenizer.tok.eos_token_id is not None:
        ids.add(int(tokenizer.tok.eos_token_id))
    return ids


def load_hf(spec: str, path_or_id: str, dtype: str = "float32", device: str | None = "auto", **kwargs) -> HFModel:
    """Load a causal LM with transformers. `path_or_id` is a local folder or a hub id; `device`
    "auto", "cpu", "cuda", "cuda:N" or "mps" (a device the machine lacks is a ConfigError)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise ModelSpecError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    dev = resolve_device(device)  # before the weights load: a missing GPU fails at once
    looks_local = path_or_id.startswith((".", "/", "~")) or os.path.exists(path_or_id)
    path = os.path.expanduser(path_or_id)
    if looks_local and not os.path.isdir(path):
        raise ModelSpecError(f"{spec}: no such model folder {path!r}")
    try:
        net = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype], **kwargs)
    except (OSError, ValueError) as e:
        raise ModelSpecError(f"{spec}: could not load the model weights ({e})") from e
    net.to(dev).eval()
    try:
        tok = HFTokenizer(AutoTokenizer.from_pretrained(path))
    except (OSError, ValueError, TypeError):
        tok = None  # a weights-only folder: token-id prompts still work
    return HFModel(spec, net, tok)
