"""Calibration and auto-tuning: pick the fastest policy whose quality on sample prompts is shown
to meet a floor.

    result = tune(small, big, prompts, min_agreement=0.99)
    result.best.spec           # e.g. "speculative:draft=16,schedule=auto,...,drafter=lookup,ngram=3"
    result.save("tune.json")   # generate --config, bench --methods tune.json, serve --policy tune.json

What it does, greedy, on the sample prompts:
 1. runs big-only (the reference), small-only and every token-level candidate (speculative draft
    lengths, the prompt-lookup and hybrid drafters, BiLD's fallback × rollback grid) after a
    warm-up, round-robin: prompt by prompt, each candidate in turn (the order rotates);
 2. evaluates cascades at thresholds between the observed scores from the small-only and
    big-only runs (exact under greedy decoding: a cascade's answer IS one of the two), timed as
    the sum of what they run (the small answer, the big scoring pass, the big answer when
    escalated); the fastest cascade per scorer that meets the floor is then run for real;
 3. quality: each candidate's difference to big-only with a 95% paired percentile bootstrap
    interval over prompts; a candidate meets the floor only when the interval's low end does
    (a few lucky prompts cannot pass it);
 4. speed: the candidates meeting the floor run `repeats` rounds in all (those under half the
    best first-round speedup are not timed again: they cannot win). `speedup` is the median over
    rounds of big-only's wall time over the candidate's in the same round. The fastest measured
    candidate meeting the floor is chosen; big-only always meets it. An estimate (counted calls
    priced at measured per-call costs) stays beside it as `est_speedup` only where it is within
    15% of the measured speedup; `est_error` says how far off it is everywhere.

Quality: agreement with the big model's greedy tokens (biglittle.tokens.agreement, averaged over
prompts) by default, or, for a task with references, the task's primary metric: at most
`max_metric_loss` (a fraction of big-only's score) worse than big-only.
"""
from __future__ import annotations

import json
import math
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .data import get_task
from .decoding.result import Stats
from .decoding.schedules import expected_speedup
from .decoding.session import TrackedSession
from .errors import ConfigError
from .generate import encode_prompt, generate
from .numbers import json_number
from .policies import BigOnly, BiLD, Policy, SmallOnly, Speculative
from .policies.cascade import answer_logps, reduce_logps
from .policies.registry import parse_policy
from .policies.registry import CONFIG_FORMAT, load_policy_config, read_config  # noqa: F401  (the file format lives with the registry)
from .tokens import agreement

DRAFTS = (1, 2, 3, 4, 5, 6, 7, 8)
FALLBACKS = (0.3, 0.5, 0.7, 0.9)
ROLLBACKS = (1.0, 2.0, 3.0, 5.0, math.inf)
# drafts copied from the prompt and the text so far: the schedule decides per round, or as many as match
LOOKUPS = (Speculative(drafter="lookup", schedule="auto", draft=16), Speculative(drafter="hybrid", schedule="auto"),
           Speculative(drafter="lookup", draft=16))
CASCADE_SCORERS = (("small-confidence", "mean"), ("small-confidence", "min"), ("big-score", "mean"),
                   ("big-score", "min"))
MAX_THRESHOLDS = 8     # cascade thresholds tried per scorer (between observed scores)
CONFIDENCE = 0.95      # of the bootstrap intervals
RESAMPLES = 2000       # bootstrap resamples of the prompts
EST_TOLERANCE = 0.15   # an estimate further than this from the measured speedup is not reported as one
PRUNE = 0.5            # not timed again: floor-meeting candidates under this share of the best first round


# ---------------------------------------------------------------- costs (for the estimate)

@dataclass
class Costs:
    """Seconds per forward pass: a small call (one token), and a big call of k positions costing
    big_call_s + k · big_position_s. A straight line: on a CPU a block of k costs far less than
    k single tokens and the curve bends (shared/DESIGN.md §7), which is why tune ranks by the
    clock and keeps this estimate only where it agrees with it."""
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


# ---------------------------------------------------------------- bootstrap over prompts

