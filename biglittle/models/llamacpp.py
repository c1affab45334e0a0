"""llama.cpp backend (llama-cpp-python): GGUF files, quantized weights, fast on CPUs.

A session feeds a block of tokens to llama.cpp in ONE decode call and asks for logits only at
the positions it returns (the last `keep`), so scoring k drafted tokens is one call. `truncate`
removes KV-cache cells past n (llama_memory_seq_rm); the kept positions are never evaluated
again.

Each session keeps its own KV state: the context holds up to `n_seq` llama.cpp sequences in one
unified cache (every sequence may use the whole context window), and a session owns one sequence
id while it lives. Jobs that take turns (the server interleaves generations round by round) then
switch for free. With more live sessions than sequences, the least recently used one gives its
sequence up and re-feeds its tokens when it comes back; a dead session's cells stay until a new
session or a full cache needs them.

Block logits are not bit-identical to one-at-a-time logits in llama.cpp (different matrix
kernels for 1 and for several rows); see scripts/measure_backends.py for how often the argmax
differs on this machine.
"""
from __future__ import annotations

import itertools
import os
import sys
import threading
import weakref
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import ModelSpecError
from ..signal_points import c_callback, pause_point
from ..tokens import common_prefix
from .base import extend_args
from .chat_template import render_chat


DEFAULT_SEQUENCES = 16  # sessions with their own KV state at once: the server's default --max-queue


class LlamaCppTokenizer:
    """biglittle's tokenizer protocol over the tokenizer that the GGUF carries."""

    def __init__(self, llm, chat_template: str | None):
        self._llm = llm
        self.chat_template = chat_template
        self._bos = self._piece(llm.token_bos())
        self._eos = self._piece(llm.token_eos())

    def _piece(self, token_id: int) -> str:
        if token_id is None or token_id < 0:
            return ""
        return self._llm.detokenize([token_id], special=True).decode("utf-8", errors="replace")

    def encode(self, text: str) -> list[int]:
        # like transformers' encode: BOS only where the model asks for it, and special-token
        # text such as "<|im_end|>" becomes its special token
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def decode(self, token_ids: Sequence[int], skip_special: bool = True) -> str:
        return self._llm.detokenize(list(token_ids), special=not skip_special).decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        """One token's raw bytes, also where it ends inside a character."""
        return bytes(self._llm.detokenize([int(token_id)], special=True))

    def apply_chat(self, messages: list[dict]) -> list[int]:
        if not self.chat_template:
            raise ModelSpecError("this GGUF has no chat template (tokenizer.chat_template); drop --chat / chat=True")
        text = render_chat(self.chat_template, messages, bos_token=self._bos, eos_token=self._eos)
        # the template writes the BOS itself where the model wants one
        ids = list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
        return ids


class LlamaCppSession:
    def __init__(self, model: "LlamaCppModel"):
        self._model = model
        self.tokens: list[int] = []
        self.seq: int | None = None   # the llama.cpp sequence id this session owns, if any

    def __len__(self) -> int:
        return len(self.tokens)

    def extend(self, token_ids: Sequence[int], keep: int | None = None) -> torch.Tensor:
        ids, keep = extend_args(token_ids, keep)
        n = len(ids)
        m = self._model
        if len(self.tokens) + n > m.context_length:
            raise ValueError(f"the sequence ({len(self.tokens) + n} tokens) would not fit the llama.cpp "
                             f"context of {m.context_length}; load the model with a larger n_ctx")
        with m.lock:  # one llama_batch, one context and the slots are the model's, shared by its sessions
            seq = m._attach(self)
            logits = m._decode(ids, len(self.tokens), keep, seq)  # a failure leaves no cells behind
            logp = torch.log_softmax(torch.from_numpy(logits), dim=-1)
            self.tokens += ids
            m._slots[seq].tokens += ids
        return logp

    def truncate(self, n: int) -> None:
        if not 0 <= n <= len(self.tokens):
            raise ValueError(f"cannot truncate a session of {len(self.tokens)} positions to {n}")
        m = self._model
        with m.lock:
            if self.seq is not None and m._slots[self.seq].owner() is self:
                m._remove_from(self.seq, n)
            del self.tokens[n:]


