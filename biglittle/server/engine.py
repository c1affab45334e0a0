"""Model work off the event loop: one worker thread, a bounded queue, round-robin rounds,
cancellation and timeouts.

The models are used from one thread (a session cache is not thread-safe, and two CPU cores gain
nothing from parallel forward passes), but not one whole request at a time: a generation runs
one round (one committed chunk) per turn and then queues its next round behind whatever else is
waiting, so jobs take turns at round granularity and a 3-token /v1/score call waits for at most
one round of each running generation, never for a whole 1,000-token answer. Each generation keeps
its own sessions (its own KV state) between turns, on llama.cpp too (a sequence id per session in
one unified cache, models/llamacpp.py), so switching jobs re-reads nothing.

`admit` bounds how many jobs may be waiting or running; the HTTP layer answers 429 when it says
no. A generation hands its chunks to the event loop through an asyncio queue, checks its cancel
flag (set when the client disconnects) and its deadline before each round, and closes the
library's stream when either fires. The deadline runs from admission, so time spent waiting
behind other requests counts: a job whose time is up before it starts never runs; a score job
checks the same before its forward pass.
"""
from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from ..decoding.result import Stats
from ..decoding.session import TrackedSession
from ..errors import PromptError
from ..generate import stream
from ..policies.base import Policy
from ..tokens import common_prefix


SCORE_SESSIONS = 4  # sessions kept for /v1/score clients that resend a growing sequence


class QueueFull(Exception):
    pass


class Closing(Exception):
    pass


@dataclass(eq=False)  # compared by identity: removed from the cache by identity
class ScoreSession:
    """A /v1/score client's big-model session, and how many leading positions that client has
    settled (its last request's context: a later request must agree with them to continue it)."""
    tracked: TrackedSession
    settled: int = 0


@dataclass(eq=False)  # compared and hashed by identity: jobs live in a set
class Job:
    """One admitted generation: what to run, and the flags the worker watches."""
    prompt: object                # a prompt, or the token ids of a score job
    policy: Policy | None = None  # None for a score job
    options: dict = field(default_factory=dict)
    chat: bool = False
    timeout_s: float = 300.0
    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: float = field(init=False)

    def __post_init__(self):
        self.deadline = time.monotonic() + self.timeout_s


class Events:
    """A job's events as the event loop reads them: ("chunk", Chunk)…, then ("done", result),
    ("error", exception) or ("timeout", None). `next` waits at most `timeout` seconds (None
    when nothing came); the pending read survives a timeout, so no event is ever lost."""

    def __init__(self, queue: asyncio.Queue):
        self._queue = queue
        self._get: asyncio.Future | None = None

    async def next(self, timeout: float):
        if self._get is None:
            self._get = asyncio.ensure_future(self._queue.get())
        done, _ = await asyncio.wait({self._get}, timeout=timeout)
        if not done:
            return None
        item, self._get = self._get.result(), None
        return item

    def close(self) -> None:
        if self._get is not None:
            self._get.cancel()
            self._get = None