def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """Row r: the prompt indices of resample r, n drawn with replacement
    (`numpy.random.default_rng(seed).integers(0, n, size=(resamples, n))`)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def percentile_interval(values, confidence: float = CONFIDENCE) -> list[float]:
    """[low, high]: the central `confidence` share of the resampled values (percentile method)."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(np.asarray(values, dtype=float), [tail, 100 - tail])
    return [float(low), float(high)]


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n: int, *, resamples: int = RESAMPLES,
                       confidence: float = CONFIDENCE, seed: int = 0) -> list[float]:
    """Percentile bootstrap interval of statistic(indices) over resamples of n prompts. A paired
    difference is a statistic that computes both sides on the same indices; the same seed draws
    the same resamples, so every candidate is compared with big-only on the same prompt sets."""
    return percentile_interval([statistic(ix) for ix in resample_indices(n, resamples, seed)], confidence)


def metric_on_prompts(task, outputs: Sequence[str], references: Sequence[str]) -> Callable[[np.ndarray], float]:
    """f(indices): `task`'s primary metric on the outputs of those prompts (a resample: repeats
    allowed). Corpus metrics are recomputed on the resample, not averaged: corpus BLEU from its
    per-sentence n-gram counts, a metric that is a mean over prompts from per-prompt scores,
    anything else by calling the metric on the resampled lists (slow, but right)."""
    outs, refs = [task.postprocess(o) for o in outputs], list(references)

    def score(idx) -> float:
        return float(task.metric([outs[i] for i in idx], [refs[i] for i in idx])[task.primary_metric])

    checks = [np.arange(len(outs)), np.arange((len(outs) + 1) // 2)]  # the whole set and its first half

    def agrees(fast) -> bool:
        return all(math.isclose(fast(ix), score(ix), rel_tol=1e-9, abs_tol=1e-9) for ix in checks)

    if task.primary_metric == "bleu":
        counts = _bleu_counts(outs, refs)
        fast = lambda ix: _bleu_from_counts(counts[ix].sum(axis=0))  # noqa: E731
        if counts is not None and agrees(fast):
            return fast
    per_prompt = np.array([score([i]) for i in range(len(outs))])
    fast = lambda ix: float(per_prompt[ix].mean())  # noqa: E731
    return fast if agrees(fast) else score


def _bleu_counts(outs: Sequence[str], refs: Sequence[str]) -> np.ndarray | None:
    """Per sentence: sacrebleu's matched and total n-gram counts (n = 1..4), output and reference
    lengths, which sum to the corpus statistics. None without sacrebleu."""
    try:
        from sacrebleu.metrics import BLEU
    except ImportError:
        return None
    bleu = BLEU(effective_order=True)  # only the counts are used; this silences the sentence-level warning
    rows = []
    for o, r in zip(outs, refs):
        s = bleu.sentence_score(o, [r])
        rows.append([*s.counts, *s.totals, s.sys_len, s.ref_len])
    return np.array(rows, dtype=np.int64)


def _bleu_from_counts(total: np.ndarray) -> float:
    from sacrebleu.metrics import BLEU

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(BLEU.compute_bleu([int(x) for x in total[:4]], [int(x) for x in total[4:8]], int(total[8]),
                                       int(total[9]), smooth_method="exp").score)  # corpus_bleu's default


# ---------------------------------------------------------------- candidates

@dataclass
class Candidate:
    """One policy on the sample prompts. Deltas are to big-only on the same prompts, with 95%
    paired bootstrap intervals over prompts; times are totals over the prompts."""
    spec: str
    agreement: float = 0.0                   # mean over prompts of agreement with big-only's tokens
    agreement_delta: float = 0.0             # agreement − big-only's (1)
    agreement_delta_ci: list[float] | None = None
    metric: float | None = None              # the task's primary metric, where the task has references
    metric_delta: float | None = None        # metric − big-only's
    metric_delta_ci: list[float] | None = None
    meets_floor: bool = False                # the interval's low end is within the floor
    prompts_needed: int | None = None        # where the point estimate meets the floor and the interval does not
    speedup: float = 0.0                     # median over rounds of big-only wall / this wall, same round
    wall_s: float = 0.0                      # median over rounds of the total over prompts
    rounds: int = 0                          # timed rounds
    timing: str = "measured"                 # or "composed": the sum of the measured parts it runs
    est_s: float = 0.0                       # counted calls and positions priced at the per-call costs
    est_speedup: float | None = None         # big-only est_s / est_s, only where within 15% of speedup
    est_error: float | None = None           # that estimate / speedup − 1
    new_tokens: int = 0
    small_calls: int = 0
    big_calls: int = 0
    big_positions: int = 0
    escalated: float | None = None           # cascades: fraction of prompts the big model answered


@dataclass
class _Run:
    """One generation on one prompt: what it wrote, what it counted, and its wall time."""
    tokens: list[int]
    text: str | None
    stats: Stats
    wall_s: float


def _counted(spec: str, runs: list[_Run], costs: Costs) -> Candidate:
    c = Candidate(spec)
    for r in runs:
        c.est_s += costs.of(r.stats)
        c.new_tokens += len(r.tokens)
        c.small_calls += r.stats.small_calls
        c.big_calls += r.stats.big_calls
        c.big_positions += r.stats.big_positions
    return c


class _Clock:
    """Runs policies on the prompts round-robin and keeps each one's total wall time per round."""

    def __init__(self, small, big, ids, max_new_tokens: int, tick: Callable[[str], None]):
        self.small, self.big, self.ids, self.max_new_tokens, self.tick = small, big, ids, max_new_tokens, tick
        self.walls: dict[str, dict[int, float]] = {}   # spec -> {round: seconds over all prompts}
        self.rounds = 0

    def run(self, policy: Policy, prompt_ids) -> _Run:
        t0 = time.perf_counter()
        r = generate(self.small if policy.uses_small else None, self.big if policy.uses_big else None, prompt_ids,
                     policy=policy, max_new_tokens=self.max_new_tokens)
        return _Run(r.token_ids, r.text, r.stats, time.perf_counter() - t0)

    def warm_up(self, entries: dict[str, Policy]) -> None:
        """One untimed run each (caches, lazy loads, auto schedules' first measurements)."""
        for spec, pol in entries.items():
            self.run(pol, self.ids[0])
            self.tick(f"warm-up · {spec}")

    def round(self, entries: dict[str, Policy]) -> dict[str, list[_Run]]:
        """Every prompt once with every entry; the order rotates so no policy always runs first."""
        k, self.rounds = self.rounds, self.rounds + 1
        order = list(entries.items())
        runs: dict[str, list[_Run]] = {spec: [] for spec in entries}
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


def _thresholds(scores: Sequence[float]) -> list[float]:
    """Thresholds between consecutive distinct scores (each splits the prompts differently),
    at most MAX_THRESHOLDS of them, spread evenly."""
    s = sorted(set(x for x in scores if math.isfinite(x)))
    mids = [(a + b) / 2 for a, b in zip(s, s[1:])]
    if len(mids) > MAX_THRESHOLDS:
        step = (len(mids) - 1) / (MAX_THRESHOLDS - 1)
        mids = [mids[round(i * step)] for i in range(MAX_THRESHOLDS)]
    return mids


def _cascade_runs(small_runs, big_runs, scores, t, scoring: list[_Run] | None) -> tuple[list[_Run], float]:
    """What a cascade at threshold t does on each prompt, from the small-only and big-only runs
    (exact under greedy decoding): its answer, its calls as stats, and its time as the sum of the
    measured parts it runs."""
    runs, escalated = [], 0
    for i, (s, b) in enumerate(zip(small_runs, big_runs)):
        st = Stats(small_calls=s.stats.small_calls, small_s=s.stats.small_s)
        wall = s.wall_s
        if scoring is not None:  # big-score: one big pass over prompt + answer
            sc = scoring[i].stats
            st.big_calls, st.big_positions, st.big_s = sc.big_calls, sc.big_positions, sc.big_s
            wall += scoring[i].wall_s
        keep = scores[i] >= t
        if not keep:
            escalated += 1
            st.big_calls += b.stats.big_calls
            # after a scoring pass the big model has the prompt cached: it re-feeds only its last token
            st.big_positions += b.stats.big_positions - (b.stats.prompt_tokens - 1 if scoring is not None else 0)
            wall += b.wall_s
        st.wall_s = wall
        runs.append(_Run(s.tokens if keep else b.tokens, s.text if keep else b.text, st, wall))
    return runs, escalated / len(runs)


def _cascades(small, big, ids, small_runs, big_runs, tick) -> dict[str, tuple[list[_Run], float]]:
    """Cascade candidates for every scorer at thresholds between the observed scores:
    spec -> (composed runs, fraction escalated)."""
    scores: dict[tuple[str, str], list[float]] = {}
    scoring: list[_Run] = []
    for p, s in zip(ids, small_runs):
        own = answer_logps(TrackedSession(small.session(), "small", Stats()), p, s.tokens)
        st, t0 = Stats(), time.perf_counter()
        judged = answer_logps(TrackedSession(big.session(), "big", st), p, s.tokens)
        scoring.append(_Run([], None, st, time.perf_counter() - t0))  # what big-score pays on top of the answer
        for reduce in ("mean", "min"):
            scores.setdefault(("small-confidence", reduce), []).append(reduce_logps(own, reduce))
            scores.setdefault(("big-score", reduce), []).append(reduce_logps(judged, reduce))
        tick("scoring the small answers")
    found = {}
    for scorer, reduce in CASCADE_SCORERS:
        vals = scores[(scorer, reduce)]
        for t in _thresholds(vals):
            found[f"cascade:scorer={scorer},threshold={t:.6g},reduce={reduce}"] = _cascade_runs(
                small_runs, big_runs, vals, t, scoring if scorer == "big-score" else None)
    return found


# ---------------------------------------------------------------- quality floor

class _Judge:
    """Quality of a candidate's runs against big-only's, with paired bootstrap intervals."""

    def __init__(self, big_runs: list[_Run], task, references, confidence: float, resamples: int, seed: int):
        self.big_runs, self.task, self.refs, self.confidence = big_runs, task, references, confidence
        self.n = len(big_runs)
        self.index = resample_indices(self.n, resamples, seed)
        self.metric_values: dict[tuple, np.ndarray] = {}  # outputs -> metric on every resample
        self.base_metric = self._metric([r.text or "" for r in big_runs]) if self.has_metric else None

    @property
    def has_metric(self) -> bool:
        return self.task is not None and bool(self.task.primary_metric) and self.refs is not None

    def _metric(self, texts: list[str]) -> tuple[float, np.ndarray]:
        """(metric on all prompts, metric on every resample), once per distinct set of outputs."""
        key = tuple(texts)
        if key not in self.metric_values:
            f = metric_on_prompts(self.task, texts, self.refs)
            self.metric_values[key] = (f(np.arange(self.n)), np.array([f(ix) for ix in self.index]))
        return self.metric_values[key]

    def judge(self, c: Candidate, runs: list[_Run]) -> None:
        agree = np.array([agreement(r.tokens, b.tokens)["agreement"] for r, b in zip(runs, self.big_runs)])
        c.agreement = float(agree.mean())
        c.agreement_delta = c.agreement - 1.0
        c.agreement_delta_ci = percentile_interval(agree[self.index].mean(axis=1) - 1.0, self.confidence)
        if self.has_metric:
            (base, base_b), (mine, mine_b) = self.base_metric, self._metric([r.text or "" for r in runs])
            c.metric, c.metric_delta = mine, mine - base
            c.metric_delta_ci = percentile_interval(mine_b - base_b, self.confidence)


def _apply_floor(c: Candidate, floor: float, on_agreement: bool, n: int) -> None:
    """Meets the floor when the interval's low end does (mean agreement, or the metric's difference
    to big-only). Where only the point estimate does, the prompts a decision would need: the
    interval narrows as 1/√n, so its lower half-width h reaches the margin m = point − floor at
    about n·(h/m)² prompts."""
    if on_agreement:
        point, low = c.agreement, c.agreement_delta_ci[0] + 1.0
    else:
        point, low = c.metric_delta, c.metric_delta_ci[0]
    c.meets_floor = low >= floor - 1e-9
    margin, half = point - floor, point - low
    if not c.meets_floor and margin > 1e-9:
        c.prompts_needed = math.ceil(n * (half / margin) ** 2)


# ---------------------------------------------------------------- result

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


def grid(drafts: Sequence[int] = DRAFTS, fallbacks: Sequence[float] = FALLBACKS,
         rollbacks: Sequence[float] = ROLLBACKS, lookups: Sequence[Policy] = LOOKUPS) -> list[Policy]:
    """The token-level candidates: BiLD's fallback × rollback grid, speculative draft lengths and
    the prompt-lookup / hybrid drafters."""
    return ([BiLD(fallback=float(f), rollback=float(r)) for f in fallbacks for r in rollbacks]
            + [Speculative(draft=int(d)) for d in drafts] + list(lookups))


def default_n(task) -> int:
    """Sample prompts by default: a metric scored per sentence (BLEU, ROUGE, accuracy) varies a lot
    from prompt to prompt, so its interval needs dozens; agreement needs fewer."""
    return 32 if task is not None and task.primary_metric else 16


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
    ticker = _Ticker(progress, len(first) * (n + 1) + (n if cascades else 0))
    if costs is None:
        costs = measure_costs(small, big, ids[0])
    clock = _Clock(small, big, ids, max_new_tokens, ticker.tick)
    clock.warm_up(first)
    runs = clock.round(first)
    composed = _cascades(small, big, ids, runs["small"], runs["big"], ticker.tick) if cascades else {}
    for spec, (c_runs, _) in composed.items():
        runs[spec] = c_runs
        clock.walls[spec] = {0: sum(r.wall_s for r in c_runs)}
    found = {spec: _counted(spec, rs, costs) for spec, rs in runs.items() if spec != "small" or include_small}
    judge = _Judge(runs["big"], task, references, confidence, resamples, seed)
    floor = min_agreement if max_metric_loss is None else -max_metric_loss * judge.base_metric[0]
    for spec, c in found.items():
        judge.judge(c, runs[spec])
        if spec in composed:
            c.escalated, c.timing = composed[spec][1], "composed"
        _apply_floor(c, floor, max_metric_loss is None, n)
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


class _Ticker:
    """Counts runs for the progress callback: progress(done, total, what)."""

    def __init__(self, progress: Callable[[int, int, str], None] | None, total: int):
        self.progress, self.done, self.total = progress, 0, total

    def tick(self, what: str) -> None:
        self.done += 1
        if self.progress:
            self.progress(self.done, self.total, what)


def _time_again(clock: _Clock, found: dict[str, Candidate], composed: dict, token_level: dict[str, Policy],
                repeats: int, ticker: _Ticker) -> None:
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


def _finalists(found: dict[str, Candidate], clock: _Clock, composed: dict) -> list[str]:
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


def _alpha(token_level: dict[str, Policy], runs: dict[str, list[_Run]]) -> float | None:
    """α: the acceptance rate of single-token model drafts, from the draft=1 constant candidate."""
    for spec, pol in token_level.items():
        if isinstance(pol, Speculative) and pol.draft == 1 and pol.schedule == "constant" and pol.drafter == "model":
            drafted = sum(r.stats.drafted for r in runs[spec])
            return sum(r.stats.accepted for r in runs[spec]) / drafted if drafted else None
    return None


def _pair(token_level: dict[str, Policy], runs: dict[str, list[_Run]], costs: Costs) -> dict:
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


# ---------------------------------------------------------------- sample prompts

def task_prompts(name: str, n: int | None = None, seed: int = 0, chat: bool = False):
    """(prompts, references, task) for a benchmark task of biglittle.data ("code", "xsum", ...).
    References are None for tasks without them (code, mtbench). n: default_n(task) when None."""

    task = get_task(name)
    examples = task.load(default_n(task) if n is None else n, seed=seed)
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
