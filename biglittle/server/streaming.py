"""A generation as an HTTP answer: server-sent events or one JSON body, in OpenAI's shapes.

`run_job` waits for a submitted job's first event (a bad request is a 400 before any output),
then either streams its chunks or collects them; however it ends, the job's place in the queue
is freed exactly once (`GenerationRun.finish`)."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

from fastapi import Request
from fastapi.responses import StreamingResponse

from .engine import Events, Job
from .errors import as_api_error, error_body, event_error

PIECE_WINDOW = 8  # tokens of context (and of new tokens per decode) for each streamed token's own text


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


def text_choice(text: str, chat: bool, finish: str | None, logprobs: dict | None = None) -> dict:
    if chat:
        choice = {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}
        if logprobs is not None:
            choice["logprobs"] = logprobs
        return choice
    return {"index": 0, "text": text, "finish_reason": finish, "logprobs": logprobs}


class LogprobFormat:
    """Committed tokens' TokenLogprobs in OpenAI's shapes, token strings from the output tokenizer
    (each token id decoded alone, special tokens kept, so a token ending inside a character reads
    U+FFFD) and "bytes" the token's raw bytes where the tokenizer gives them (`token_bytes`), else
    the UTF-8 of its string. A token no model of the output vocabulary scored (an unchecked draft
    of a small model with another tokenizer) has logprob null."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._strings: dict[int, str] = {}
        self._bytes: dict[int, list[int]] = {}
        self.offset = 0  # completions' text_offset: characters of token strings so far

    def string(self, token_id: int) -> str:
        if token_id not in self._strings:
            self._strings[token_id] = str(token_id) if self.tokenizer is None else \
                self.tokenizer.decode([token_id], skip_special=False)
        return self._strings[token_id]

    def raw(self, token_id: int) -> list[int]:
        if token_id not in self._bytes:
            get = getattr(self.tokenizer, "token_bytes", None)
            self._bytes[token_id] = list(get(token_id) if get else self.string(token_id).encode("utf-8"))
        return self._bytes[token_id]

    def entry(self, token_id: int, logprob) -> dict:
        return {"token": self.string(token_id), "logprob": logprob, "bytes": self.raw(token_id)}

    def chat(self, token_ids: list[int], lps) -> dict:
        """{"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}]}"""
        return {"content": [{**self.entry(t, lp.logprob), "top_logprobs": [self.entry(i, v) for i, v in lp.top]}
                            for t, lp in zip(token_ids, lps)]}

    def completion(self, token_ids: list[int], lps) -> dict:
        """{"tokens", "token_logprobs", "top_logprobs": [{token: logprob}], "text_offset"}; offsets
        continue from the previous call's (a stream's chunks)."""
        tokens, offsets = [], []
        for t in token_ids:
            tokens.append(self.string(t))
            offsets.append(self.offset)
            self.offset += len(tokens[-1])
        return {"tokens": tokens, "token_logprobs": [lp.logprob for lp in lps],
                "top_logprobs": [{self.string(i): v for i, v in lp.top} for lp in lps], "text_offset": offsets}

    def format(self, chat: bool, token_ids: list[int], lps) -> dict:
        return self.chat(token_ids, lps) if chat else self.completion(token_ids, lps)


def sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


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

    This runs on the event loop, where it is cheap and safe. Cheap: a block of at most
    PIECE_WINDOW new tokens after at most PIECE_WINDOW tokens of context, so each token costs
    one decode of ≤ 2·PIECE_WINDOW tokens however long the chunk (a cascade's kept answer is
    one chunk) or the text so far. Safe: decoding only reads the tokenizer (a fast tokenizer's
    decode never needs it mutably; llama.cpp's token-to-piece reads the vocabulary's tables),
    as the model thread's own detokenizer does meanwhile and the log-prob strings here do too.
    """
    if tokenizer is None:
        return [str(t) for t in new]
    out: list[str] = []
    context = list(seen[-PIECE_WINDOW:])
    for lo in range(0, len(new), PIECE_WINDOW):
        block = new[lo: lo + PIECE_WINDOW]
        text = tokenizer.decode(context).rstrip("\ufffd")
        for i in range(1, len(block) + 1):
            longer = tokenizer.decode(context + block[:i]).rstrip("\ufffd")
            piece = longer[len(text):] if longer.startswith(text) else ""
            text += piece
            out.append(piece)
        context = (context + block)[-PIECE_WINDOW:]
    return out


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


async def wait_for_work(request: Request, job: Job, future):
    """The result of work queued on the model thread (a concurrent future), watching the job's
    deadline and for a client that goes away; either cancels the job, so the worker skips it."""
    waiting = asyncio.wrap_future(future)
    waiting.add_done_callback(lambda f: f.cancelled() or f.exception())  # a skipped job's error is read
    while True:
        left = job.deadline - time.monotonic()
        if left <= 0:
            job.cancel.set()
            raise event_error("timeout", None, job.timeout_s)
        done, _ = await asyncio.wait({waiting}, timeout=min(left, 0.5))
        if done:
            try:
                return waiting.result()
            except TimeoutError:
                raise event_error("timeout", None, job.timeout_s) from None
        if await request.is_disconnected():
            job.cancel.set()
            raise as_api_error(asyncio.CancelledError())


class GenerationRun:
    """One admitted generation on its way to the client."""

    def __init__(self, request: Request, job: Job, body, chat: bool, endpoint: str):
        state = request.app.state
        self.engine, self.metrics, self.model_name = state.engine, state.metrics, state.model_name
        self.request, self.job, self.chat, self.endpoint = request, job, chat, endpoint
        self.with_origins, self.include_usage = body.biglittle.return_origins, body.include_usage
        self.t0 = time.monotonic()
        self.cid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.events = self.engine.submit(job)
        self.finished = False
        # the model whose vocabulary the committed tokens are in (as the library decodes the text):
        # the big model's whenever the policy uses it (a cascade or router needs one shared
        # tokenizer; drafts of a small model with another one reach the loop as big-model
        # tokens), else the small model's. Token pieces and log-prob strings use its tokenizer.
        out_model = self.engine.big if job.policy.uses_big or self.engine.small is None else self.engine.small
        self.tokenizer = out_model.tokenizer
        self.logprobs = LogprobFormat(self.tokenizer) if job.options.get("logprobs") is not None else None

    def finish(self) -> None:
        """Once per job, however it ends: stop the worker (a no-op if it is done) and free the
        job's place in the queue."""
        if not self.finished:
            self.finished = True
            self.job.cancel.set()
            self.events.close()
            self.engine.release(self.job)
            self.metrics.queue.set(self.engine.in_flight)

    async def first_event(self):
        """The first event; a failing one (a bad request) is raised before any output."""
        try:
            first = await next_event(self.events, self.job, self.request)
        except BaseException:
            self.finish()
            raise
        if first[0] not in ("chunk", "done"):
            self.finish()
            raise event_error(*first, self.job.timeout_s)
        return first

    def envelope(self, choice: dict, **extra) -> dict:
        return {"id": self.cid, "object": "chat.completion.chunk" if self.chat else "text_completion",
                "created": self.created, "model": self.model_name, "choices": [choice], **extra}

    def record(self, result) -> None:
        self.metrics.record_generation(result.stats, result.reasons)
        self.metrics.latency.labels(self.endpoint).observe(time.monotonic() - self.t0)
        self.metrics.requests.labels(self.endpoint, "200").inc()

    async def sse_events(self, first):
        seen: list[int] = []
        shown = ""
        got_text = False
        try:
            if self.chat:
                yield sse(self.envelope({"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}))
            kind, value = first
            while kind == "chunk":
                extra = {}
                if self.with_origins and value.token_ids:
                    texts = pieces(self.tokenizer, seen, value.token_ids)
                    extra["biglittle"] = {"token_ids": value.token_ids, "origins": value.origins,
                                          "reasons": value.reasons, "pieces": texts}
                    seen = (seen + value.token_ids)[-PIECE_WINDOW:]  # the next chunk's context
                    shown += "".join(texts)
                lps = self.logprobs.format(self.chat, value.token_ids, value.logprobs) \
                    if self.logprobs is not None and value.token_ids else None
                if value.text or extra or lps:
                    if value.text and not got_text:
                        got_text = True
                        self.metrics.first_token.observe(time.monotonic() - self.t0)
                    yield sse(self.envelope(text_choice(value.text, self.chat, None, lps), **extra))
                # a client that goes away surfaces here as a closed generator (its next send fails)
                kind, value = await next_event(self.events, self.job)
            yield self.last_event(kind, value, shown)
            if kind == "done" and self.include_usage:  # OpenAI's stream_options: a last chunk with no choices
                yield sse({**self.envelope({}), "choices": [], "usage": usage(value)})
            yield "data: [DONE]\n\n"
        finally:
            self.finish()

    def last_event(self, kind: str, value, shown: str) -> str:
        if kind != "done":
            err = event_error(kind, value, self.job.timeout_s)
            self.metrics.requests.labels(self.endpoint, str(err.status)).inc()
            return sse(error_body(err.message, err.type, err.param, err.code))
        self.record(value)
        block = biglittle_block(value, self.with_origins)
        if self.with_origins and value.text is not None and value.text.startswith(shown):
            block["pieces_tail"] = value.text[len(shown):]  # text no token's piece showed yet
        return sse(self.envelope(text_choice("", self.chat, finish_reason(value)), usage=usage(value),
                                 biglittle=block))

    async def collect(self, first) -> dict:
        """Not streaming: wait for the result, watching the deadline and for a client that goes away."""
        try:
            kind, value = first
            while kind == "chunk":
                kind, value = await next_event(self.events, self.job, self.request)
        finally:
            self.finish()
        if kind != "done":
            raise event_error(kind, value, self.job.timeout_s)
        result = value
        self.record(result)
        choice = {"index": 0, "finish_reason": finish_reason(result), "logprobs": None}
        if self.logprobs is not None:
            choice["logprobs"] = self.logprobs.format(self.chat, result.token_ids, result.logprobs)
        if self.chat:
            choice["message"] = {"role": "assistant", "content": result.text}
        else:
            choice["text"] = result.text if result.text is not None else ""
        return {"id": self.cid, "object": "chat.completion" if self.chat else "text_completion",
                "created": self.created, "model": self.model_name, "choices": [choice], "usage": usage(result),
                "biglittle": biglittle_block(result, self.with_origins)}


async def run_job(request: Request, job: Job, body, chat: bool, endpoint: str):
    """Answer an admitted generation job: events when body.stream, else one JSON body."""
    run = GenerationRun(request, job, body, chat, endpoint)
    first = await run.first_event()
    if body.stream:
        return JobStream(run.sse_events(first), on_close=run.finish, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return await run.collect(first)
