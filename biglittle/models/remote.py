"""Remote backend: the big model behind an OpenAI-compatible server (edge–cloud split).

Spec: remote:<base_url>#<model>, e.g. remote:http://127.0.0.1:8000#qwen2.5-coder-1.5b
(without #<model>, the server's first model).

A session keeps its token ids locally; `truncate` is bookkeeping. `extend` scores the new block
in ONE request that resends the whole sequence (llama.cpp's server reuses the shared prefix;
vLLM does not for requests with `prompt_logprobs`, see VllmDialect). Three ways to score,
detected from the server's OpenAPI description:

  biglittle   `biglittle serve`'s POST /v1/score: token ids in; for each position the log-prob
              of the given next token and the top-k. Exact.
  vllm        vLLM's /v1/completions with token-id prompts and `prompt_logprobs`. Exact for the
              given tokens and the top-k.
  llama-cpp   llama-cpp-python's server (`python -m llama_cpp.server`): text prompts only, so the
              text is checked to re-tokenize to the same ids; `echo` + `logprobs` give the top-k of
              each position's next-token distribution. Its `token_logprobs` are shifted by one
              (the log-prob it reports for token i comes from the distribution after token i),
              so we read only the top-k lists, and a given token outside the top-k counts as
              improbable (−inf): greedy speculative decoding stays exact (such a token is not the
              argmax) and BiLD rolls it back (conservative: never keeps a token it cannot check).

Rows come back dense ([n, vocab]) with −inf where the server said nothing, so greedy decoding
and BiLD work unchanged. Sampling needs whole distributions: the model says so
(`full_distribution = False`) and `generate` refuses to sample unless the caller opts into the
top-k approximation (`allow_topk_sampling=True`).

Faults: connect and read timeouts, up to `retries` retries with exponential backoff (scoring is
idempotent), and a clear `RemoteError` when the server is down, too slow, or answers nonsense.
A request that fails leaves the session's tokens as they were.

The model holds an HTTP client (a pool of connections): `model.close()` closes it (so does leaving
a `with load_model("remote:...") as big:` block, or the model being garbage-collected); after that
every call is a `RemoteError`. Threads may share the model: its sessions' requests go out side by
side (the server may batch them), and the little shared state (counters, the token-text table)
is guarded by locks.
"""
from __future__ import annotations

import threading
import weakref
from typing import Sequence
from urllib.parse import urlparse

import torch

from ..errors import ModelSpecError, RemoteError, VocabMismatchError
from ..tokens import TOKENIZER_PROBE
from .base import extend_args
from .remote_dialects import BiglittleDialect, LlamaCppServerDialect, Rows, VllmDialect
from .remote_transport import Http, malformed


class RemoteSession:
    def __init__(self, model: "RemoteModel"):
        self.model = model
        self.tokens: list[int] = []

    def __len__(self) -> int:
        return len(self.tokens)

    def extend(self, token_ids: Sequence[int], keep: int | None = None) -> torch.Tensor:
        new, keep = extend_args(token_ids, keep)
        seq = self.tokens + new
        start = len(seq) - keep  # first row: the distribution after token seq[start]
        rows = self.model.dialect.score(seq, start, self.model.top_k)
        if len(rows.top) != keep:
            raise RemoteError(f"the server returned {len(rows.top)} scored positions, expected {keep}")
        out = self.model.dense(rows, seq[start + 1:])
        self.tokens = seq  # only now: a request that failed leaves the session as it was
        return out

    def truncate(self, n: int) -> None:
        if not 0 <= n <= len(self.tokens):
            raise ValueError(f"cannot truncate a session of {len(self.tokens)} positions to {n}")
        del self.tokens[n:]


