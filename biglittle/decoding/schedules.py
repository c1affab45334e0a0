"""Draft-length schedules for speculative decoding: how many tokens to draft next round.

- constant: always γ.
- heuristic (HF assisted generation): +2 after a fully accepted block, −1 otherwise, never below 1.
- auto: the γ (0 included, i.e. big model alone) that maximises expected tokens per second,
  from the acceptance rate α and the costs measured on this pair so far.

A schedule's `next(state)` is told where the generation stands (`RoundState`): what the small
model has not read yet, and how many tokens may still come. It is never asked in a generation's
first round: there the big model reads the prompt alone (decoding/loop.py).

A schedule object belongs to one request (its exploration budget, its current γ); what the auto
schedules learn about a pair (acceptance, costs) lives in a separate statistics object that
`pair_memory` keeps for the pair's later requests (`DraftStats`, `CopyStats`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .block_costs import BlockCosts


@dataclass(frozen=True)
class RoundState:
    """Where a generation stands as a round starts: what drafting now would first cost."""
    small_behind: int = 0        # committed tokens the small model has not read yet (the prompt, at first)
    budget: int | None = None    # new tokens still allowed (None: unknown)
    copy_len: int = 0            # tokens prompt lookup could copy now (0: no match)
    copy_n: int = 0              # length of the n-gram that matched


class ConstantSchedule:
    def __init__(self, draft: int):
        self.draft = draft

    def next(self, state: RoundState = RoundState()) -> int:
        return self.draft

    def update(self, drafted: int, accepted: int, **timings) -> None:
        pass


class HeuristicSchedule(ConstantSchedule):
    def update(self, drafted: int, accepted: int, **timings) -> None:
        if drafted == 0:  # nothing was drafted (the prompt read): no block to count as kept whole
            return
        self.draft = self.draft + 2 if accepted == drafted else max(1, self.draft - 1)


def expected_speedup(alpha: float, gamma: int, c: float) -> float:
    """Leviathan et al.'s expected walltime improvement: (1−α^{γ+1}) / ((1−α)(γc+1))."""
    if alpha >= 1:
        return (gamma + 1) / (gamma * c + 1)
    return (1 - alpha ** (gamma + 1)) / ((1 - alpha) * (gamma * c + 1))


@dataclass
class DraftStats:
    """What the small model's rounds taught about a pair: worth keeping across requests."""
    hits: float = 7.0                   # prior α ≈ 0.7, worth ten draft tokens
    trials: float = 10.0
    t_small: float | None = None        # one draft step of the small model, seconds
    t_feed: float | None = None         # small model, seconds per position caught up
    costs: BlockCosts = field(default_factory=BlockCosts)  # the big model's calls, per block size
    big_calls_seen: int = 0