@dataclass
class _Slot:
    """One llama.cpp sequence: which session owns it, what its cells hold, when it was last used."""
    owner: Callable[[], "LlamaCppSession | None"] = lambda: None   # a weak reference
    tokens: list[int] = field(default_factory=list)
    used: int = 0


class LlamaCppModel:
    backend = "llama.cpp"

    def __init__(self, spec: str, path: str, n_ctx: int | None = None, threads: int | None = None,
                 n_batch: int = 512, n_seq: int = DEFAULT_SEQUENCES, verbose: bool = False, **llama_kwargs):
        """n_ctx: the context window in tokens; None: the model's training context, capped by
        memory (default_context). n_seq: sessions that keep their own KV state at once (they share
        the n_ctx cells). verbose: let llama.cpp's own log lines through to stderr."""
        from llama_cpp import Llama
        import llama_cpp

        self.spec, self.path = spec, path
        quiet_logs(not verbose)
        n_ctx = n_ctx or default_context(path)
        # all cores by default; on a machine shared with other busy processes, fewer threads
        # (BIGLITTLE_THREADS=1) avoid llama.cpp's spin-waiting threads stalling each other
        threads = threads or int(os.environ.get("BIGLITTLE_THREADS") or 0) or os.cpu_count() or 1
        if not 1 <= n_seq <= llama_cpp.llama_max_parallel_sequences():
            raise ValueError(f"n_seq must be 1..{llama_cpp.llama_max_parallel_sequences()}, got {n_seq}")
        n_batch = min(n_batch, n_ctx)
        # flash attention skips other sequences' cells, so a session's numbers do not depend on
        # what the others hold; without it they do (seen: 0.9 in a log-prob for the same tokens
        # while another sequence held them), and an answer could change with the server's load
        llama_kwargs.setdefault("flash_attn", True)
        # Llama() makes a one-sequence context; it is replaced at once by the real one (below), so
        # the first one is only n_batch cells
        self.llm = Llama(model_path=path, n_ctx=n_batch, n_batch=n_batch, n_ubatch=n_batch, n_threads=threads,
                         n_threads_batch=threads, logits_all=False, verbose=verbose, **llama_kwargs)
        _replace_context(self.llm, n_ctx, n_seq, verbose)
        self._lib = llama_cpp
        self.vocab_size = int(self.llm.n_vocab())
        self.context_length = int(self.llm.n_ctx())
        self.n_batch = n_batch
        meta = self.llm.metadata or {}
        self.tokenizer = LlamaCppTokenizer(self.llm, meta.get("tokenizer.chat_template"))
        self.eos_token_ids = frozenset(_eog_ids(self.llm))
        self._slots = [_Slot() for _ in range(n_seq)]
        self._clock = itertools.count(1)
        # held around everything that touches the context, the batch or the slots (every session's
        # extend and truncate), so that threads sharing the model take turns; re-entrant, as
        # extend holds it while _attach and _decode take it again
        self.lock = threading.RLock()

    def session(self) -> LlamaCppSession:
        return LlamaCppSession(self)

    def __repr__(self) -> str:
        return f"LlamaCppModel({self.spec!r}, vocab={self.vocab_size})"

    # -- the sequences

    def _attach(self, session: LlamaCppSession) -> int:
        """Give `session` a sequence whose cells hold exactly its tokens (re-feeding only what
        differs from what the sequence held) and return its id."""
        with self.lock:
            return self._attach_locked(session)

    def _attach_locked(self, session: LlamaCppSession) -> int:
        seq = session.seq
        if seq is None or self._slots[seq].owner() is not session:
            seq = session.seq = self._claim(session)
        slot = self._slots[seq]
        slot.used = next(self._clock)
        n = common_prefix(slot.tokens, session.tokens)
        self._remove_from(seq, n)  # the slot now holds session.tokens[:n]
        if n < len(session.tokens):
            self._decode(session.tokens[n:], n, 0, seq)
            slot.tokens += session.tokens[n:]
        return seq

    def _claim(self, session: LlamaCppSession) -> int:
        """A free sequence (no live owner; the one sharing most of the session's tokens), else the
        least recently used one, whose owner re-feeds when it comes back."""
        free = [i for i, s in enumerate(self._slots) if s.owner() is None]
        if free:
            seq = max(free, key=lambda i: (common_prefix(self._slots[i].tokens, session.tokens),
                                           -self._slots[i].used))
        else:
            seq = min(range(len(self._slots)), key=lambda i: self._slots[i].used)
            owner = self._slots[seq].owner()
            if owner is not None:  # it may have died since the line above
                owner.seq = None
        self._slots[seq].owner = weakref.ref(session)
        return seq

    def _remove_from(self, seq: int, n: int) -> None:
        ok = self.llm._ctx.kv_cache_seq_rm(seq, n, -1)
        if not ok:
            raise RuntimeError(f"{self.spec}: llama.cpp cannot truncate this model's cache "
                               "(recurrent models keep no per-position cache)")
        del self._slots[seq].tokens[n:]

    def _make_room(self, seq: int) -> bool:
        """Empty the least useful other sequence (a dead session's first, then the least recently
        used); False when no other sequence holds anything."""
        held = [i for i, s in enumerate(self._slots) if i != seq and s.tokens]
        if not held:
            return False
        victim = min(held, key=lambda i: (self._slots[i].owner() is not None, self._slots[i].used))
        self._remove_from(victim, 0)
        return True

    def _decode(self, ids: list[int], start: int, keep: int, seq: int) -> np.ndarray:
        """Feed ids to sequence `seq` at positions start.. in batches of n_batch; return float32
        logits of the last `keep` positions ([keep, vocab]). The sequence holds exactly `start`
        positions when it is called (what its slot says); when a chunk fails (or Ctrl-C), the cells
        of the chunks before it are removed again, so it holds them still."""
        with self.lock:
            try:
                return self._decode_chunks(ids, start, keep, seq)
            except BaseException:
                self.llm._ctx.kv_cache_seq_rm(seq, start, -1)
                del self._slots[seq].tokens[start:]
                raise

    def _decode_chunks(self, ids: list[int], start: int, keep: int, seq: int) -> np.ndarray:
        ctx, batch = self.llm._ctx, self.llm._batch
        out = np.empty((keep, self.vocab_size), dtype=np.float32)
        n = len(ids)
        first_kept = n - keep
        row = 0
        for lo in range(0, n, self.n_batch):
            chunk = ids[lo: lo + self.n_batch]
            b = batch.batch
            b.n_tokens = len(chunk)
            wanted = 0
            for i, tok in enumerate(chunk):
                b.token[i] = tok
                b.pos[i] = start + lo + i
                b.seq_id[i][0] = seq
                b.n_seq_id[i] = 1
                want = lo + i >= first_kept
                b.logits[i] = want
                wanted += want
            self._decode_batch(seq)
            if wanted:
                arr = np.ctypeslib.as_array(ctx.get_logits(), shape=(wanted * self.vocab_size,))
                out[row: row + wanted] = arr.reshape(wanted, self.vocab_size)
                row += wanted
        return out

    def _decode_batch(self, seq: int) -> None:
        """llama_decode the prepared batch; when the cells are all taken by other sequences
        (return code 1, nothing changed), empty one and try again."""
        while True:
            rc = self._lib.llama_decode(self.llm._ctx.ctx, self.llm._batch.batch)
            if rc == 0:
                return
            if rc != 1 or not self._make_room(seq):
                raise RuntimeError(f"{self.spec}: llama_decode returned {rc}" + (
                    f" (the context of {self.context_length} cells is full)" if rc == 1 else ""))