class RemoteModel:
    backend = "remote"
    full_distribution = False  # a server returns the top-k of each distribution, not all of it

    def __init__(self, spec: str, http: Http, model_id: str, dialect, vocab_size: int, tokenizer,
                 context_length: int | None, top_k: int, eos_token_ids=frozenset(), on_failure: str = "raise"):
        self.spec, self.http, self.model_id, self.dialect = spec, http, model_id, dialect
        self.vocab_size, self.tokenizer, self.context_length, self.top_k = vocab_size, tokenizer, context_length, top_k
        self.eos_token_ids = frozenset(eos_token_ids)
        self.on_failure = on_failure  # "small-only": the decode loop finishes with the small model
        # the client's connections are closed by close(), or when this object is collected
        self._finalizer = weakref.finalize(self, http.close)

    def session(self) -> RemoteSession:
        if self.http.closed:
            raise self.http.closed_error()
        return RemoteSession(self)

    def close(self) -> None:
        """Close the HTTP client (idempotent). Later calls raise a RemoteError at once."""
        self._finalizer()

    def __enter__(self) -> "RemoteModel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def dense(self, rows: Rows, next_tokens: list[int]) -> torch.Tensor:
        """[n, vocab] log-probs: the top-k and the given tokens filled in, −inf elsewhere."""
        out = torch.full((len(rows.top), self.vocab_size), -torch.inf)
        try:
            for i, top in enumerate(rows.top):
                for tid, lp in top.items():
                    if 0 <= tid < self.vocab_size:
                        out[i, tid] = lp
                if i < len(next_tokens) and rows.given[i] is not None:
                    out[i, next_tokens[i]] = float(rows.given[i])
        except (TypeError, ValueError, IndexError, AttributeError) as e:
            raise malformed("rows", e) from None
        return out

    def __repr__(self) -> str:
        return f"RemoteModel({self.spec!r}, dialect={self.dialect.name})"


class _LocalTokenizer:
    """The small model's tokenizer, lent to a text-only server dialect: token ids → exact text,
    and token text → id (None when no token or several tokens have that text)."""

    def __init__(self, tokenizer, vocab_size: int):
        self.inner, self.vocab_size = tokenizer, vocab_size
        self._pieces: dict[str, int | None] | None = None
        self._building = threading.Lock()  # threads sharing the model build the table once

    def text(self, ids: list[int]) -> str:
        return self.inner.decode(ids, skip_special=False)  # special tokens stay, to re-tokenize as they were

    def common_prefix(self, ids: list[int], pieces: list[str]) -> int:
        """How many leading tokens a server's token texts `pieces` share with our `ids`."""
        n = 0
        while n < min(len(ids), len(pieces)) and self.piece_id(pieces[n]) == ids[n]:
            n += 1
        return n

    def piece_id(self, piece: str) -> int | None:
        if self._pieces is None:
            with self._building:
                if self._pieces is None:
                    table: dict[str, int | None] = {}
                    for tid in range(self.vocab_size):
                        p = self.inner.decode([tid], skip_special=False)
                        table[p] = None if p in table else tid
                    self._pieces = table
        return self._pieces.get(piece)


def load_remote(spec: str, rest: str, dtype: str | None = None, tokenizer_from=None, api_key: str | None = None,
                top_k: int = 20, connect_timeout: float = 3.0, read_timeout: float = 30.0, retries: int = 2,
                on_failure: str = "raise", eos_token_ids=None, **_) -> RemoteModel:
    """Connect to a server, find its model and how it can score prompts, and check its tokenizer
    against `tokenizer_from` (the small model), whose tokenizer and vocabulary size it borrows.
    End-of-sequence ids: `eos_token_ids` if given, else what the server reports (`biglittle serve`
    does), else the small model's (same tokenizer); with none of these it refuses, since a text
    could then never end before max_new_tokens. on_failure="small-only": if the server fails
    mid-generation, finish with the small model and mark the result degraded (stats.degraded)
    instead of raising."""
    if on_failure not in ("raise", "small-only"):
        raise ModelSpecError(f"on_failure must be 'raise' or 'small-only', got {on_failure!r}")
    base, _, model_id = rest.partition("#")
    if urlparse(base).scheme not in ("http", "https"):
        raise ModelSpecError(f"{spec}: remote specs look like remote:http://host:port#model")
    http = Http(base, api_key, connect_timeout, read_timeout, retries)
    try:
        return _connect(spec, base, model_id, http, tokenizer_from, top_k, on_failure, eos_token_ids)
    except BaseException:
        http.close()  # a model that failed to load leaves no open connections
        raise


