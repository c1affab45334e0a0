"""The route handlers. Each reads the engine, the metrics and the model's name from
`request.app.state` (set by `create_app`)."""
from __future__ import annotations

import asyncio
import json
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..errors import BigLittleError
from ..policies.base import Policy
from ..policies.registry import FILE_POLICIES, apply_overrides, is_config_file, parse_policy
from .engine import Closing, Job, QueueFull
from .errors import ApiError
from .schemas import ChatBody, CompletionBody, Overrides, ScoreBody, TokenizeBody
from .streaming import run_job, wait_for_work

router = APIRouter()


# ---------------------------------------------------------------- helpers

def check_model(request: Request, name: str) -> None:
    served = request.app.state.model_name
    if name != served:
        raise ApiError(404, f"the model {name!r} does not exist; this server serves {served!r}",
                       "not_found_error", "model", "model_not_found")


def request_policy(engine, o: Overrides) -> Policy:
    """The policy for one request: "policy" (a name or a full spec like "bild:fallback=0.5")
    or else the server's, with any other fields as its parameters."""
    params = dict(o.model_extra or {})
    if not o.policy and not params:
        return engine.policy
    spec = (o.policy or "").strip()
    if is_config_file(spec) or spec.partition(":")[0] in FILE_POLICIES or "path" in params:
        # a request must not make the server read its files; load such policies at start-up
        raise ApiError(400, "a request cannot name a policy file (tune config or router); start the server "
                       "with --policy FILE instead", param="biglittle.policy")
    try:
        base = parse_policy(o.policy) if o.policy else engine.policy
    except BigLittleError as e:
        raise ApiError(400, str(e), param="biglittle.policy") from None
    try:
        return apply_overrides(base, params)
    except BigLittleError as e:  # ConfigError: an unknown or out-of-range setting
        raise ApiError(400, str(e), param="biglittle") from None


def check_top(request: Request, n: int, param: str) -> None:
    limit = request.app.state.limits.max_logprobs
    if n > limit:
        raise ApiError(400, f"{param} must be ≤ {limit} on this server (--max-logprobs)", param=param)


def make_job(request: Request, body: CompletionBody, prompt, chat: bool) -> Job:
    body.refuse_unsupported()
    engine = request.app.state.engine
    policy = request_policy(engine, body.biglittle)
    options = dict(max_new_tokens=body.token_budget(), temperature=body.temperature or 0.0, top_k=body.top_k,
                   top_p=body.top_p, seed=body.seed, stop=body.stop)
    top = body.logprobs_wanted()  # None: no log-probs
    if top is not None:
        check_top(request, top, "top_logprobs" if chat else "logprobs")
        options["logprobs"] = top
    return Job(prompt, policy, options, chat=chat, timeout_s=engine.timeout_s)


def admit(request: Request, job: Job | None) -> None:
    engine = request.app.state.engine
    try:
        engine.admit(job)
    except QueueFull:
        raise ApiError(429, f"the server is busy ({engine.max_queue} requests queued or running); retry later",
                       "rate_limit_error", code="queue_full") from None
    except Closing:
        raise ApiError(503, "the server is shutting down", "server_error") from None
    request.app.state.metrics.queue.set(engine.in_flight)


def model_card(request: Request) -> dict:
    engine, name = request.app.state.engine, request.app.state.model_name
    return {"id": name, "object": "model", "created": 0, "owned_by": "biglittle",
            "biglittle": {"small": getattr(engine.small, "spec", None), "big": engine.big.spec,
                          "policy": engine.policy.describe(), "vocab_size": engine.big.vocab_size,
                          "context_length": engine.big.context_length,
                          "eos_token_ids": sorted(engine.big.eos_token_ids)}}


# ---------------------------------------------------------------- routes

@router.post("/v1/completions")
async def completions(body: CompletionBody, request: Request):
    check_model(request, body.model)
    prompt = body.prompt
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        if len(prompt) != 1:
            raise ApiError(400, "only one prompt per request is supported", param="prompt")
        prompt = prompt[0]
    if isinstance(prompt, str) and not prompt.strip() or prompt == []:
        raise ApiError(400, "the prompt is empty", param="prompt")
    job = make_job(request, body, prompt, chat=False)
    admit(request, job)
    return await run_job(request, job, body, chat=False, endpoint="/v1/completions")


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatBody, request: Request):
    check_model(request, body.model)
    messages = [m.as_text() for m in body.messages]
    if not any(m["content"].strip() for m in messages):
        raise ApiError(400, "messages must hold at least one non-empty message", param="messages")
    job = make_job(request, body, messages, chat=True)
    admit(request, job)
    return await run_job(request, job, body, chat=True, endpoint="/v1/chat/completions")


@router.get("/v1/models")
async def models(request: Request):
    return {"object": "list", "data": [model_card(request)]}


@router.get("/v1/models/{name:path}")
async def one_model(name: str, request: Request):
    check_model(request, name)
    return model_card(request)


@router.post("/v1/score")
async def score(body: ScoreBody, request: Request):
    check_model(request, body.model)
    check_top(request, body.top_k, "top_k")
    engine = request.app.state.engine
    job = Job(body.token_ids, timeout_s=engine.timeout_s)
    admit(request, job)
    try:
        out = await wait_for_work(request, job, engine.pool.submit(engine.score_job, job, body.start, body.top_k))
    except BigLittleError as e:
        raise ApiError(400, str(e), param="token_ids") from None
    finally:
        engine.release(job)
    request.app.state.metrics.requests.labels("/v1/score", "200").inc()
    return {"model": request.app.state.model_name, **out}


@router.post("/v1/tokenize")
async def tokenize(body: TokenizeBody, request: Request):
    check_model(request, body.model)
    tok = request.app.state.engine.big.tokenizer
    if tok is None:
        raise ApiError(400, "the big model has no tokenizer")
    limit = request.app.state.limits.max_tokenize_chars
    if len(body.text) > limit:
        raise ApiError(400, f"text must be at most {limit} characters", param="text")
    # off the event loop: a long text must not stall every other client's stream
    return {"model": request.app.state.model_name, "tokens": await asyncio.to_thread(tok.encode, body.text)}


@router.get("/health")
async def health(request: Request):
    engine = request.app.state.engine
    return {"status": "shutting down" if engine.closing else "ok", "model": request.app.state.model_name,
            "in_flight": engine.in_flight}


@router.get("/metrics")
async def prometheus(request: Request):
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/", response_class=HTMLResponse)
async def page(request: Request):
    html = resources.files("biglittle.server").joinpath("static/index.html").read_text(encoding="utf-8")
    config = json.dumps({"model": request.app.state.model_name,
                         "policy": request.app.state.engine.policy.name}).replace("<", "\\u003c")
    return HTMLResponse(html.replace("__CONFIG__", config))
