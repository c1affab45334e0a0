"""Cascade candidates composed from the small-only and big-only runs (exact under greedy decoding)."""
from __future__ import annotations

import math
import time
from typing import Sequence

from ..decoding.result import Stats
from ..decoding.session import TrackedSession
from ..policies.cascade import answer_logps, reduce_logps
from .candidates import PromptRun

CASCADE_SCORERS = (("small-confidence", "mean"), ("small-confidence", "min"), ("big-score", "mean"),
                   ("big-score", "min"))
MAX_THRESHOLDS = 8     # cascade thresholds tried per scorer (between observed scores)


def _thresholds(scores: Sequence[float]) -> list[float]:
    """Thresholds between consecutive distinct scores (each splits the prompts differently),
    at most MAX_THRESHOLDS of them, spread evenly."""
    s = sorted(set(x for x in scores if math.isfinite(x)))
    mids = [(a + b) / 2 for a, b in zip(s, s[1:])]
    if len(mids) > MAX_THRESHOLDS:
        step = (len(mids) - 1) / (MAX_THRESHOLDS - 1)
        mids = [mids[round(i * step)] for i in range(MAX_THRESHOLDS)]
    return mids


def _cascade_runs(small_runs, big_runs, scores, t, scoring: list[PromptRun] | None) -> tuple[list[PromptRun], float]:
    """What a cascade at threshold t does on each prompt, from the small-only and big-only runs
    (exact under greedy decoding): its answer, its calls as stats, and its time as the sum of the
    measured parts it runs."""
    runs, escalated = [], 0
    for i, (s, b) in enumerate(zip(small_runs, big_runs)):
        st = Stats(small_calls=s.stats.small_calls, small_s=s.stats.small_s)
        wall = s.wall_s
        if scoring is not None:  # big-score: one big pass over prompt + answer
            sc = scoring[i].stats
            st.big_calls, st.big_positions, st.big_s = sc.big_calls, sc.big_positions, sc.big_s
            wall += scoring[i].wall_s
        keep = scores[i] >= t
        if not keep:
            escalated += 1
            st.big_calls += b.stats.big_calls
            # after a scoring pass the big model has the prompt cached: it re-feeds only its last token
            st.big_positions += b.stats.big_positions - (b.stats.prompt_tokens - 1 if scoring is not None else 0)
            wall += b.wall_s
        st.wall_s = wall
        runs.append(PromptRun(s.tokens if keep else b.tokens, s.text if keep else b.text, st, wall))
    return runs, escalated / len(runs)


def compose_cascades(small, big, ids, small_runs, big_runs, tick) -> dict[str, tuple[list[PromptRun], float]]:
    """Cascade candidates for every scorer at thresholds between the observed scores:
    spec -> (composed runs, fraction escalated)."""
    scores: dict[tuple[str, str], list[float]] = {}
    scoring: list[PromptRun] = []
    for p, s in zip(ids, small_runs):
        own = answer_logps(TrackedSession(small.session(), "small", Stats()), p, s.tokens)
        st, t0 = Stats(), time.perf_counter()
        judged = answer_logps(TrackedSession(big.session(), "big", st), p, s.tokens)
        scoring.append(PromptRun([], None, st, time.perf_counter() - t0))  # what big-score pays on top of the answer
        for reduce in ("mean", "min"):
            scores.setdefault(("small-confidence", reduce), []).append(reduce_logps(own, reduce))
            scores.setdefault(("big-score", reduce), []).append(reduce_logps(judged, reduce))
        tick("scoring the small answers")
    found = {}
    for scorer, reduce in CASCADE_SCORERS:
        vals = scores[(scorer, reduce)]
        for t in _thresholds(vals):
            found[f"cascade:scorer={scorer},threshold={t:.6g},reduce={reduce}"] = _cascade_runs(
                small_runs, big_runs, vals, t, scoring if scorer == "big-score" else None)
    return found
