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
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import time
import uuid
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from starlette.exceptions import HTTPException as StarletteHTTPException

import biglittle as bl
from ..errors import BigLittleError
from .engine import Closing, Engine, Events, Job, QueueFull
from .metrics import Metrics


FILE_POLICIES = {"router"}  # policies whose parameters name a file on the server


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


PIECE_WINDOW = 8  # tokens of context when decoding each streamed token's own text

# ---------------------------------------------------------------- request bodies

class Overrides(BaseModel):
    """The extra "biglittle" field: a policy and its parameters, and what to return."""
    model_config = ConfigDict(extra="allow")
    policy: str | None = None
    return_origins: bool = False


class CompletionBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    prompt: str | list[int] | list[str]
    max_tokens: int | None = Field(default=128)
    temperature: float | None = 0.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    stop: str | list[str] | None = None
    stream: bool = False
    n: int = 1
    echo: bool = False
    biglittle: Overrides = Field(default_factory=Overrides)


class ScoreBody(BaseModel):
    model: str
    token_ids: list[StrictInt]
    start: int = 0
    top_k: int = Field(default=20, ge=1, le=1000)


class TokenizeBody(BaseModel):
    model: str
    text: str


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class Message(BaseModel):
    """A chat message; content is a string or OpenAI's list of parts (text parts only)."""
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[ContentPart]

    def as_text(self) -> dict:
        if isinstance(self.content, str):
            return {"role": self.role, "content": self.content}
        if any(part.type != "text" or part.text is None for part in self.content):
            raise ApiError(400, "only text content parts are supported", param="messages")
        return {"role": self.role, "content": "".join(part.text for part in self.content)}


class ChatBody(CompletionBody):
    prompt: Any = None
    messages: list[Message]


# ---------------------------------------------------------------- the app

