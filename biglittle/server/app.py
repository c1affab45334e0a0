"""The HTTP adapter: OpenAI-compatible routes over the library, errors in OpenAI's shape.

Routes: POST /v1/completions and /v1/chat/completions (with "stream": true as server-sent
events), GET /v1/models, GET /health, GET /metrics (Prometheus), POST /v1/score and
POST /v1/tokenize (used by the remote backend), GET / (the playground page).

Extra request field "biglittle": {"policy": "bild", "fallback": 0.6, ..., "return_origins": true}
overrides the server's default policy for one request ("policy" may be a full spec such as
"bild:fallback=0.5"; parameters without a policy adjust the server's policy); responses carry
OpenAI `usage` plus a "biglittle" block with the generation's stats (and per-token origins and
reasons on request).

Log-probs, as OpenAI: chat `"logprobs": true` with `"top_logprobs": N` gives each choice
{"logprobs": {"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob",
"bytes"}, ...]}, ...]}}; completions `"logprobs": N` gives {"tokens", "token_logprobs",
"top_logprobs": [{token: logprob}, ...], "text_offset"}; N is 0 … --max-logprobs, top_logprobs
without logprobs=true is a 400. Streamed, each chunk carries its own tokens' entries. Each value is
the raw log-prob (temperature 1) under the model whose decision kept the token: the big model's
where it verified or wrote the token (kept drafts, copies, corrections, bonus tokens: speculative
decoding and BiLD's checked rounds), the small model's where the small model's token was committed
unchecked (small-only; BiLD with rollback=inf, whose last round, filling the budget or ending on
EOS, needs no check; a remote big model lost mid-answer); contrastive decoding reports the big
model's, a cascade or router the model that wrote the answer. An unchecked token of a small model
with another tokenizer has "logprob": null (no row of the output vocabulary scored it). Token
strings are each token id decoded alone; "bytes" are the token's raw bytes (whole even where the
token ends inside a character and its string reads U+FFFD).

/v1/score request:  {"model": str, "token_ids": [int, ...], "start": int = 0, "top_k": int = 20}
/v1/score response: {"model", "vocab_size", "start", "rows": [{"position": p, "next_token": id|null,
                     "next_logprob": float|null, "top": [[id, logprob], ...]}, ...],
                     "elapsed_s": the forward pass's time, "computed": positions it had to compute}
  row p describes the big model's distribution after token_ids[p]; next_logprob is the log-prob of
  token_ids[p+1] under it (null for the last position).

Limits (each refused in OpenAI's error shape): the API key (Authorization: Bearer only; /health
and the page are open, /docs and /openapi.json are not) and the body size (--max-body-bytes, 413)
are checked by middleware before a body is read; /v1/score's top_k and a generation's
logprobs / top_logprobs are at most --max-logprobs;
at most 4 stop strings; /v1/tokenize text is size-limited and tokenized off the event loop.
OpenAI fields the server does not do (tools, logit_bias, penalties, n > 1, best_of, echo, suffix,
response_format other than text) are refused with 400 naming the field.

schemas.py holds the request bodies, errors.py the error shapes and handlers, streaming.py the
answer of a generation (events or one body), routes.py the handlers; this module assembles them.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version

from fastapi import FastAPI
from starlette.exceptions import HTTPException

from ..errors import ConfigError
from .engine import Engine
from .errors import ApiError, error_response, install_handlers
from .metrics import Metrics
from .routes import router

MAX_BODY_BYTES = 8 << 20   # --max-body-bytes: request bodies past this get 413
MAX_LOGPROBS = 20          # --max-logprobs: top log-probs per token (/v1/score top_k, logprobs, top_logprobs)
OPEN_PATHS = {"/health", "/"}  # answered without the API key (the page asks for the key and sends it itself)


@dataclass(frozen=True)
class Limits:
    max_logprobs: int = MAX_LOGPROBS
    max_body_bytes: int = MAX_BODY_BYTES
    max_tokenize_chars: int = 1 << 20


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is larger than {limit} bytes", code="request_too_large")


class BodyTooLarge(HTTPException):
    """Raised while a body is read: an HTTPException, since FastAPI turns any other error while
    parsing a body into a 400."""

    def __init__(self, limit: int):
        super().__init__(413, too_large(limit).message)


class GuardMiddleware:
    """Before any route runs: the API key (from the Authorization header only), then the body's
    size (a declared Content-Length over the limit gets 413 before the body is read; a chunked
    body is counted as it arrives and refused once it passes the limit)."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int):
        self.app, self.limit = app, max_body_bytes
        self.digest = hashlib.sha256(api_key.encode()).digest() if api_key is not None else None

    def authorized(self, headers: dict) -> bool:
        if self.digest is None:
            return True
        given = headers.get("authorization", "").removeprefix("Bearer ").strip()
        # compare digests: constant time, and the key's length leaks nothing either
        return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self.digest)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if scope["path"] not in OPEN_PATHS and not self.authorized(headers):
            return await self.refuse(scope, receive, send, "unauthenticated", ApiError(
                401, "invalid or missing API key (send 'Authorization: Bearer <key>')", "authentication_error",
                code="invalid_api_key"))
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            return await self.refuse(scope, receive, send, "too_large", too_large(self.limit))
        await self.app(scope, self.counting(receive), send)

    def counting(self, receive):
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge(self.limit)  # answered 413 by the HTTPException handler
            return message
        return counted

    @staticmethod
    async def refuse(scope, receive, send, label: str, e: ApiError) -> None:
        scope["app"].state.metrics.requests.labels(label, str(e.status)).inc()
        await error_response(e)(scope, receive, send)


def create_app(engine: Engine, model_name: str = "biglittle", api_key: str | None = None,
               limits: Limits = Limits()) -> FastAPI:
    """The app. api_key: require `Authorization: Bearer <key>` everywhere but /health and the page
    (None: no key; "" is refused, since it would look like protection and be none)."""
    if api_key is not None and not api_key.strip():
        raise ConfigError("the API key is empty; give a key, or none to serve without one")

    @asynccontextmanager
    async def lifespan(app):
        yield
        await asyncio.get_running_loop().run_in_executor(None, engine.shutdown)  # graceful: finish, cancel, stop

    app = FastAPI(title="biglittle", version=version("biglittle"), lifespan=lifespan)
    app.state.engine, app.state.metrics, app.state.model_name = engine, Metrics(), model_name
    app.state.limits = limits
    install_handlers(app)
    app.include_router(router)
    app.add_middleware(GuardMiddleware, api_key=api_key, max_body_bytes=limits.max_body_bytes)
    return app
