"""tune(): the search itself (the package docstring says what it does), and its result, TuneResult."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..decoding.schedules import expected_speedup
from ..errors import ConfigError
from ..generate import encode_prompt
from ..numbers import json_number
from ..policies import BigOnly, Policy, SmallOnly, Speculative
from ..policies.registry import CONFIG_FORMAT, parse_policy
from .bootstrap import CONFIDENCE, RESAMPLES
from .candidates import Candidate, PromptRun, counted, grid
from .cascades import compose_cascades
from .costs import Costs, measure_costs
from .quality import Judge, apply_floor
from .timing import Clock, Ticker

EST_TOLERANCE = 0.15   # an estimate further than this from the measured speedup is not reported as one
PRUNE = 0.5            # not timed again: floor-meeting candidates under this share of the best first round


@dataclass
class TuneResult:
    best: Candidate
    candidates: list[Candidate]
    costs: Costs
    quality: dict               # {"measure": "agreement", "floor": 0.99} or the metric form
    pair: dict                  # alpha, cost ratio, analytic best draft length
    settings: dict = field(default_factory=dict)
    decision: dict = field(default_factory=dict)  # {"decided", "note", "prompts_needed"}

    def to_config(self, **meta) -> dict:
        """The config file's content: the chosen policy spec first, then how it was chosen."""
        return {"format": CONFIG_FORMAT, "policy": self.best.spec, **meta, "quality": self.quality,
                "chosen": _strict(asdict(self.best)), "decision": self.decision, "pair": self.pair,
                "costs": asdict(self.costs), "settings": self.settings,
                "candidates": [_strict(asdict(c)) for c in self.candidates]}

    def save(self, path: str | Path, **meta) -> None:
        """Write the config file (meta: e.g. small=..., big=..., task=...)."""
        Path(path).write_text(json.dumps(self.to_config(**meta), indent=2, ensure_ascii=False) + "\n")


def _strict(d: dict) -> dict:
    """Infinite speedups (a zero time) as json_number writes them, so the file is strict JSON."""
    return {k: json_number(v) if isinstance(v, float) else v for k, v in d.items()}


