"""Decoding policies: the stop rule and acceptance rule that turn the one loop into a method.

A policy is a validated, immutable config. `policy.start(memory)` gives the per-generation
controller the loop asks each round (`memory` is a dict kept for the same pair of models, where
an adaptive controller may keep what it learned for the next generation):
  draft_limit(state)   how many tokens the small model may draft (None = no limit), given where
                       the generation stands (a schedules.RoundState)
  stop_before(probs)   drop the token just proposed and call the big model (BiLD fallback)
  stop_after(probs)    keep the token, then call the big model (confidence stop)
  accept(...)          how many drafts to keep, and the big model's next token
  update(...)          what happened, for adaptive schedules
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch

from ..errors import ConfigError
from . import acceptance as acc
from .sampling import Sampler, greedy_token
from .schedules import RoundState, make_schedule

SCHEDULES = ("constant", "heuristic", "auto")
ACCEPTANCES = ("exact", "typical")


def _number(name: str, value, low: float = 0.0, allow_inf: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if not ok or value < low or (math.isinf(value) and not allow_inf):
        rng = f"≥ {low:g}" + (" (inf allowed)" if allow_inf else ", finite")
        raise ConfigError(f"{name} must be a number {rng}, got {value!r}")
    return float(value)


class Policy:
    """Base for all policies. Token-level policies supply a controller for the shared loop;
    a policy with a loop of its own (contrastive decoding, cascades) overrides `run`."""
    name = "policy"
    uses_small = True
    uses_big = True

    def start(self, memory: dict | None = None) -> "Controller":
        raise NotImplementedError

    def run(self, small, big, prompt_ids, sampler: Sampler, max_new_tokens: int, stats):
        """Yield (token_ids, origins) as tokens are committed, updating `stats` in place."""
        from .loop import decode

        return decode(small, big, prompt_ids, self, sampler, max_new_tokens, stats)

    def describe(self) -> str:
        args = ",".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))  # type: ignore[arg-type]
        return f"{self.name}:{args}" if args else self.name


class Controller:
    verifies = True     # call the big model at all
    can_reject = True   # a verification may discard drafts (if not, a full budget needs no check)

    def draft_limit(self, state: RoundState = RoundState()) -> int | None:
        return 0

    def stop_before(self, probs: torch.Tensor) -> bool:
        return False

    def stop_after(self, probs: torch.Tensor) -> bool:
        return False

    def accept(self, draft: torch.Tensor, q: torch.Tensor, p_logp: torch.Tensor,
               sampler: Sampler) -> tuple[int, int]:
        """draft [1, k], q [1, k, V] (processed small), p_logp [1, k+1, V] (raw big log-probs)
        → (number of drafts kept, the big model's token after them)."""
        raise NotImplementedError

    def update(self, drafted: int, accepted: int, **timings) -> None:
        pass


def _big_pick(p_logp: torch.Tensor, n: int, sampler: Sampler) -> int:
    """The big model's own token at position n: argmax, or a draw from its processed distribution."""
    return int(sampler.choose(p_logp[0, n]))


# ---------------------------------------------------------------- baselines

@dataclass(frozen=True)
class BigOnly(Policy):
    """The big model alone, one token per call: the baseline every speedup is measured against."""
    name = "big"
    uses_small = False

    def start(self, memory: dict | None = None) -> Controller:
        return _BigOnlyController()


class _BigOnlyController(Controller):
    def accept(self, draft, q, p_logp, sampler):
        return 0, _big_pick(p_logp, 0, sampler)


@dataclass(frozen=True)
class SmallOnly(Policy):
    """The small model alone: the speed ceiling and the quality floor."""
    name = "small"
    uses_big = False

    def start(self, memory: dict | None = None) -> Controller:
        return _SmallOnlyController()


class _SmallOnlyController(Controller):
    verifies = False
    can_reject = False

    def draft_limit(self, state=RoundState()):
        return 1  # one token per round, so streaming shows each token as it comes


# ---------------------------------------------------------------- speculative decoding

@dataclass(frozen=True)
class Speculative(Policy):
    """Speculative decoding: draft γ tokens, verify them in one big pass.

    acceptance="exact" is lossless: greedy output equals the big model's token for token and
    sampled output has the big model's distribution. "typical" accepts plausible tokens (lossy).
    schedule: "constant" γ; "heuristic" (+2 / −1); "auto" (γ from measured α and costs, 0 allowed).
    confidence_stop: also stop drafting after a token whose small max-prob is below this.
    """
    draft: int = 4
    schedule: str = "constant"
    confidence_stop: float | None = None
    acceptance: str = "exact"
    name = "speculative"

    def __post_init__(self):
        if not isinstance(self.draft, int) or isinstance(self.draft, bool) or self.draft < 1:
            raise ConfigError(f"draft must be an integer ≥ 1, got {self.draft!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.acceptance not in ACCEPTANCES:
            raise ConfigError(f"acceptance must be one of {', '.join(ACCEPTANCES)}, got {self.acceptance!r}")
        if self.confidence_stop is not None and not 0 <= _number("confidence_stop", self.confidence_stop) <= 1:
            raise ConfigError(f"confidence_stop must be in [0, 1] or None, got {self.confidence_stop!r}")

    def start(self, memory: dict | None = None) -> Controller:
        return _SpeculativeController(self, {} if memory is None else memory)


class _SpeculativeController(Controller):
    def __init__(self, policy: Speculative, memory: dict):
        self.policy = policy
        if policy.schedule == "auto":  # what it measured on this pair serves the next request too
            if policy not in memory:
                memory[policy] = make_schedule(policy.schedule, policy.draft)
            self.schedule = memory[policy]
        else:
            self.schedule = make_schedule(policy.schedule, policy.draft)

    def draft_limit(self, state=RoundState()):
        return self.schedule.next(state)

    def stop_after(self, probs):
        t = self.policy.confidence_stop
        return t is not None and float(probs.max()) < t

    def accept(self, draft, q, p_logp, sampler):
        k = draft.shape[1]
        if self.policy.acceptance == "typical":
            # p(x) and the entropy come from the temperature-processed distribution (Medusa, vLLM),
            # the same one the bonus token is drawn from
            n = int(acc.typical_accept(draft, sampler.probs(p_logp))[0])
            nxt = int(greedy_token(p_logp[0, n])) if n < k else _big_pick(p_logp, n, sampler)
            return n, nxt
        if sampler.greedy:
            n = int(acc.greedy_match(draft, p_logp)[0])
            return n, int(greedy_token(p_logp[0, n]))
        n, nxt = acc.rejection_sample(draft, q, sampler.probs(p_logp), sampler.uniform(draft.shape),
                                      sampler.draw)
        return int(n[0]), int(nxt[0])

    def update(self, drafted, accepted, **timings):
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
        _number("fallback", self.fallback)
        _number("rollback", self.rollback, allow_inf=True)
        n = self.max_small_steps
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise ConfigError(f"max_small_steps must be an integer ≥ 1 or None (no limit), got {n!r}")

    def start(self, memory: dict | None = None) -> Controller:
        return _BiLDController(self)


class _BiLDController(Controller):
    def __init__(self, policy: BiLD):
        self.policy = policy
        self.first = True
        self.can_reject = not math.isinf(policy.rollback)

    def draft_limit(self, state=RoundState()):
        if self.first:  # the first new token comes from the big model
            self.first = False
            return 0
        return self.policy.max_small_steps

    def stop_before(self, probs):
        return float(probs.max()) < self.policy.fallback

    def accept(self, draft, q, p_logp, sampler):
        n = int(acc.rollback_accept(draft, p_logp, self.policy.rollback)[0])
        return n, _big_pick(p_logp, n, sampler)


POLICIES = {"big": BigOnly, "small": SmallOnly, "speculative": Speculative, "bild": BiLD}


def parse_policy(spec: str) -> Policy:
    """Parse "bild:fallback=0.6,rollback=5" or "speculative:draft=4,schedule=heuristic";
    a path ending in .json is a config file from `biglittle tune` (see biglittle.tune)."""
    if spec.strip().endswith(".json") and spec.partition(":")[0].strip() not in POLICIES:
        from ..tune import load_policy_config

        return load_policy_config(spec.strip())
    name, _, args = spec.partition(":")
    cls = POLICIES.get(name.strip())
    if cls is None:
        raise ConfigError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in known:
            raise ConfigError(f"policy {name!r} takes {', '.join(known) or 'no parameters'}; got {item!r}")
        kwargs[key] = _parse_value(value)
    return cls(**kwargs)


def _parse_value(text: str):
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("inf", "+inf", "infinity"):
        return math.inf
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


# Policies with a loop of their own live beside this package; they import this module, so they
# are registered last (`parse_policy("cascade:scorer=big-score,threshold=-1.5")`).
from ..cascade import Cascade  # noqa: E402
from ..contrastive import Contrastive  # noqa: E402
from ..router import Router  # noqa: E402

POLICIES.update(contrastive=Contrastive, cascade=Cascade, router=Router)
