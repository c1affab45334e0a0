"""Token-level policies: the stop rule and acceptance rule that turn the one loop into a method.

Each policy is a validated, immutable config; `start(memory)` gives the loop its per-generation
controller (the interface is in decoding/controller.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..decoding import acceptance as acc
from ..decoding.controller import Controller, SmallOnlyController, big_pick
from ..decoding.pair_memory import PairMemory
from ..decoding.sampling import greedy_token
from ..decoding.schedules import AutoSchedule, CopySchedule, CopyStats, DraftStats, RoundState, make_schedule
from ..errors import ConfigError
from ..numbers import check_number
from .base import Policy

SCHEDULES = ("constant", "heuristic", "auto")
ACCEPTANCES = ("exact", "typical")
DRAFTERS = ("model", "lookup", "hybrid")


# ---------------------------------------------------------------- baselines

@dataclass(frozen=True)
class BigOnly(Policy):
    """The big model alone, one token per call: the baseline every speedup is measured against."""
    name = "big"
    uses_small = False

    def start(self, memory: PairMemory | None = None) -> Controller:
        return _BigOnlyController()


class _BigOnlyController(Controller):
    def accept(self, draft, q, p_logp, sampler):
        return 0, big_pick(p_logp, 0, sampler)


@dataclass(frozen=True)
class SmallOnly(Policy):
    """The small model alone: the speed ceiling and the quality floor."""
    name = "small"
    uses_big = False

    def start(self, memory: PairMemory | None = None) -> Controller:
        return SmallOnlyController()


# ---------------------------------------------------------------- speculative decoding

@dataclass(frozen=True)
class Speculative(Policy):
    """Speculative decoding: draft γ tokens, verify them in one big pass.

    acceptance="exact" is lossless: greedy output equals the big model's token for token and
    sampled output has the big model's distribution. "typical" accepts plausible tokens (lossy).
    schedule: "constant" γ; "heuristic" (+2 / −1); "auto" (γ from measured α and costs, 0 allowed).
    confidence_stop: also stop drafting after a token whose small max-prob is below this.
    drafter: where drafts come from — "model" (the small model), "lookup" (copied from the
      prompt and the text so far, at no cost; no small model needed: small=None), "hybrid"
      (lookup where it finds a match worth verifying, else the small model). For copies, `draft`
      is the most tokens verified at once and the schedule ("auto" decides every round from the
      measured block costs and how copies fared; otherwise as many as the match offers).
    ngram: the longest n-gram prompt lookup matches (it tries n, n−1, …, 1).
    """
    draft: int = 4
    schedule: str = "constant"
    confidence_stop: float | None = None
    acceptance: str = "exact"
    drafter: str = "model"
    ngram: int = 3
    name = "speculative"

    @property
    def uses_small(self) -> bool:
        return self.drafter != "lookup"

    def __post_init__(self):
        if not isinstance(self.draft, int) or isinstance(self.draft, bool) or self.draft < 1:
            raise ConfigError(f"draft must be an integer ≥ 1, got {self.draft!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.acceptance not in ACCEPTANCES:
            raise ConfigError(f"acceptance must be one of {', '.join(ACCEPTANCES)}, got {self.acceptance!r}")
        if self.confidence_stop is not None and not 0 <= check_number("confidence_stop", self.confidence_stop) <= 1:
            raise ConfigError(f"confidence_stop must be in [0, 1] or None, got {self.confidence_stop!r}")
        if self.drafter not in DRAFTERS:
            raise ConfigError(f"drafter must be one of {', '.join(DRAFTERS)}, got {self.drafter!r}")
        if not isinstance(self.ngram, int) or isinstance(self.ngram, bool) or self.ngram < 1:
            raise ConfigError(f"ngram must be an integer ≥ 1, got {self.ngram!r}")

    def start(self, memory: PairMemory | None = None) -> Controller:
        return _SpeculativeController(self, PairMemory() if memory is None else memory)


class _SpeculativeController(Controller):
    def __init__(self, policy: Speculative, memory: PairMemory):
        self.policy = policy
        self.lookup_ngram = policy.ngram if policy.drafter != "model" else 0
        self.schedule = self._model_schedule(memory) if policy.uses_small else None
        self.copies = self._copy_schedule(memory) if self.lookup_ngram else None

    # Each request gets schedules of its own. An auto schedule learns into statistics the pair's
    # memory keeps for later requests, under what changes what it learns (not the whole policy:
    # `draft` only says where γ starts, and one entry per override would grow without bound).

    def _model_schedule(self, memory: PairMemory):
        p = self.policy
        if p.schedule != "auto":
            return make_schedule(p.schedule, p.draft)
        return AutoSchedule(p.draft, memory.recall(("auto", "model", p.acceptance, p.confidence_stop), DraftStats))

    def _copy_schedule(self, memory: PairMemory) -> CopySchedule:
        p = self.policy
        if p.schedule != "auto":
            return CopySchedule(p.draft, auto=False, ngram=p.ngram)
        learned = memory.recall(("auto", "copy", p.acceptance, p.ngram), lambda: CopyStats(p.ngram))
        return CopySchedule(p.draft, auto=True, ngram=p.ngram, learned=learned)

    def draft_limit(self, state=RoundState()):
        return self.schedule.next(state) if self.schedule is not None else 0

    def copy_limit(self, state):
        return self.copies.limit(state)

    def stop_after(self, probs):
        t = self.policy.confidence_stop
        return t is not None and float(probs.max()) < t

    def accept(self, draft, q, p_logp, sampler):
        k = draft.shape[1]
        if self.policy.acceptance == "typical":
            # p(x) and the entropy come from the temperature-processed distribution (Medusa, vLLM),
            # the same one the bonus token is drawn from
            n = int(acc.typical_accept(draft, sampler.probs(p_logp))[0])
            nxt = int(greedy_token(p_logp[0, n])) if n < k else big_pick(p_logp, n, sampler)
            return n, nxt
        if sampler.greedy:
            n = int(acc.greedy_match(draft, p_logp)[0])
            return n, int(greedy_token(p_logp[0, n]))
        n, nxt = acc.rejection_sample(draft, q, sampler.probs(p_logp), sampler.uniform(draft.shape),
                                      sampler.draw)
        return int(n[0]), int(nxt[0])

    def update(self, drafted, accepted, source="small", **timings):
        if self.copies is not None:
            self.copies.update(drafted, accepted, source=source, **timings)
        if self.schedule is not None and source == "small":
            self.schedule.update(drafted, accepted, **timings)


# ---------------------------------------------------------------- Big Little Decoder

@dataclass(frozen=True)
class BiLD(Policy):
    """Big Little Decoder (Kim et al., NeurIPS 2023).

    fallback: hand over to the big model when the small model's max-prob is below this
      (the unsure token is discarded); > 1 always falls back (= big model alone).
    rollback: undo the first small token whose distance −log p_big(token) exceeds this;
      0 always rolls back (= big model alone), inf never does (FS-GEN-style collaboration).
    max_small_steps: call the big model after this many consecutive small tokens (None: never).
    """
    fallback: float = 0.6
    rollback: float = 5.0
    max_small_steps: int | None = 10
    name = "bild"

    def __post_init__(self):
        check_number("fallback", self.fallback)
        check_number("rollback", self.rollback, allow_inf=True)
        n = self.max_small_steps
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise ConfigError(f"max_small_steps must be an integer ≥ 1 or None (no limit), got {n!r}")

    def start(self, memory: PairMemory | None = None) -> Controller:
        return _BiLDController(self)


class _BiLDController(Controller):
    def __init__(self, policy: BiLD):
        self.policy = policy
        self.can_reject = not math.isinf(policy.rollback)

    def draft_limit(self, state=RoundState()):
        return self.policy.max_small_steps

    def stop_before(self, probs):
        return float(probs.max()) < self.policy.fallback

    def accept(self, draft, q, p_logp, sampler):
        n = int(acc.rollback_accept(draft, p_logp, self.policy.rollback)[0])
        return n, big_pick(p_logp, n, sampler)