def tune(small, big, prompts: Sequence, *, min_agreement: float = 0.99, max_metric_loss: float | None = None,
         task=None, references: Sequence[str] | None = None, max_new_tokens: int = 64, chat: bool = False,
         policies: Sequence[Policy] | None = None, cascades: bool = True, include_small: bool = True,
         costs: Costs | None = None, rank_by: str = "wall", repeats: int = 3, confidence: float = CONFIDENCE,
         resamples: int = RESAMPLES, seed: int = 0,
         progress: Callable[[int, int, str], None] | None = None) -> TuneResult:
    """Pick the fastest policy whose quality on `prompts` is shown to meet the floor (greedy).

    prompts: strings, token-id lists, or (chat=True) message lists.
    min_agreement: floor on the mean agreement with big-only greedy tokens (the default measure):
      the low end of its bootstrap interval must reach it.
    max_metric_loss: instead, a floor on `task`'s primary metric: the low end of the interval of
      (candidate − big-only) must be ≥ −max_metric_loss × big-only's score (0.01 = 1% worse);
      needs `task` (a biglittle.data Task) and `references`. With references and an agreement
      floor, the metric and its interval are reported too.
    policies: the token-level candidates (default: `grid()`); cascades: also try cascades with
      every scorer at thresholds between the observed scores; include_small: try small-only.
    costs: per-call costs for the estimate (default: measured on the first prompt).
    rank_by: "wall" (measured speedup; default) or "estimate" (the priced calls: reproducible).
    repeats: timed rounds of each candidate that meets the floor (median); confidence, resamples,
      seed: the bootstrap's.
    progress: called as progress(done, total, what) after every run (total grows once the
      candidates to time again are known).
    """
    n = len(prompts)
    quality_spec = _check(n, min_agreement, max_metric_loss, task, references, rank_by, repeats)
    if max_metric_loss is None and (task is None or not task.primary_metric):
        references = None  # nothing to score with
    ids = [encode_prompt(big, p, chat) for p in prompts]
    token_level = {p.describe(): p for p in (grid() if policies is None else policies)}
    first = {"big": BigOnly(), **({"small": SmallOnly()} if include_small or cascades else {}), **token_level}
    ticker = Ticker(progress, len(first) * (n + 1) + (n if cascades else 0))
    if costs is None:
        costs = measure_costs(small, big, ids[0])
    clock = Clock(small, big, ids, max_new_tokens, ticker.tick)
    clock.warm_up(first)
    runs = clock.round(first)
    composed = compose_cascades(small, big, ids, runs["small"], runs["big"], ticker.tick) if cascades else {}
    for spec, (c_runs, _) in composed.items():
        runs[spec] = c_runs
        clock.walls[spec] = {0: sum(r.wall_s for r in c_runs)}
    found = {spec: counted(spec, rs, costs) for spec, rs in runs.items() if spec != "small" or include_small}
    judge = Judge(runs["big"], task, references, confidence, resamples, seed)
    floor = min_agreement if max_metric_loss is None else -max_metric_loss * judge.base_metric[0]
    for spec, c in found.items():
        judge.judge(c, runs[spec])
        if spec in composed:
            c.escalated, c.timing = composed[spec][1], "composed"
        apply_floor(c, floor, max_metric_loss is None, n)
    _time_again(clock, found, composed, token_level, repeats, ticker)

    base = found["big"]
    key = (lambda c: c.speedup) if rank_by == "wall" else (lambda c: base.est_s / c.est_s if c.est_s else math.inf)
    eligible = [c for c in found.values() if c.meets_floor and c.timing == "measured"]  # big-only always is
    best = max(eligible, key=key)
    settings = {"prompts": n, "max_new_tokens": max_new_tokens, "rank_by": rank_by, "chat": chat,
                "repeats": repeats, "confidence": confidence, "resamples": resamples, "seed": seed,
                "timing": "wall time, round-robin with big-only after a warm-up; speedup = median over rounds "
                          "of big-only's time / the candidate's in the same round; cascades are composed from "
                          "the measured parts they run, and the fastest per scorer meeting the floor is run "
                          "for real"}
    ordered = [c for s, c in found.items() if s != "big"] + [base]
    return TuneResult(best, ordered, costs, quality_spec, _pair(token_level, runs, costs), settings,
                      _decision(best, ordered, key, n, confidence))


def _time_again(clock: Clock, found: dict[str, Candidate], composed: dict, token_level: dict[str, Policy],
                repeats: int, ticker: Ticker) -> None:
    """Time what can still win to `repeats` rounds in all (cascades chosen to run for real: from
    scratch), round-robin with big-only; then every candidate's speed and estimate."""
    again = _finalists(found, clock, composed)
    extra = {spec: (repeats if spec in composed else repeats - 1) for spec in again}
    plan = [{"big": BigOnly(), **{s: _policy(s, token_level) for s, m in extra.items() if m > k}}
            for k in range(max(extra.values(), default=0))]
    real = {s: parse_policy(s) for s in again if s in composed}
    ticker.total += len(real) + len(clock.ids) * sum(len(entries) for entries in plan)
    clock.warm_up(real)
    for s in real:
        clock.walls[s], found[s].timing = {}, "measured"
    for entries in plan:
        clock.round(entries)
    for spec, c in found.items():
        c.wall_s, c.speedup, c.rounds = clock.speed(spec)
        _estimate(c, found["big"])


def _check(n, min_agreement, max_metric_loss, task, references, rank_by, repeats) -> dict:
    """The settings make sense; returns the quality spec for the file."""
    if not n:
        raise ConfigError("tune needs at least one sample prompt")
    if rank_by not in ("estimate", "wall"):
        raise ConfigError(f"rank_by must be 'estimate' or 'wall', got {rank_by!r}")
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ConfigError(f"repeats must be an integer ≥ 1, got {repeats!r}")
    if references is not None and len(references) != n:
        raise ConfigError(f"{len(references)} references for {n} prompts: give one reference per prompt")
    if max_metric_loss is None:
        if not 0 <= min_agreement <= 1:
            raise ConfigError(f"min_agreement must be in [0, 1], got {min_agreement!r}")
        return {"measure": "agreement", "floor": min_agreement}
    if not 0 <= max_metric_loss <= 1:
        raise ConfigError(f"max_metric_loss must be a fraction in [0, 1], got {max_metric_loss!r}")
    if task is None or not task.primary_metric or references is None:
        raise ConfigError("max_metric_loss needs a task with a metric and one reference per prompt; "
                          "use min_agreement for tasks without references")
    return {"measure": task.primary_metric, "max_loss": max_metric_loss}