def _connect(spec: str, base: str, model_id: str, http: Http, tokenizer_from, top_k: int, on_failure: str,
             eos_token_ids) -> RemoteModel:
    cards = {m.get("id"): m for m in http.call("GET", "/v1/models").get("data", [])}
    models = list(cards)
    if not models:
        raise RemoteError(f"{base} serves no models")
    model_id = model_id or models[0]
    if model_id not in models:
        raise ModelSpecError(f"{base} has no model {model_id!r}; it serves: {', '.join(models)}")
    paths = set(http.call("GET", "/openapi.json").get("paths", {}))
    local = tokenizer_from.tokenizer if tokenizer_from is not None else None
    vocab = tokenizer_from.vocab_size if tokenizer_from is not None else None
    if "/v1/score" in paths:
        dialect = BiglittleDialect(http, model_id)
        info = http.call("POST", "/v1/score", {"model": model_id, "token_ids": [0, 0], "start": 0, "top_k": 1})
        vocab = int(info.get("vocab_size", vocab or 0)) or vocab
    elif "/extras/tokenize" in paths:
        dialect = LlamaCppServerDialect(http, model_id, _LocalTokenizer(local, vocab) if local and vocab else None)
    elif "/tokenize" in paths:
        dialect = VllmDialect(http, model_id)
    else:
        raise RemoteError(f"{base} cannot score prompts: it has neither biglittle's /v1/score, vLLM's "
                          "prompt_logprobs, nor llama-cpp-python's echo + logprobs")
    if vocab is None:
        raise ModelSpecError(f"{spec}: cannot tell the vocabulary size; pass tokenizer_from=<small model>")
    if local is not None:
        server_ids = dialect.tokenize(TOKENIZER_PROBE)
        if server_ids is not None and list(server_ids) != list(local.encode(TOKENIZER_PROBE)):
            raise VocabMismatchError(f"{base}#{model_id} tokenizes text differently from the small model; "
                                     "big–little decoding needs one shared tokenizer")
    eos = _eos_ids(spec, eos_token_ids, cards[model_id], tokenizer_from)
    context = tokenizer_from.context_length if tokenizer_from is not None else None
    served = cards[model_id].get("max_model_len")  # vLLM's window (--max-model-len)
    if isinstance(dialect, VllmDialect) and isinstance(served, int) and served > 1:
        # a scoring request generates one token past the sequence it scores
        context = min(context or served, served - 1)
    return RemoteModel(spec, http, model_id, dialect, vocab, local, context, top_k, eos, on_failure)


def _eos_ids(spec: str, given, card: dict, tokenizer_from) -> frozenset[int]:
    """The remote model's end-of-sequence ids: given, reported in its /v1/models card (biglittle's
    `biglittle.eos_token_ids`), or the small model's; refuse when nobody can say."""
    if given is not None:
        ids = [given] if isinstance(given, int) else list(given)
        if not all(isinstance(t, int) and t >= 0 for t in ids):  # [] is allowed: no EOS, on purpose
            raise ModelSpecError(f"{spec}: eos_token_ids must be token ids (non-negative integers), got {given!r}")
        return frozenset(ids)
    extra = card.get("biglittle") if isinstance(card, dict) else None
    reported = extra.get("eos_token_ids") if isinstance(extra, dict) else None
    if reported is not None:
        try:
            return frozenset(int(t) for t in reported)
        except (TypeError, ValueError) as e:
            raise malformed("eos_token_ids in /v1/models", e) from None
    if tokenizer_from is not None:
        return frozenset(tokenizer_from.eos_token_ids)
    raise ModelSpecError(f"{spec}: the server does not report the model's end-of-sequence token ids, so a "
                         "text could never end before max_new_tokens; pass tokenizer_from=<the small model> "
                         "(same tokenizer) or eos_token_ids=[...]")