class AutoSchedule:
    """Pick γ each round to maximise expected tokens per second; γ = 0 is the big model alone.

    Tokens per round at γ: (1 − α^{γ+1}) / (1 − α) (geometric acceptance).
    Seconds per round:     γ·t_small + t_big(γ + 1), with t_big(n) the big model's measured cost
    per block size (BlockCosts: medians per size, the prompt read as the longest block), because on
    a CPU scoring a block costs more than one token, and not along a line (a 16-bit model's blocks
    are nearly flat past 4), which Leviathan's constant-cost formula misses.

    A fresh pair starts with the big model alone: the prompt read and one big step measure what a
    block costs. Then it probes the small model (catch it up, one draft step, a block of 3) only where
    drafting could pay for it within this request: if a drafter that cost nothing, at the prior α,
    would save more over the tokens still allowed than the probe costs (a 16-bit big model: one
    token 113 ms, a block of 5 ~160 ms). Where even that cannot repay the probe (a Q4 big model
    whose blocks cost ~26 ms a position), the small model is never woken. Once the drafter is
    measured, later probes (α or costs may change) are paid from an exploration budget: `explore`
    × the time this request has spent with the big model alone.

    What it measured (`learned`, a DraftStats) serves every later request of the same pair (see
    `pair_memory`): a new request drafts as soon as the big model has read its prompt when
    drafting pays, and never wakes the small model when it does not. The budget (`credit`) and
    the current γ are this request's alone.
    """

    PROBE = 2  # drafted tokens in a probe: the 1st measures catching up, the 2nd one draft step

    def __init__(self, draft: int, learned: DraftStats | None = None, max_draft: int = 16,
                 explore: float = 0.05):
        self.draft, self.max_draft, self.explore = draft, max_draft, explore
        self.learned = learned if learned is not None else DraftStats()
        self.credit = 0.0  # this request's exploration budget left, seconds

    @property
    def alpha(self) -> float:
        return min(self.learned.hits / self.learned.trials, 0.999)

    @property
    def t_small(self) -> float | None:
        return self.learned.t_small

    @property
    def t_prefill(self) -> float | None:
        """The big model's seconds per position while reading a prompt."""
        return self.learned.costs.per_position

    def update(self, drafted: int, accepted: int, *, big_s: float = 0.0, big_block: int = 0,
               small_s: float = 0.0, small_steps: int = 0, feed_s: float = 0.0, feed_n: int = 0,
               **_) -> None:
        """Learn from a round, into the pair's statistics; a big-only round earns this request
        exploration budget."""
        learned = self.learned
        if drafted:
            learned.hits += accepted
            learned.trials += accepted + (1 if accepted < drafted else 0)
            if learned.trials > 1000:  # old evidence fades, so a new kind of text can move α
                learned.hits, learned.trials = learned.hits / 2, learned.trials / 2
        if small_steps:
            learned.t_small = _ema(learned.t_small, small_s / small_steps)
        if feed_n > 1:
            learned.t_feed = _ema(learned.t_feed, feed_s / feed_n)
        if drafted == 0 and big_block > 1:  # the big model reading a prompt: bounds catching up
            learned.costs.add_prompt_read(big_block, big_s)
        elif 0 < big_block <= self.max_draft + 1:
            learned.costs.add(big_block, big_s)
            learned.big_calls_seen += 1
        if drafted == 0 and big_block:
            self.credit += self.explore * big_s

    def big_cost(self, n: int) -> float:
        """Seconds for the big model to score a block of n (needs at least one big call seen)."""
        return max(1e-9, self.learned.costs.anchored(n))

    def rate(self, gamma: int) -> float:
        """Expected tokens per second at draft length gamma (small model already caught up); an
        unmeasured drafter is taken to cost nothing (the best case, see `could_repay`)."""
        a = self.alpha
        tokens = (1 - a ** (gamma + 1)) / (1 - a)
        return tokens / (gamma * (self.t_small or 0.0) + self.big_cost(gamma + 1))

    def feed_cost(self) -> float:
        """Seconds per position for the small model to catch up; the big model's if unmeasured
        (pessimistic: the small model is never slower)."""
        t_feed = self.learned.t_feed
        return t_feed if t_feed is not None else self.t_prefill or self.big_cost(1)

    def probe_cost(self, small_behind: int) -> float:
        """What a probe costs over a big-only step: catching the small model up, a draft step,
        and a bigger block. An unmeasured draft step is taken as a big-model step (pessimistic)."""
        one = self.big_cost(1)
        step = self.t_small if self.t_small is not None else one
        return small_behind * self.feed_cost() + step + self.big_cost(self.PROBE + 1) - one

    def could_repay(self, state: RoundState, cost: float) -> bool:
        """Whether a first probe could pay for itself within this request: the best case (a drafter
        that costs nothing, at the current α) saves more than `cost` over the tokens still allowed."""
        if state.budget is None:
            return False
        best = max(self.rate(g) for g in range(1, self.max_draft + 1))
        return state.budget * (1 / self.rate(0) - 1 / best) > cost

    def next(self, state: RoundState = RoundState()) -> int:
        self.draft = self._choose(state)
        return self.draft

    def _choose(self, state: RoundState) -> int:
        if not self.learned.costs.calls:  # a big step first: with the prompt read, it prices blocks
            return 0
        known = self.t_small is not None
        best = max(range(self.max_draft + 1), key=self.rate) if known else 0
        if best and state.small_behind > 1 and state.budget is not None:
            # switching drafting on first costs catching the small model up: only worth it if the
            # time saved over the tokens still allowed (at most) repays it
            saved = state.budget * (1 / self.rate(0) - 1 / self.rate(best))
            if saved < state.small_behind * self.feed_cost():
                best = 0
        if best == 0:
            cost = self.probe_cost(state.small_behind)
            if self.credit >= cost:
                self.credit -= cost
                best = self.PROBE
            elif not known and self.could_repay(state, cost):
                best = self.PROBE
        return best