def _finalists(found: dict[str, Candidate], clock: Clock, composed: dict) -> list[str]:
    """Floor-meeting candidates to time again: those within PRUNE of the best first-round speedup
    (a second look will not move one twice as slow to first), and of the cascades only the fastest
    per scorer (its siblings differ only in threshold, and the file names one policy)."""
    first = {s: clock.speed(s)[1] for s, c in found.items() if c.meets_floor}
    bar = PRUNE * max(first.values())
    fastest: dict[str, str] = {}
    for s in (s for s in first if s in composed):
        scorer = s.split(",threshold=")[0] + s.split(",reduce=")[1]
        if scorer not in fastest or first[s] > first[fastest[scorer]]:
            fastest[scorer] = s
    return [s for s, v in first.items() if s != "big" and v >= bar and (s not in composed or s in fastest.values())]


def _policy(spec: str, token_level: dict[str, Policy]) -> Policy:
    """The policy behind a candidate's spec (token-level ones as given: they need not parse)."""
    if spec in token_level:
        return token_level[spec]
    return SmallOnly() if spec == "small" else parse_policy(spec)


def _estimate(c: Candidate, base: Candidate) -> None:
    """The priced estimate beside the clock: reported only where it is within EST_TOLERANCE."""
    est = base.est_s / c.est_s if c.est_s > 0 else math.inf
    if not (math.isfinite(est) and math.isfinite(c.speedup) and c.speedup > 0):
        return
    c.est_error = est / c.speedup - 1
    c.est_speedup = est if abs(c.est_error) <= EST_TOLERANCE else None


def _alpha(token_level: dict[str, Policy], runs: dict[str, list[PromptRun]]) -> float | None:
    """α: the acceptance rate of single-token model drafts, from the draft=1 constant candidate."""
    for spec, pol in token_level.items():
        if isinstance(pol, Speculative) and pol.draft == 1 and pol.schedule == "constant" and pol.drafter == "model":
            drafted = sum(r.stats.drafted for r in runs[spec])
            return sum(r.stats.accepted for r in runs[spec]) / drafted if drafted else None
    return None


def _pair(token_level: dict[str, Policy], runs: dict[str, list[PromptRun]], costs: Costs) -> dict:
    """α, the cost ratio c, and the draft length the analytic model would pick from them."""
    alpha = _alpha(token_level, runs)
    return {"alpha": alpha, "cost_ratio": json_number(costs.ratio),
            "analytic_best_draft": None if alpha is None else
            max(range(1, 17), key=lambda g: expected_speedup(alpha, g, costs.ratio))}


def _decision(best: Candidate, candidates: list[Candidate], key, n: int, confidence: float) -> dict:
    """Whether these prompts decide: faster candidates whose point estimate meets the floor but
    whose interval does not leave the choice open, and how many prompts would settle it."""
    open_ = sorted((c for c in candidates if c.prompts_needed and key(c) > key(best)), key=key, reverse=True)
    if not open_:
        return {"decided": True, "note": f"{best.spec} is the fastest candidate shown to meet the floor on {n} prompts",
                "prompts_needed": None}
    c = open_[0]
    who = "no candidate but big-only" if best.spec == "big" else f"nothing faster than {best.spec}"
    return {"decided": False, "prompts_needed": c.prompts_needed,
            "note": f"{who} can be shown to meet the floor on {n} prompts: {c.spec} ({key(c):.2f}×) meets it "
                    f"on these prompts but not with {confidence:.0%} confidence; about {c.prompts_needed} prompts "
                    "would decide"}
