"""Calibration and auto-tuning: measure a pair, pick the fastest policy at a quality floor.

    result = tune(small, big, prompts, min_agreement=0.99)
    result.best.spec           # e.g. "bild:fallback=0.5,rollback=3.0,max_small_steps=10"
    result.save("tune.json")   # generate --config, bench --methods tune.json, serve --policy tune.json

What it does, on sample prompts, greedy:
 1. measures the pair's per-call costs: a small step, a big step, and each extra position a
    big pass scores (a big call of k positions costs big_call_s + k·big_position_s);
 2. runs big-only (the reference), small-only, and every token-level candidate (speculative
    draft lengths, BiLD's fallback × rollback grid) through `generate`;
 3. evaluates cascades at thresholds between the observed scores, from the small-only and
    big-only runs (exact under greedy decoding: a cascade's answer IS one of the two);
 4. keeps the candidates that meet the quality floor and picks the one with the least
    estimated time: each candidate's counted calls and positions priced at the measured
    costs (robust to the noise of a shared machine; measured wall time is reported too).

Quality: agreement with the big model's greedy tokens (biglittle.data.agreement, averaged over
prompts) by default, or, for a task with references, the relative loss of its primary metric
against big-only (`max_metric_loss=0.01` is "at most 1% worse").
"""
from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .data import get_task
from .decoding.result import Stats
from .decoding.schedules import expected_speedup
from .decoding.session import TrackedSession
from .errors import ConfigError
from .generate import encode_prompt, generate
from .numbers import json_number
from .policies import BigOnly, BiLD, Policy, SmallOnly, Speculative
from .policies.cascade import answer_logps, reduce_logps
from .policies.registry import CONFIG_FORMAT, load_policy_config, read_config  # noqa: F401  (the file format lives with the registry)
from .tokens import agreement
DRAFTS = (1, 2, 3, 4, 5, 6, 7, 8)
FALLBACKS = (0.3, 0.5, 0.7, 0.9)
ROLLBACKS = (1.0, 2.0, 3.0, 5.0, math.inf)
CASCADE_SCORERS = (("small-confidence", "mean"), ("small-confidence", "min"), ("big-score", "mean"),
                   ("big-score", "min"))
MAX_THRESHOLDS = 8  # cascade thresholds tried per scorer (between observed scores, plus ±inf)


# ---------------------------------------------------------------- costs

@dataclass
class Costs:
    """Seconds per forward pass: a small call (one token), and a big call of k positions costing
    big_call_s + k · big_position_s (the fixed part dominates on a GPU, the per-position part on
    a compute-bound CPU backend)."""
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


# ---------------------------------------------------------------- candidates

@dataclass
class Candidate:
    """One policy measured on the sample prompts (sums over prompts; agreement is a mean)."""
    spec: str
    agreement: float = 0.0
    metric: float | None = None      # the task's primary metric, when quality is measured by it
    est_s: float = 0.0               # calls and positions priced at the measured costs
    wall_s: float = 0.0              # measured, for the record (noisy on a shared machine)
    new_tokens: int = 0
    small_calls: int = 0
    big_calls: int = 0
    big_positions: int = 0
    escalated: float | None = None   # cascades: fraction of prompts the big model answered
    speedup: float = 0.0             # big-only est_s / est_s
    meets_floor: bool = False


@dataclass
class _Run:
    """One generation on one prompt: what it wrote and what it cost."""
    tokens: list[int]
    text: str | None
    stats: Stats


def _candidate(spec: str, runs: list[_Run], refs: list[_Run], costs: Costs, quality) -> Candidate:

    c = Candidate(spec)
    for r in runs:
        c.est_s += costs.of(r.stats)
        c.wall_s += r.stats.wall_s
        c.new_tokens += len(r.tokens)
        c.small_calls += r.stats.small_calls
        c.big_calls += r.stats.big_calls
        c.big_positions += r.stats.big_positions
    c.agreement = statistics.mean(agreement(r.tokens, ref.tokens)["agreement"] for r, ref in zip(runs, refs))
    c.metric = quality([r.text or "" for r in runs])
    return c


def _thresholds(scores: Sequence[float]) -> list[float]:
    """Thresholds between consecutive distinct scores (each splits the prompts differently),
    at most MAX_THRESHOLDS of them, spread evenly."""
    s = sorted(set(x for x in scores if math.isfinite(x)))
    mids = [(a + b) / 2 for a, b in zip(s, s[1:])]
    if len(mids) > MAX_THRESHOLDS:
        step = (len(mids) - 1) / (MAX_THRESHOLDS - 1)
        mids = [mids[round(i * step)] for i in range(MAX_THRESHOLDS)]
    return mids


