"""The HTTP adapter: OpenAI-compatible routes over the library, errors in OpenAI's shape.

Routes: POST /v1/completions and /v1/chat/completions (with "stream": true as server-sent
events), GET /v1/models, GET /health, GET /metrics (Prometheus), POST /v1/score and
POST /v1/tokenize (used by the remote backend), GET / (the playground page).

Extra request field "biglittle": {"policy": "bild", "fallback": 0.6, ..., "return_origins": true}
overrides the server's default policy for one request ("policy" may be a full spec such as
"bild:fallback=0.5"; parameters without a policy adjust the server's policy); responses carry
OpenAI `usage` plus a "biglittle" block with the generation's stats (and per-token origins and
reasons on request).

/v1/score request:  {"model": str, "token_ids": [int, ...], "start": int = 0, "top_k": int = 20}
/v1/score response: {"model", "vocab_size", "start", "rows": [{"position": p, "next_token": id|null,
                     "next_logprob": float|null, "top": [[id, logprob], ...]}, ...],
                     "elapsed_s": the forward pass's time, "computed": positions it had to compute}
  row p describes the big model's distribution after token_ids[p]; next_logprob is the log-prob of
  token_ids[p+1] under it (null for the last position).

schemas.py holds the request bodies, errors.py the error shapes and handlers, streaming.py the
answer of a generation (events or one body), routes.py the handlers; this module assembles them.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI

from .engine import Engine
from .errors import ApiError, error_response, install_handlers
from .metrics import Metrics
from .routes import router

OPEN_PATHS = {"/health"}  # answered without the API key


class ApiKeyMiddleware:
    """Checks the API key before the route (and its body) is touched."""

    def __init__(self, app, api_key: str):
        self.app = app
        self.digest = hashlib.sha256(api_key.encode()).digest()

    def allowed(self, scope) -> bool:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(pair.split("=", 1) for pair in scope.get("query_string", b"").decode().split("&") if "=" in pair)
        given = headers.get("authorization", "").removeprefix("Bearer ").strip() \
            or headers.get("x-api-key", "") or query.get("api_key", "")
        # compare digests: constant time, and the key's length leaks nothing either
        return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self.digest)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self.allowed(scope):
            return await self.app(scope, receive, send)
        e = ApiError(401, "invalid or missing API key (send 'Authorization: Bearer <key>')",
                     "authentication_error", code="invalid_api_key")
        scope["app"].state.metrics.requests.labels(scope["path"], "401").inc()
        await error_response(e)(scope, receive, send)


def create_app(engine: Engine, model_name: str = "biglittle", api_key: str | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app):
        yield
        await asyncio.get_running_loop().run_in_executor(None, engine.shutdown)  # graceful: finish, cancel, stop

    app = FastAPI(title="biglittle", version=version("biglittle"), lifespan=lifespan)
    app.state.engine, app.state.metrics, app.state.model_name = engine, Metrics(), model_name
    install_handlers(app)
    app.include_router(router)
    if api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    return app
