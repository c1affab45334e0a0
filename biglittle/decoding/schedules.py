"""Draft-length schedules for speculative decoding: how many tokens to draft next round.

- constant: always γ.
- heuristic (HF assisted generation): +2 after a fully accepted block, −1 otherwise, never below 1.
- auto: the γ (0 included, i.e. big model alone) that maximises expected tokens per second,
  from the acceptance rate α and the costs measured during this generation.
"""
from __future__ import annotations

from collections import deque


class ConstantSchedule:
    def __init__(self, draft: int):
        self.draft = draft

    def next(self) -> int:
        return self.draft

    def update(self, drafted: int, accepted: int, **timings) -> None:
        pass


class HeuristicSchedule(ConstantSchedule):
    def update(self, drafted: int, accepted: int, **timings) -> None:
        if drafted == 0:
            return
        self.draft = self.draft + 2 if accepted == drafted else max(1, self.draft - 1)


def expected_speedup(alpha: float, gamma: int, c: float) -> float:
    """Leviathan et al.'s expected walltime improvement: (1−α^{γ+1}) / ((1−α)(γc+1))."""
    if alpha >= 1:
        return (gamma + 1) / (gamma * c + 1)
    return (1 - alpha ** (gamma + 1)) / ((1 - alpha) * (gamma * c + 1))


class AutoSchedule:
    """Pick γ each round to maximise expected tokens per second.

    Tokens per round at γ: (1 − α^{γ+1}) / (1 − α) (geometric acceptance).
    Seconds per round:     γ·t_small + t_big(γ + pending), with t_big(n) = a + b·n fitted to the
    big calls seen so far, because on a compute-bound backend (llama.cpp on a CPU) scoring a block
    costs more than one token, which Leviathan's constant-cost formula misses.
    γ = 0 is the big model alone; when it wins we stop drafting and try γ = 1 every
    `probe_every` rounds, so a later stretch of easy text can switch drafting back on.
    The first rounds measure the costs with at most two drafted tokens, so a pair where drafting
    cannot pay loses almost nothing to finding that out; the user's γ is not needed.
    """

    def __init__(self, draft: int, max_draft: int = 16, probe_every: int = 16, window: int = 64):
        self.draft, self.max_draft, self.probe_every = draft, max_draft, probe_every
        self.hits, self.trials = 7.0, 10.0        # prior α ≈ 0.7, worth ten draft tokens
        self.t_small: float | None = None
        self.big_calls: deque[tuple[int, float]] = deque(maxlen=window)
        self.rounds_at_zero = 0

    @property
    def alpha(self) -> float:
        return min(self.hits / self.trials, 0.999)

    def update(self, drafted: int, accepted: int, *, small_s: float = 0.0, big_s: float = 0.0,
               big_block: int = 0, **_) -> None:
        if drafted:
            self.hits += accepted
            self.trials += accepted + (1 if accepted < drafted else 0)
            per = small_s / drafted
            self.t_small = per if self.t_small is None else 0.8 * self.t_small + 0.2 * per
        if 0 < big_block <= self.max_draft + 1:  # a prompt prefill says little about a draft block
            self.big_calls.append((big_block, big_s))

    def big_cost(self, n: int) -> float:
        xs = [b for b, _ in self.big_calls]
        ys = [t for _, t in self.big_calls]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        var = sum((x - mx) ** 2 for x in xs)
        # with one block size seen, the slope is unknown: assume cost ∝ positions (compute-bound,
        # the pessimistic case), so γ = 0 gets tried and the block-1 calls then measure the slope
        slope = max(0.0, sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var) if var else my / mx
        return max(1e-9, my + slope * (n - mx))

    def rate(self, gamma: int) -> float:
        """Expected tokens per second at draft length gamma."""
        a = self.alpha
        tokens = (1 - a ** (gamma + 1)) / (1 - a)
        return tokens / (gamma * (self.t_small or 0.0) + self.big_cost(gamma + 1))

    def next(self) -> int:
        # Learn the costs cheaply before trusting the model: one drafted token (the draft cost),
        # a big-only step (a block of 1) and a γ = 1 step (a block of 2) give the cost line.
        sizes = {b for b, _ in self.big_calls}
        if self.t_small is None:
            return 1
        if 1 not in sizes:
            return 0
        if not any(b >= 2 for b in sizes):
            return 1
        best = max(range(self.max_draft + 1), key=self.rate)
        if best == 0:
            self.rounds_at_zero += 1
            if self.rounds_at_zero % self.probe_every == 0:
                return 1
        self.draft = best
        return best


def make_schedule(name: str, draft: int):
    return {"constant": ConstantSchedule, "heuristic": HeuristicSchedule, "auto": AutoSchedule}[name](draft)
