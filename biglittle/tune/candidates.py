"""The candidates tune compares: the token-level grid, one candidate's record, and one run on one prompt."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ..decoding.result import Stats
from ..policies import BiLD, Policy, Speculative
from .costs import Costs

DRAFTS = (1, 2, 3, 4, 5, 6, 7, 8)
FALLBACKS = (0.3, 0.5, 0.7, 0.9)
ROLLBACKS = (1.0, 2.0, 3.0, 5.0, math.inf)
# drafts copied from the prompt and the text so far: the schedule decides per round, or as many as match
LOOKUPS = (Speculative(drafter="lookup", schedule="auto", draft=16), Speculative(drafter="hybrid", schedule="auto"),
           Speculative(drafter="lookup", draft=16))


@dataclass
class Candidate:
    """One policy on the sample prompts. Deltas are to big-only on the same prompts, with 95%
    paired bootstrap intervals over prompts; times are totals over the prompts."""
    spec: str
    agreement: float = 0.0                   # mean over prompts of agreement with big-only's tokens
    agreement_delta: float = 0.0             # agreement − big-only's (1)
    agreement_delta_ci: list[float] | None = None
    metric: float | None = None              # the task's primary metric, where the task has references
    metric_delta: float | None = None        # metric − big-only's
    metric_delta_ci: list[float] | None = None
    meets_floor: bool = False                # the interval's low end is within the floor
    prompts_needed: int | None = None        # where the point estimate meets the floor and the interval does not
    speedup: float = 0.0                     # median over rounds of big-only wall / this wall, same round
    wall_s: float = 0.0                      # median over rounds of the total over prompts
    rounds: int = 0                          # timed rounds
    timing: str = "measured"                 # or "composed": the sum of the measured parts it runs
    est_s: float = 0.0                       # counted calls and positions priced at the per-call costs
    est_speedup: float | None = None         # big-only est_s / est_s, only where within 15% of speedup
    est_error: float | None = None           # that estimate / speedup − 1
    new_tokens: int = 0
    small_calls: int = 0
    big_calls: int = 0
    big_positions: int = 0
    escalated: float | None = None           # cascades: fraction of prompts the big model answered


@dataclass
class PromptRun:
    """One generation on one prompt: what it wrote, what it counted, and its wall time."""
    tokens: list[int]
    text: str | None
    stats: Stats
    wall_s: float


def counted(spec: str, runs: list[PromptRun], costs: Costs) -> Candidate:
    c = Candidate(spec)
    for r in runs:
        c.est_s += costs.of(r.stats)
        c.new_tokens += len(r.tokens)
        c.small_calls += r.stats.small_calls
        c.big_calls += r.stats.big_calls
        c.big_positions += r.stats.big_positions
    return c


def grid(drafts: Sequence[int] = DRAFTS, fallbacks: Sequence[float] = FALLBACKS,
         rollbacks: Sequence[float] = ROLLBACKS, lookups: Sequence[Policy] = LOOKUPS) -> list[Policy]:
    """The token-level candidates: BiLD's fallback × rollback grid, speculative draft lengths and
    the prompt-lookup / hybrid drafters."""
    return ([BiLD(fallback=float(f), rollback=float(r)) for f in fallbacks for r in rollbacks]
            + [Speculative(draft=int(d)) for d in drafts] + list(lookups))