def _replace_context(llm, n_ctx: int, n_seq: int, verbose: bool) -> None:
    """Give `llm` a context of n_ctx cells shared by n_seq sequences (a unified KV cache, so each
    sequence may use all of it). llama-cpp-python's Llama() has no parameter for this."""
    from llama_cpp import _internals

    params = llm.context_params
    params.n_ctx, params.n_seq_max, params.kv_unified = n_ctx, n_seq, True
    llm._ctx.close()
    llm._ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=verbose)


# KV-cache budget of the default context: this share of the machine's memory, per model
CONTEXT_MEMORY_SHARE = 8


def memory_budget() -> int:
    """Bytes one model's KV cache may take by default: 1/CONTEXT_MEMORY_SHARE of physical memory."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // CONTEXT_MEMORY_SHARE
    except (ValueError, OSError):
        return 2 << 30


def default_context(path: str) -> int:
    """The model's training context, capped so that its f16 KV cache fits memory_budget()."""
    from llama_cpp import Llama

    probe = Llama(model_path=path, vocab_only=True, verbose=False)  # reads the header, no weights
    meta = probe.metadata or {}
    del probe
    arch = meta.get("general.architecture", "")

    def get(key: str, default: int) -> int:
        return int(float(meta.get(f"{arch}.{key}", default)))

    trained = get("context_length", 4096)
    heads = get("attention.head_count", 1)
    head_dim = get("attention.key_length", get("embedding_length", 4096) // max(heads, 1))
    per_token = 2 * 2 * get("block_count", 32) * get("attention.head_count_kv", heads) * head_dim  # K+V, f16
    fits = memory_budget() // max(per_token, 1) // 256 * 256
    return max(256, min(trained, fits))


_LOG = {"quiet": True, "callback": None}  # the callback object is kept alive here: C holds a pointer to it


@c_callback
def _log_line(level, text, user_data) -> None:
    """llama.cpp's log lines (called from C code, also while a model loads): dropped when quiet,
    else written to stderr. A test can pause here to interrupt a load (signal_points.py)."""
    pause_point("llama-log")
    if not _LOG["quiet"]:
        sys.stderr.write(text.decode("utf-8", errors="replace"))


def quiet_logs(quiet: bool) -> None:
    """Keep llama.cpp's log lines (one process-wide callback) out of the output, or let them through."""
    import llama_cpp
    from llama_cpp import _logger

    _LOG["quiet"] = quiet
    if _LOG["callback"] is None:
        _LOG["callback"] = llama_cpp.llama_log_callback(_log_line)
    llama_cpp.llama_log_set(_LOG["callback"], None)
    _logger.set_verbose(not quiet)


def _eog_ids(llm) -> set[int]:
    """Every end-of-generation token llama.cpp knows for this vocabulary (EOS, EOT, <|im_end|>...)."""
    lib = llm._model
    vocab = lib.vocab
    import llama_cpp

    ids = {int(t) for t in (llm.token_eos(),) if t is not None and t >= 0}
    eot = llama_cpp.llama_vocab_eot(vocab)
    if eot >= 0:
        ids.add(int(eot))
    for t in range(llm.n_vocab()):
        if llama_cpp.llama_vocab_is_eog(vocab, t):
            ids.add(t)
    return ids


def gguf_tokenizer(path: str) -> tuple[LlamaCppTokenizer, frozenset[int], int]:
    """A GGUF's tokenizer, end-of-generation ids and training context, from a vocab-only load (no
    weights), for a backend that runs the same model from another format (ov:): the same tokens."""
    from llama_cpp import Llama

    quiet_logs(True)  # a vocab-only load still makes a context, and llama.cpp warns about it
    llm = Llama(model_path=path, vocab_only=True, verbose=False)
    meta = llm.metadata or {}
    # no hyperparameters are read (n_ctx_train is 0): the header's key has the training context
    trained = int(float(meta.get(f"{meta.get('general.architecture', '')}.context_length", 0)))
    return LlamaCppTokenizer(llm, meta.get("tokenizer.chat_template")), frozenset(_eog_ids(llm)), trained


def load_llamacpp(spec: str, path: str, dtype: str | None = None, device: str | None = "auto",
                  **kwargs) -> LlamaCppModel:
    """Load a GGUF file with llama.cpp. `dtype` is ignored: the file fixes the weights' format.
    `device` sets n_gpu_layers ("cpu" 0, "cuda"/"cuda:N"/"mps" every layer, "auto" every layer on a
    build that can offload); an explicit n_gpu_layers= wins."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        raise ModelSpecError(f"{spec}: the llama.cpp backend needs llama-cpp-python "
                             "(pip install 'biglittle[llama]')") from e
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise ModelSpecError(f"{spec}: no such GGUF file {path!r}")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelSpecError(f"{spec}: {path!r} is not a GGUF file")
    from .device import llama_gpu_layers, main_gpu

    kwargs.setdefault("n_gpu_layers", llama_gpu_layers(device, bool(llama_cpp.llama_supports_gpu_offload())))
    if main_gpu(device) is not None:
        kwargs.setdefault("main_gpu", main_gpu(device))
    try:
        return LlamaCppModel(spec, path, **kwargs)
    except (ValueError, RuntimeError) as e:
        raise ModelSpecError(f"{spec}: llama.cpp could not load {path!r} ({e})") from e
