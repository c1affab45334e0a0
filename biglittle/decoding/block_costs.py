"""What the big model costs to score a block of n positions, measured, per size.

The curve is not a line (docs/architecture.md, "the cost of a block": on a CPU each extra
position costs ~26 ms up to 12 positions and ~14 ms from 16 on; on a GPU a block of 8 costs
about one token), so each size keeps the median of its recent calls (medians: one stall of a
shared machine must not move it).
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
        self.read: tuple[int, float] | None = None  # the last long read: (positions, seconds)

    def add(self, size: int, seconds: float) -> None:
        self.calls.setdefault(size, deque(maxlen=self.window)).append(seconds)

    def add_prompt_read(self, size: int, seconds: float) -> None:
        self.per_position = seconds / size
        self.read = (size, seconds)

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

    def anchored(self, size: int) -> float:
        """Seconds to score `size` positions, from the measured sizes and the last prompt read taken
        as one more block (needs a measured size). Past the largest measured size the cost heads for
        the prompt read's (a block of 4 measured, blocks up to 16 follow the curve's flattening,
        which a slope carried on from small blocks misses on a 16-bit model); below the smallest, cost
        ∝ positions (the compute-bound, pessimistic case); never below a smaller size's cost."""
        points = sorted((s, self.median(s)) for s in self.calls)
        if self.read is not None and self.read[0] > points[-1][0]:
            points.append(self.read)
        if size <= points[0][0]:
            return points[0][1] * size / points[0][0]
        lo = max(p for p in points if p[0] <= size)
        above = [p for p in points if p[0] > size]
        if above:
            hi = above[0]
        elif len(points) > 1:
            hi = points[-1] if points[-1] != lo else points[-2]
        else:  # one measured size: each extra position costs a prompt position, or as much as these
            per = self.per_position if self.per_position is not None else lo[1] / lo[0]
            hi = (lo[0] + 1, lo[1] + per)
        slope = (hi[1] - lo[1]) / (hi[0] - lo[0])
        return max(lo[1], lo[1] + slope * (size - lo[0]))