def _cascade_runs(small_runs, big_runs, scores, t, scoring: list[Stats] | None) -> tuple[list[_Run], float]:
    """What a cascade at threshold t does on each prompt, from the small-only and big-only runs
    (exact under greedy decoding): its answer, and its calls as stats."""
    runs, escalated = [], 0
    for i, (s, b) in enumerate(zip(small_runs, big_runs)):
        st = Stats(small_calls=s.stats.small_calls, small_s=s.stats.small_s, wall_s=s.stats.wall_s)
        if scoring is not None:  # big-score: one big pass over prompt + answer
            sc = scoring[i]
            st.big_calls, st.big_positions, st.big_s = sc.big_calls, sc.big_positions, sc.big_s
            st.wall_s += sc.big_s
        keep = scores[i] >= t
        if not keep:
            escalated += 1
            st.big_calls += b.stats.big_calls
            # after a scoring pass the big model has the prompt cached: it re-feeds only its last token
            st.big_positions += b.stats.big_positions - (b.stats.prompt_tokens - 1 if scoring is not None else 0)
            st.wall_s += b.stats.wall_s
        runs.append(_Run(s.tokens if keep else b.tokens, s.text if keep else b.text, st))
    return runs, escalated / len(runs)


@dataclass
class TuneResult:
    best: Candidate
    candidates: list[Candidate]
    costs: Costs
    quality: dict               # {"measure": "agreement", "floor": 0.99} or the metric form
    pair: dict                  # alpha, cost ratio, analytic best draft length
    settings: dict = field(default_factory=dict)

    def to_config(self, **meta) -> dict:
        """The config file's content: the chosen policy spec first, then how it was chosen."""
        return {"format": CONFIG_FORMAT, "policy": self.best.spec, **meta, "quality": self.quality,
                "chosen": asdict(self.best), "pair": self.pair, "costs": asdict(self.costs),
                "settings": self.settings, "candidates": [asdict(c) for c in self.candidates]}

    def save(self, path: str | Path, **meta) -> None:
        """Write the config file (meta: e.g. small=..., big=..., task=...)."""
        Path(path).write_text(json.dumps(self.to_config(**meta), indent=2, ensure_ascii=False) + "\n")


def grid(drafts: Sequence[int] = DRAFTS, fallbacks: Sequence[float] = FALLBACKS,
         rollbacks: Sequence[float] = ROLLBACKS) -> list[Policy]:
    """The token-level candidates: BiLD's fallback × rollback grid and speculative draft lengths."""

    return ([BiLD(fallback=float(f), rollback=float(r)) for f in fallbacks for r in rollbacks]
            + [Speculative(draft=int(d)) for d in drafts])


