"""Wall time of the candidates: round-robin over the prompts, and the progress count."""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable

from ..generate import generate
from ..policies import Policy
from .candidates import PromptRun


class Clock:
    """Runs policies on the prompts round-robin and keeps each one's total wall time per round."""

    def __init__(self, small, big, ids, max_new_tokens: int, tick: Callable[[str], None]):
        self.small, self.big, self.ids, self.max_new_tokens, self.tick = small, big, ids, max_new_tokens, tick
        self.walls: dict[str, dict[int, float]] = {}   # spec -> {round: seconds over all prompts}
        self.rounds = 0

    def run(self, policy: Policy, prompt_ids) -> PromptRun:
        t0 = time.perf_counter()
        r = generate(self.small if policy.uses_small else None, self.big if policy.uses_big else None, prompt_ids,
                     policy=policy, max_new_tokens=self.max_new_tokens)
        return PromptRun(r.token_ids, r.text, r.stats, time.perf_counter() - t0)

    def warm_up(self, entries: dict[str, Policy]) -> None:
        """One untimed run each (caches, lazy loads, auto schedules' first measurements)."""
        for spec, pol in entries.items():
            self.run(pol, self.ids[0])
            self.tick(f"warm-up · {spec}")

    def round(self, entries: dict[str, Policy]) -> dict[str, list[PromptRun]]:
        """Every prompt once with every entry; the order rotates so no policy always runs first."""
        k, self.rounds = self.rounds, self.rounds + 1
        order = list(entries.items())
        runs: dict[str, list[PromptRun]] = {spec: [] for spec in entries}
        for i, p in enumerate(self.ids):
            j = i % len(order)
            for spec, pol in order[j:] + order[:j]:
                runs[spec].append(self.run(pol, p))
                self.tick(f"round {k + 1} · {spec}")
        for spec, rs in runs.items():
            self.walls.setdefault(spec, {})[k] = sum(r.wall_s for r in rs)
        return runs

    def speed(self, spec: str) -> tuple[float, float, int]:
        """(median wall, median over its rounds of big-only's wall / its wall in that round, rounds)."""
        mine, big = self.walls[spec], self.walls["big"]
        ratios = [big[k] / w if w > 0 else math.inf for k, w in mine.items()]
        return statistics.median(mine.values()), statistics.median(ratios), len(mine)


class Ticker:
    """Counts runs for the progress callback: progress(done, total, what)."""

    def __init__(self, progress: Callable[[int, int, str], None] | None, total: int):
        self.progress, self.done, self.total = progress, 0, total

    def tick(self, what: str) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total, what)
