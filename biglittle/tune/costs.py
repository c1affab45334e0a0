"""Per-call costs of a model pair, measured, for tune's priced estimate beside the clock."""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Sequence

from ..decoding.result import Stats


@dataclass
class Costs:
    """Seconds per forward pass: a small call (one token), and a big call of k positions costing
    big_call_s + k · big_position_s. A straight line: on a CPU a block of k costs far less than
    k single tokens and the curve bends (docs/architecture.md, "the cost of a block"), which is
    why tune ranks by the clock and keeps this estimate only where it agrees with it."""
    small_call_s: float
    big_call_s: float
    big_position_s: float = 0.0

    def estimate(self, small_calls: int, big_calls: int, big_positions: int) -> float:
        return small_calls * self.small_call_s + big_calls * self.big_call_s + big_positions * self.big_position_s

    def of(self, stats: Stats) -> float:
        return self.estimate(stats.small_calls, stats.big_calls, stats.big_positions)

    @property
    def ratio(self) -> float:
        """c: a small step's cost over a one-token big step's (Leviathan et al.'s cost coefficient)."""
        big = self.big_call_s + self.big_position_s
        return self.small_call_s / big if big > 0 else math.inf


def measure_costs(small, big, prompt_ids: Sequence[int], repeats: int = 5, block: int = 8) -> Costs:
    """Time one-token small steps, one-token big steps and `block`-token big passes after the
    prompt (median of `repeats`, after a warm-up), and fit the big call's fixed and per-position parts."""
    prompt_ids = list(prompt_ids)

    def median_step(model, ids: list[int]) -> float:
        session = model.session()
        session.extend(prompt_ids, keep=1)
        times = []
        for _ in range(repeats + 1):  # the first is a warm-up
            t0 = time.perf_counter()
            session.extend(ids, keep=len(ids))
            times.append(time.perf_counter() - t0)
            session.truncate(len(prompt_ids))
        return statistics.median(times[1:])

    token = prompt_ids[-1]
    small_s = median_step(small, [token])
    one, many = median_step(big, [token]), median_step(big, [token] * block)
    per_position = max(0.0, (many - one) / (block - 1))
    return Costs(small_s, max(one - per_position, 0.0), per_position)
