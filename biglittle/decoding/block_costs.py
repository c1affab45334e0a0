"""What the big model costs to score a block of n positions, measured, per size.

The curve is not a line (shared/DESIGN.md §7: on a CPU each extra position costs ~26 ms up to
12 positions and ~14 ms from 16 on; on a GPU a block of 8 costs about one token), so each size
keeps the median of its recent calls (medians: one stall of a shared machine must not move it).
A size never measured is estimated from its measured neighbours; past the largest measured size
the last measured slope continues, and with only one size measured, each extra position costs
what a position cost while the big model read the prompt.
"""
from __future__ import annotations

import statistics
from collections import deque


class BlockCosts:
    def __init__(self, window: int = 16):
        self.calls: dict[int, deque[float]] = {}
        self.window = window
        self.per_position: float | None = None   # seconds per position of a long read (the prompt)

    def add(self, size: int, seconds: float) -> None:
        self.calls.setdefault(size, deque(maxlen=self.window)).append(seconds)

    def add_prompt_read(self, size: int, seconds: float) -> None:
        self.per_position = seconds / size

    @property
    def known(self) -> bool:
        return 1 in self.calls

    def median(self, size: int) -> float:
        return statistics.median(self.calls[size])

    def estimate(self, size: int) -> float:
        """Seconds to score `size` positions (needs a measured single-position call)."""
        if size in self.calls:
            return self.median(size)
        sizes = sorted(self.calls)
        below = max(s for s in sizes if s < size)
        above = [s for s in sizes if s > size]
        if above:  # between two measured sizes: on the straight line through them
            hi = min(above)
            lo_cost, hi_cost = self.median(below), self.median(hi)
            return lo_cost + (hi_cost - lo_cost) * (size - below) / (hi - below)
        if below > 1:  # past the largest measured size: its slope from size 1 continues
            slope = (self.median(below) - self.median(1)) / (below - 1)
        else:
            slope = self.per_position if self.per_position is not None else self.median(1)
        return self.median(below) + max(slope, 0.0) * (size - below)