def tune(small, big, prompts: Sequence, *, min_agreement: float = 0.99, max_metric_loss: float | None = None,
         task=None, references: Sequence[str] | None = None, max_new_tokens: int = 64, chat: bool = False,
         policies: Sequence[Policy] | None = None, cascades: bool = True, include_small: bool = True,
         costs: Costs | None = None, rank_by: str = "estimate",
         progress: Callable[[str], None] | None = None) -> TuneResult:
    """Pick the fastest policy whose quality on `prompts` meets the floor (greedy decoding).

    prompts: strings, token-id lists, or (chat=True) message lists.
    min_agreement: floor on the mean agreement with big-only greedy tokens (the default measure).
    max_metric_loss: instead, a floor on `task`'s primary metric: at most this fraction worse
      than big-only (0.01 = 1%); needs `task` (a biglittle.data Task) and `references`.
    policies: the token-level candidates (default: `grid()`); cascades: also try cascades with
      every scorer at thresholds between the observed scores; include_small: try small-only.
    costs: per-call costs (default: measured on the first prompt with `measure_costs`).
    rank_by: "estimate" (calls priced at the costs; default) or "wall" (measured wall time).
    """

    say = progress or (lambda msg: None)
    if not prompts:
        raise ConfigError("tune needs at least one sample prompt")
    if rank_by not in ("estimate", "wall"):
        raise ConfigError(f"rank_by must be 'estimate' or 'wall', got {rank_by!r}")
    if max_metric_loss is None:
        if not 0 <= min_agreement <= 1:
            raise ConfigError(f"min_agreement must be in [0, 1], got {min_agreement!r}")
        quality_spec = {"measure": "agreement", "floor": min_agreement}
        quality = lambda texts: None  # noqa: E731
    else:
        if not 0 <= max_metric_loss <= 1:
            raise ConfigError(f"max_metric_loss must be a fraction in [0, 1], got {max_metric_loss!r}")
        if task is None or not task.primary_metric or references is None or len(references) != len(prompts):
            raise ConfigError("max_metric_loss needs a task with a metric and one reference per prompt; "
                              "use min_agreement for tasks without references")
        quality_spec = {"measure": task.primary_metric, "max_loss": max_metric_loss}
        refs_text = list(references)
        quality = lambda texts: task.metric([task.postprocess(t) for t in texts], refs_text)[task.primary_metric]  # noqa: E731
    ids = [encode_prompt(big, p, chat) for p in prompts]
    if costs is None:
        say("measuring per-call costs")
        costs = measure_costs(small, big, ids[0])

    def run_all(policy: Policy) -> list[_Run]:
        out = []
        for p in ids:
            r = generate(small if policy.uses_small else None, big if policy.uses_big else None, p,
                            policy=policy, max_new_tokens=max_new_tokens)
            out.append(_Run(r.token_ids, r.text, r.stats))
        return out

    say("big-only reference")
    big_runs = run_all(BigOnly())
    base = _candidate("big", big_runs, big_runs, costs, quality)
    say("small only")
    small_runs = run_all(SmallOnly())
    found = [_candidate("small", small_runs, big_runs, costs, quality)] if include_small else []
    if cascades:
        say("cascades: scoring the small answers")
        found += _cascades(small, big, ids, small_runs, big_runs, costs, quality)
    alpha = None
    for pol in (grid() if policies is None else policies):
        spec = pol.describe()
        say(spec)
        runs = run_all(pol)
        found.append(_candidate(spec, runs, big_runs, costs, quality))
        if isinstance(pol, Speculative) and pol.draft == 1 and pol.schedule == "constant":
            drafted = sum(r.stats.drafted for r in runs)
            alpha = sum(r.stats.accepted for r in runs) / drafted if drafted else None
    found.append(base)

    key = (lambda c: c.est_s) if rank_by == "estimate" else (lambda c: c.wall_s)
    for c in found:
        c.speedup = key(base) / key(c) if key(c) > 0 else math.inf
        if max_metric_loss is None:
            c.meets_floor = c.agreement >= min_agreement - 1e-12
        else:
            c.meets_floor = c.metric >= base.metric * (1 - max_metric_loss) - 1e-9
    best = min((c for c in found if c.meets_floor), key=key)  # big-only always qualifies
    pair = {"alpha": alpha, "cost_ratio": json_number(costs.ratio),
            "analytic_best_draft": None if alpha is None else
            max(range(1, 17), key=lambda g: expected_speedup(alpha, g, costs.ratio))}
    settings = {"prompts": len(ids), "max_new_tokens": max_new_tokens, "rank_by": rank_by, "chat": chat}
    return TuneResult(best, found, costs, quality_spec, pair, settings)


def _cascades(small, big, ids, small_runs, big_runs, costs, quality) -> list[Candidate]:
    """Cascade candidates for every scorer, at thresholds between the observed scores."""
    scores: dict[tuple[str, str], list[float]] = {}
    scoring: list[Stats] = []
    for p, s in zip(ids, small_runs):
        st = Stats()
        own = answer_logps(TrackedSession(small.session(), "small", Stats()), p, s.tokens)
        judged = answer_logps(TrackedSession(big.session(), "big", st), p, s.tokens)
        for reduce in ("mean", "min"):
            scores.setdefault(("small-confidence", reduce), []).append(reduce_logps(own, reduce))
            scores.setdefault(("big-score", reduce), []).append(reduce_logps(judged, reduce))
        scoring.append(st)  # what a big-score cascade pays on top of the small answer: this one pass
    found = []
    for scorer, reduce in CASCADE_SCORERS:
        vals = scores[(scorer, reduce)]
        for t in _thresholds(vals):
            runs, escalated = _cascade_runs(small_runs, big_runs, vals, t,
                                            scoring if scorer == "big-score" else None)
            c = _candidate(f"cascade:scorer={scorer},threshold={t:.6g},reduce={reduce}", runs, big_runs, costs,
                           quality)
            c.escalated = escalated
            found.append(c)
    return found


# ---------------------------------------------------------------- sample prompts

def task_prompts(name: str, n: int = 8, seed: int = 0, chat: bool = False):
    """(prompts, references, task) for a benchmark task of biglittle.data ("code", "xsum", ...).
    References are None for tasks without them (code, mtbench)."""

    task = get_task(name)
    examples = task.load(n, seed=seed)
    refs = [e.reference for e in examples]
    return [task.build_prompt(e, chat) for e in examples], (None if None in refs else refs), task


def read_jsonl(path: str | Path) -> list[dict]:
    """The objects of a JSONL file, one per line, each with a "prompt" (text or chat messages)."""
    items = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read {str(path)!r}: {e}") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            item["prompt"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"{path}:{i}: expected a JSON object with a \"prompt\" key") from None
        items.append(item)
    if not items:
        raise ConfigError(f"{path} holds no prompts")
    return items


def read_prompts(path: str | Path) -> list:
    """Prompts from a JSONL file of {"prompt": ...} lines."""
    return [item["prompt"] for item in read_jsonl(path)]