def _ema(old: float | None, new: float, weight: float = 0.2) -> float:
    return new if old is None else (1 - weight) * old + weight * new


class CopyStats:
    """What verifying copies taught about the big model: the chance a copied token is kept, per
    length of the n-gram that matched (a longer match is likelier right), and its block costs.
    Worth keeping across requests."""

    def __init__(self, ngram: int):
        self.hits = [3.0] * (ngram + 1)     # prior α = 0.6, worth five copied tokens, per n
        self.trials = [5.0] * (ngram + 1)
        self.costs = BlockCosts()


class CopySchedule:
    """How many copied tokens (prompt lookup) to send for verification this round.

    "constant": as many as the match offers, up to `max_draft`. "auto": the k (0 = a plain
    big-model step) that maximises expected tokens per second,

        tokens(k) = (1 − α^{k+1}) / (1 − α)        seconds(k) = cost of a big call of k + 1 positions

    with α and the costs from `learned` (a CopyStats, which `pair_memory` keeps for the big
    model's later requests). Copies cost nothing to make, so where nothing is copied, or copies
    fail, it runs at big-only speed. A fresh big model's first call (the prompt read) times it
    reading positions in bulk, and its second (a plain step) one position: then it copies.
    """

    def __init__(self, max_draft: int, auto: bool, ngram: int, learned: CopyStats | None = None):
        self.max_draft, self.auto = max_draft, auto
        self.learned = learned if learned is not None else CopyStats(ngram)

    @property
    def costs(self) -> BlockCosts:
        return self.learned.costs

    def alpha(self, n: int) -> float:
        return min(self.learned.hits[n] / self.learned.trials[n], 0.999)

    def limit(self, state: RoundState) -> int:
        most = min(state.copy_len, self.max_draft)
        if not self.auto:
            return most
        if not self.costs.known:
            return 0
        a = self.alpha(state.copy_n)
        rate = lambda k: (1 - a ** (k + 1)) / (1 - a) / self.costs.estimate(k + 1)  # noqa: E731
        return max(range(most + 1), key=rate)

    def update(self, drafted: int, accepted: int, *, source: str = "copy", copy_n: int = 0,
               big_s: float = 0.0, big_block: int = 0, **_) -> None:
        """Learn from a round: α from rounds that verified copies, block costs from every big call."""
        hits, trials = self.learned.hits, self.learned.trials
        if drafted and source == "copy":
            hits[copy_n] += accepted
            trials[copy_n] += accepted + (1 if accepted < drafted else 0)
            if trials[copy_n] > 200:  # old evidence fades: a new kind of text can move α
                hits[copy_n], trials[copy_n] = hits[copy_n] / 2, trials[copy_n] / 2
        if drafted == 0 and big_block > 1:  # the big model reading a prompt alone
            self.costs.add_prompt_read(big_block, big_s)
        elif big_block:
            self.costs.add(big_block, big_s)


def make_schedule(name: str, draft: int):
    """A schedule for one request, starting at γ = draft (an auto one with nothing learned yet)."""
    return {"constant": ConstantSchedule, "heuristic": HeuristicSchedule, "auto": AutoSchedule}[name](draft)