class Engine:
    def __init__(self, small, big, policy: Policy, max_queue: int = 16, timeout_s: float = 300.0):
        self.small, self.big, self.policy = small, big, policy
        self.max_queue, self.timeout_s = max_queue, timeout_s
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="biglittle-model")
        self._lock = threading.Lock()
        self.in_flight = 0
        self.closing = False
        self._jobs: set[Job] = set()
        self._score_sessions: list[ScoreSession] = []  # a small prefix cache for /v1/score, most recent first

    # ------------------------------------------------------------ admission

    def admit(self, job: Job | None = None) -> None:
        with self._lock:
            if self.closing:
                raise Closing()
            if self.in_flight >= self.max_queue:
                raise QueueFull()
            self.in_flight += 1
            if job is not None:
                self._jobs.add(job)

    def release(self, job: Job | None = None) -> None:
        with self._lock:
            self.in_flight -= 1
            self._jobs.discard(job)

    def shutdown(self) -> None:
        """Refuse new work, cancel what is running, and wait for the worker to stop."""
        with self._lock:
            self.closing = True
            for job in self._jobs:
                job.cancel.set()
        self.pool.shutdown(wait=True)  # queued turns see the flag and end at once

    # ------------------------------------------------------------ generation

    def submit(self, job: Job) -> Events:
        """Queue an admitted job on the model thread; its events arrive on the calling loop."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def put(kind, value):
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        self.pool.submit(self._work, job, put)
        return Events(queue)

    def _work(self, job: Job, put) -> None:
        """The job's first turn: start the library's stream, then take its first round."""
        if self._stopped(job, put):
            return
        try:
            chunks = stream(self.small if job.policy.uses_small else None, self.big if job.policy.uses_big else None,
                            job.prompt, policy=job.policy, chat=job.chat, **job.options)
        except Exception as e:  # noqa: BLE001 — handed to the HTTP layer, which picks the status
            put("error", e)
            return
        self._turn(job, put, chunks)

    def _turn(self, job: Job, put, chunks) -> None:
        """One round of a running generation; then its next round goes to the back of the queue."""
        if self._stopped(job, put):
            chunks.close()
            return
        try:
            chunk = next(chunks)
        except Exception as e:  # noqa: BLE001
            put("error", e)
            return
        put("chunk", chunk)
        if chunk.final is not None:
            put("done", chunk.final)
            return
        try:
            self.pool.submit(self._turn, job, put, chunks)
        except RuntimeError:  # shutting down: the pool takes no more work
            chunks.close()
            put("error", asyncio.CancelledError())

    @staticmethod
    def _stopped(job, put) -> bool:
        """Whether the job was cancelled or ran out of time (and then say so)."""
        if job.cancel.is_set():
            put("error", asyncio.CancelledError())
            return True
        if time.monotonic() > job.deadline:
            put("timeout", None)
            return True
        return False

    # ------------------------------------------------------------ scoring

    def score_job(self, job: Job, start: int, top_k: int) -> dict:
        """`score` for an admitted job, unless it was cancelled or ran out of time while it waited."""
        if job.cancel.is_set():
            raise asyncio.CancelledError()
        if time.monotonic() > job.deadline:
            raise TimeoutError()
        return self.score(job.prompt, start, top_k)

    def score(self, token_ids: list[int], start: int, top_k: int) -> dict:
        """Log-probs of each given next token and the top-k, for the distributions after
        positions start … len−1, from one forward pass over what the cache lacks."""
        big = self.big
        if not token_ids or any(not isinstance(t, int) or not 0 <= t < big.vocab_size for t in token_ids):
            raise PromptError(f"token_ids must be a non-empty list of ids in [0, {big.vocab_size})")
        if not 0 <= start < len(token_ids):
            raise PromptError(f"start must be in [0, {len(token_ids)}), got {start}")
        if big.context_length and len(token_ids) > big.context_length:
            raise PromptError(f"{len(token_ids)} tokens are beyond the context window of {big.context_length}")
        cached = self._score_session(token_ids)
        try:
            feed = cached.tracked.sync(token_ids, min_feed=len(token_ids) - start)
            logp, elapsed = cached.tracked.extend(feed, keep=len(token_ids) - start)
        except BaseException:
            # the backend may have cached part of the call (positions its tracked tokens lack):
            # a session in that state would give the next client wrong numbers
            self._score_sessions.remove(cached)
            raise
        # what this client now treats as context: the positions up to `start` (rows from start on
        # judge the tokens after it, which a client may take back); a whole-sequence score (start
        # 0) takes nothing back
        cached.settled = start + 1 if start else len(token_ids)
        values, ids = torch.topk(logp, min(top_k, logp.shape[-1]), dim=-1)
        rows = []
        for i in range(logp.shape[0]):
            pos = start + i
            nxt = token_ids[pos + 1] if pos + 1 < len(token_ids) else None
            rows.append({"position": pos, "next_token": nxt,
                         "next_logprob": float(logp[i, nxt]) if nxt is not None else None,
                         "top": [[int(t), float(v)] for t, v in zip(ids[i], values[i])]})
        return {"vocab_size": big.vocab_size, "start": start, "rows": rows, "elapsed_s": elapsed,
                "computed": len(feed)}

    def _score_session(self, token_ids: list[int]) -> ScoreSession:
        """The cached session this request may continue, else a new one (the least recently used
        one goes when the cache is full). Remote clients resend the whole sequence each call, so
        continuing their session makes each call cost only its new tokens.

        A request may continue a session only where it agrees with everything that session's
        client has settled: the whole session is a prefix of the request (a growing sequence),
        or the request differs only in tokens the last call put up to be judged (the same client
        after a rollback: its rejected drafts). A request that merely shares a prefix with
        another client's sequence (a chat template, a system prompt) gets a session of its own
        instead of truncating that client's, which would make both recompute on every call."""
        def agreed(c: ScoreSession) -> int:
            return common_prefix(c.tracked.tokens, token_ids)

        fits = [c for c in self._score_sessions if agreed(c) >= c.settled]
        best = max(fits, key=agreed, default=None)  # ties: the most recently used (listed first)
        if best is None:
            if len(self._score_sessions) >= SCORE_SESSIONS:
                self._score_sessions.pop()  # the least recently used
            best = ScoreSession(TrackedSession(self.big.session(), "big", Stats()))
        else:
            self._score_sessions.remove(best)
        self._score_sessions.insert(0, best)  # most recently used first
        return best