def create_app(engine: Engine, model_name: str = "biglittle", api_key: str | None = None) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app):
        yield
        await asyncio.get_running_loop().run_in_executor(None, engine.shutdown)  # graceful: finish, cancel, stop

    app = FastAPI(title="biglittle", version=bl.__version__, lifespan=lifespan)
    app.state.engine, app.state.metrics = engine, metrics

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip() \
            or request.headers.get("x-api-key", "") or request.query_params.get("api_key", "")
        # compare digests: constant time, and the key's length leaks nothing either
        if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), key_digest):
            raise ApiError(401, "invalid or missing API key (send 'Authorization: Bearer <key>')",
                           "authentication_error", code="invalid_api_key")

    key_digest = hashlib.sha256(api_key.encode()).digest() if api_key is not None else b""
    auth = [Depends(check_key)]

    # ------------------------------------------------------------ errors, always OpenAI-shaped

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        metrics.requests.labels(request.url.path, str(e.status)).inc()
        return JSONResponse(error_body(e.message, e.type, e.param, e.code), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError):
        errs = e.errors()
        if any(err.get("type") == "json_invalid" for err in errs):
            status, msg = 400, "the request body is not valid JSON"
        else:
            status = 422
            msg = "; ".join(f"{'.'.join(str(p) for p in err['loc'][1:]) or 'body'}: {err['msg']}" for err in errs)
        metrics.requests.labels(request.url.path, str(status)).inc()
        param = ".".join(str(p) for p in errs[0]["loc"][1:]) if errs and status == 422 else None
        return JSONResponse(error_body(msg, "invalid_request_error", param), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(e.detail), kind), status_code=e.status_code)

    # ------------------------------------------------------------ helpers

    def check_model(name: str) -> None:
        if name != model_name:
            raise ApiError(404, f"the model {name!r} does not exist; this server serves {model_name!r}",
                           "not_found_error", "model", "model_not_found")

    def make_job(body: CompletionBody, prompt, chat: bool) -> Job:
        if body.n != 1:
            raise ApiError(400, "only n=1 is supported", param="n")
        if body.echo:
            raise ApiError(400, "echo is not supported; use /v1/score for prompt log-probs", param="echo")
        if body.max_tokens is None or body.max_tokens < 1:
            raise ApiError(400, "max_tokens must be ≥ 1", param="max_tokens")
        policy = request_policy(body.biglittle)
        options = dict(max_new_tokens=body.max_tokens, temperature=body.temperature or 0.0, top_k=body.top_k,
                       top_p=body.top_p, seed=body.seed, stop=body.stop)
        return Job(prompt, policy, options, chat=chat, timeout_s=engine.timeout_s)

    def request_policy(o: Overrides) -> bl.Policy:
        """The policy for one request: "policy" (a name or a full spec like "bild:fallback=0.5",
        parsed by bl.parse_policy) or else the server's, with any other fields as its parameters."""
        params = dict(o.model_extra or {})
        if not o.policy and not params:
            return engine.policy
        spec = (o.policy or "").strip()
        if spec.endswith(".json") or spec.partition(":")[0] in FILE_POLICIES or "path" in params:
            # a request must not make the server read its files; load such policies at start-up
            raise ApiError(400, "a request cannot name a policy file (tune config or router); start the server "
                           "with --policy FILE instead", param="biglittle.policy")
        try:
            base = bl.parse_policy(o.policy) if o.policy else engine.policy
        except BigLittleError as e:
            raise ApiError(400, str(e), param="biglittle.policy") from None
        known = {f.name for f in dataclasses.fields(base) if f.init}
        unknown = set(params) - known
        if unknown:
            raise ApiError(400, f"policy {base.name!r} takes {', '.join(sorted(known)) or 'no parameters'}; "
                           f"got {', '.join(sorted(unknown))}", param="biglittle")
        if params.get("rollback", 0) in ("inf", "Infinity", None):  # JSON has no infinity
            params["rollback"] = float("inf")
        try:
            return dataclasses.replace(base, **params)
        except BigLittleError as e:
            raise ApiError(400, str(e), param="biglittle") from None

    def admit(job: Job) -> None:
        try:
            engine.admit(job)
        except QueueFull:
            raise ApiError(429, f"the server is busy ({engine.max_queue} requests queued or running); retry later",
                           "rate_limit_error", code="queue_full") from None
        except Closing:
            raise ApiError(503, "the server is shutting down", "server_error") from None
        metrics.queue.set(engine.in_flight)

    def as_api_error(e: BaseException) -> ApiError:
        if isinstance(e, BigLittleError):
            return ApiError(400, str(e))
        if isinstance(e, asyncio.CancelledError):  # the client went away; nobody reads this answer
            return ApiError(499, "the client closed the request", "cancelled")
        return ApiError(500, f"internal error: {type(e).__name__}: {e}", "server_error")

    def event_error(kind: str, value, job: Job) -> ApiError:
        if kind == "timeout":
            return ApiError(504, f"the request took longer than {job.timeout_s:g} s", "timeout_error", code="timeout")
        return as_api_error(value)

    async def next_event(events: Events, job: Job, request: Request | None = None):
        """The job's next event, or ("timeout", None) once its deadline passes (the deadline runs
        from admission, so waiting in the queue counts). With `request`, a client that goes away
        meanwhile cancels the job. Either way the worker stops at its next chunk."""
        while True:
            left = job.deadline - time.monotonic()
            if left <= 0:
                job.cancel.set()
                return "timeout", None
            item = await events.next(min(left, 0.5))
            if item is not None:
                return item
            if request is not None and await request.is_disconnected():
                job.cancel.set()
                return "error", asyncio.CancelledError()

    def biglittle_block(result, with_origins: bool) -> dict:
        block = {"stats": result.stats.to_dict(), "policy": result.stats.policy}
        if with_origins:
            block.update(token_ids=result.token_ids, origins=result.origins, reasons=result.reasons)
        return block

    def usage(result) -> dict:
        p, c = result.stats.prompt_tokens, result.stats.new_tokens
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def finish_reason(result) -> str:
        return "length" if result.stats.finish_reason == "length" else "stop"

    def pieces(tokenizer, seen: list[int], new: list[int]) -> list[str]:
        """Each new token's own text, for colouring: decode a short window of the tokens before
        it plus the new ones, and give each token what it adds to the window's text. A token
        that ends inside a character gets "" and the one that completes it the whole character.
        The window (not the whole text so far) keeps each chunk's cost on the event loop flat."""
        if tokenizer is None:
            return [str(t) for t in new]
        window = seen[-PIECE_WINDOW:]
        text = tokenizer.decode(window).rstrip("\ufffd")
        out = []
        for i in range(1, len(new) + 1):
            longer = tokenizer.decode(window + new[:i]).rstrip("\ufffd")
            piece = longer[len(text):] if longer.startswith(text) else ""
            text += piece
            out.append(piece)
        return out

    async def run_job(request: Request, job: Job, chat: bool, with_origins: bool, endpoint: str, stream: bool):
        t0 = time.monotonic()
        cid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        events = engine.submit(job)
        finished = False

        def finish() -> None:
            """Once per job, however it ends: stop the worker (a no-op if it is done) and free
            the job's place in the queue."""
            nonlocal finished
            if not finished:
                finished = True
                job.cancel.set()
                events.close()
                engine.release(job)
                metrics.queue.set(engine.in_flight)

        try:  # the first event tells a bad request (400 before any output) from a good one
            first = await next_event(events, job, request)
        except BaseException:
            finish()
            raise
        if first[0] not in ("chunk", "done"):
            finish()
            raise event_error(*first, job)

        def envelope(choice: dict, **extra) -> dict:
            return {"id": cid, "object": "chat.completion.chunk" if chat else "text_completion", "created": created,
                    "model": model_name, "choices": [choice], **extra}

        def done(result) -> None:
            metrics.record_generation(result.stats, result.reasons)
            metrics.latency.labels(endpoint).observe(time.monotonic() - t0)
            metrics.requests.labels(endpoint, "200").inc()

        async def stream_events():
            seen: list[int] = []
            shown = ""
            got_text = False
            try:
                if chat:
                    yield sse(envelope({"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}))
                kind, value = first
                while True:
                    if kind == "chunk":
                        extra = {}
                        if with_origins and value.token_ids:
                            texts = pieces(engine.big.tokenizer, seen, value.token_ids)
                            extra["biglittle"] = {"token_ids": value.token_ids, "origins": value.origins,
                                                  "reasons": value.reasons, "pieces": texts}
                            seen.extend(value.token_ids)
                            shown += "".join(texts)
                        if value.text or extra:
                            if value.text and not got_text:
                                got_text = True
                                metrics.first_token.observe(time.monotonic() - t0)
                            yield sse(envelope(text_choice(value.text, chat, None), **extra))
                    elif kind == "done":
                        done(value)
                        block = biglittle_block(value, with_origins)
                        if with_origins and value.text is not None and value.text.startswith(shown):
                            block["pieces_tail"] = value.text[len(shown):]  # text no token's piece showed yet
                        yield sse(envelope(text_choice("", chat, finish_reason(value)), usage=usage(value),
                                           biglittle=block))
                        yield "data: [DONE]\n\n"
                        return
                    else:
                        err = event_error(kind, value, job)
                        metrics.requests.labels(endpoint, str(err.status)).inc()
                        yield sse(error_body(err.message, err.type, err.param, err.code))
                        yield "data: [DONE]\n\n"
                        return
                    # a client that goes away surfaces here as a closed generator (its next send fails)
                    kind, value = await next_event(events, job)
            finally:
                finish()

        if stream:
            return JobStream(stream_events(), on_close=finish, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

        # not streaming: collect, watching the deadline and for a client that goes away
        try:
            kind, value = first
            while kind == "chunk":
                kind, value = await next_event(events, job, request)
        finally:
            finish()
        if kind != "done":
            raise event_error(kind, value, job)
        result = value
        done(result)
        choice = {"index": 0, "finish_reason": finish_reason(result), "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": result.text}
        else:
            choice["text"] = result.text if result.text is not None else ""
        return {"id": cid, "object": "chat.completion" if chat else "text_completion", "created": created,
                "model": model_name, "choices": [choice], "usage": usage(result),
                "biglittle": biglittle_block(result, with_origins)}

    # ------------------------------------------------------------ routes

    @app.post("/v1/completions", dependencies=auth)
    async def completions(body: CompletionBody, request: Request):
        check_model(body.model)
        prompt = body.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            if len(prompt) != 1:
                raise ApiError(400, "only one prompt per request is supported", param="prompt")
            prompt = prompt[0]
        if isinstance(prompt, str) and not prompt.strip() or prompt == []:
            raise ApiError(400, "the prompt is empty", param="prompt")
        job = make_job(body, prompt, chat=False)
        admit(job)
        return await run_job(request, job, False, body.biglittle.return_origins, "/v1/completions", body.stream)

    @app.post("/v1/chat/completions", dependencies=auth)
    async def chat_completions(body: ChatBody, request: Request):
        check_model(body.model)
        messages = [m.as_text() for m in body.messages]
        if not any(m["content"].strip() for m in messages):
            raise ApiError(400, "messages must hold at least one non-empty message", param="messages")
        job = make_job(body, messages, chat=True)
        admit(job)
        return await run_job(request, job, True, body.biglittle.return_origins, "/v1/chat/completions",
                             body.stream)

    def model_card() -> dict:
        return {"id": model_name, "object": "model", "created": 0, "owned_by": "biglittle",
                "biglittle": {"small": getattr(engine.small, "spec", None), "big": engine.big.spec,
                              "policy": engine.policy.describe(), "vocab_size": engine.big.vocab_size,
                              "context_length": engine.big.context_length,
                              "eos_token_ids": sorted(engine.big.eos_token_ids)}}

    @app.get("/v1/models", dependencies=auth)
    async def models():
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name:path}", dependencies=auth)
    async def one_model(name: str):
        check_model(name)
        return model_card()

    @app.post("/v1/score", dependencies=auth)
    async def score(body: ScoreBody):
        check_model(body.model)
        admit(None)
        try:
            out = await engine.run(engine.score, body.token_ids, body.start, body.top_k)
        except BigLittleError as e:
            raise ApiError(400, str(e), param="token_ids") from None
        finally:
            engine.release(None)
        metrics.requests.labels("/v1/score", "200").inc()
        return {"model": model_name, **out}

    @app.post("/v1/tokenize", dependencies=auth)
    async def tokenize(body: TokenizeBody):
        check_model(body.model)
        tok = engine.big.tokenizer
        if tok is None:
            raise ApiError(400, "the big model has no tokenizer")
        return {"model": model_name, "tokens": tok.encode(body.text)}

    @app.get("/health")
    async def health():
        return {"status": "shutting down" if engine.closing else "ok", "model": model_name,
                "in_flight": engine.in_flight}

    @app.get("/metrics", dependencies=auth)
    async def prometheus():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse, dependencies=auth)
    async def page():
        html = resources.files("biglittle.server").joinpath("static/index.html").read_text(encoding="utf-8")
        config = json.dumps({"model": model_name, "policy": engine.policy.name}).replace("<", "\\u003c")
        return HTMLResponse(html.replace("__CONFIG__", config))

    return app


class JobStream(StreamingResponse):
    """A streamed answer that always frees its job, even when the client is gone before the
    body starts (then Starlette never runs, and so never closes, the body generator)."""

    def __init__(self, content, on_close, **kw):
        super().__init__(content, **kw)
        self.on_close = on_close

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


def text_choice(text: str, chat: bool, finish: str | None) -> dict:
    if chat:
        return {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}
    return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}


def sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"
