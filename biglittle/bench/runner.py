"""The benchmark runner: every method on the same pair, backend and prompts, in one run.

Speed is always a ratio against the big model alone measured in the same run: a warm-up first,
then for each prompt every method in turn (round robin, so slow drifts of a shared machine hit
all methods alike), `repeats` times, keeping the median wall time per prompt.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..decoding.schedules import expected_speedup
from ..generate import check_pair, encode_prompt
from ..tokens import agreement
from .methods import Method, Output

BASELINE = "big"


@dataclass
class BenchConfig:
    small: str | None
    big: str
    tasks: list[str]
    methods: list[str]
    n: int = 20
    repeats: int = 1
    max_new_tokens: int | None = None   # None: each task's default
    temperature: float = 0.0
    chat: bool = True
    seed: int = 0
    warmup: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Sample:
    task: str
    method: str
    example_id: str
    token_ids: list[int]
    text: str | None
    wall_s: float                     # the median run's (the lower middle one for an even count)
    walls: list[float] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def run_methods(small, big, task, examples, methods: list[Method], config: BenchConfig,
                progress: Progress | None = None) -> list[Sample]:
    """Run every method on every example of one task; return one Sample per (example, method)."""
    max_new = config.max_new_tokens or task.max_new_tokens
    prompts = [encode_prompt(big, task.build_prompt(ex, config.chat), config.chat) for ex in examples]
    if config.warmup and prompts:
        for m in methods:  # first calls pay for allocations and lazy init: keep them out of the numbers
            m.run(small, big, prompts[0], min(8, max_new), config.temperature, config.seed)
    bar = progress.add_task(task.name, total=len(examples) * len(methods) * config.repeats) if progress else None
    samples = []
    for ex, ids in zip(examples, prompts):
        outs: dict[str, list[Output]] = {m.spec: [] for m in methods}
        for _ in range(config.repeats):
            for m in methods:
                outs[m.spec].append(m.run(small, big, ids, max_new, config.temperature, config.seed))
                if progress:
                    progress.advance(bar)
        for m in methods:
            runs = outs[m.spec]
            # wall time and statistics (prompt_s among them) both come from the median run, so
            # the decode phase (wall_s − prompt_s) is one run's, not two runs' mixed
            mid = sorted(runs, key=lambda o: o.wall_s)[(len(runs) - 1) // 2]
            samples.append(Sample(task.name, m.spec, str(ex.id), runs[0].token_ids, runs[0].text,
                                  mid.wall_s, [o.wall_s for o in runs], mid.stats))
    return samples


def summarize(task, examples, samples: list[Sample], method_specs: list[str]) -> list[dict]:
    """Per-method figures for one task, each against big-only from the same run."""
    by = {spec: [s for s in samples if s.method == spec] for spec in method_specs}
    base = by[BASELINE]
    base_time = sum(s.wall_s for s in base)
    refs = [getattr(ex, "reference", None) for ex in examples]
    # a task whose metric scores outputs alone (code-edit: does the code parse) is scored without references
    scored = (not getattr(task, "needs_references", True)
              or task.primary_metric is not None and all(r is not None for r in refs))
    base_quality = task.metric([s.text or "" for s in base], refs) if scored else {}
    rows = []
    for spec, group in by.items():
        tokens = sum(len(s.token_ids) for s in group)
        time_s = sum(s.wall_s for s in group)
        st = _sum_stats(group)
        quality = task.metric([s.text or "" for s in group], refs) if scored else {}
        row = {
            "task": task.name, "method": spec, "n": len(group), "new_tokens": tokens, "time_s": time_s,
            "tokens_per_s": tokens / time_s if time_s else None,
            "speedup": base_time / time_s if time_s else None,
            "speedup_median": statistics.median(b.wall_s / s.wall_s for b, s in zip(base, group)),
            "decode_speedup": _decode_speedup(base, group),
            "quality": quality,
            "quality_delta": {k: v - base_quality[k] for k, v in quality.items() if k in base_quality},
            "agreement": statistics.mean(agreement(s.token_ids, b.token_ids)["agreement"] for s, b in zip(group, base)),
            "exact_match": statistics.mean(s.token_ids == b.token_ids for s, b in zip(group, base)),
        }
        row.update(_loop_figures(st, tokens))
        row["efficiency"] = row["speedup"] / row["bound"] if row.get("bound") and row["speedup"] else None
        rows.append(row)
    return rows


def _decode_speedup(base: list[Sample], group: list[Sample]) -> float | None:
    """Big-only time / method time after each one's big model has read the prompt (the decode
    phase: on long prompts reading them is most of the time). prompt_s is the same work in every
    method of the loop, the big model reading the prompt alone (decoding/loop.py), so a method's
    drafting is all in its decode phase; None where a run has no such moment (a method without a
    big model, a policy with its own loop)."""
    def decode_time(samples):
        prompt = [s.stats.get("prompt_s") for s in samples]
        return None if None in prompt else sum(s.wall_s - p for s, p in zip(samples, prompt))
    b, m = decode_time(base), decode_time(group)
    return b / m if b and m else None


def _sum_stats(group: list[Sample]) -> dict:
    keys = ("big_calls", "small_calls", "drafted", "accepted", "rounds", "small_tokens", "big_tokens",
            "small_s", "big_s", "rollbacks", "fallbacks")
    if not all(k in s.stats for s in group for k in keys):
        return {}
    return {k: sum(s.stats[k] for s in group) for k in keys}


def _loop_figures(st: dict, tokens: int) -> dict:
    """What each model did, and the analytic speedup bound from the measured α and cost ratio c."""
    if not st or not tokens:
        return {k: None for k in ("accepted_per_big_call", "big_calls_per_token", "small_share", "big_share",
                                  "alpha", "c", "mean_draft", "bound")}
    alpha = st["accepted"] / st["drafted"] if st["drafted"] else None
    t_small = st["small_s"] / st["small_calls"] if st["small_calls"] else None
    t_big = st["big_s"] / st["big_calls"] if st["big_calls"] else None
    c = t_small / t_big if t_small is not None and t_big else None
    gamma = st["drafted"] / st["rounds"] if st["rounds"] else 0.0
    bound = expected_speedup(alpha, max(1, round(gamma)), c) if alpha is not None and c is not None else None
    return {
        "accepted_per_big_call": st["accepted"] / st["big_calls"] if st["big_calls"] else None,
        "big_calls_per_token": st["big_calls"] / tokens,
        "small_share": st["small_tokens"] / tokens,
        "big_share": st["big_tokens"] / tokens,
        "alpha": alpha, "c": c, "mean_draft": gamma, "bound": bound,
        "rollbacks": st["rollbacks"], "fallbacks": st["fallbacks"],
    }


def run_bench(config: BenchConfig, small, big, tasks: list, methods: list[Method],
              show_progress: bool = True) -> tuple[list[dict], list[Sample]]:
    """Run all tasks; return (per task-and-method rows, all samples)."""
    if BASELINE not in [m.spec for m in methods]:
        raise ValueError("the methods must include 'big': every speedup is measured against it")
    if any(m.uses()[0] for m in methods):
        check_pair(small, big, who="the benchmark's methods")
    rows, samples = [], []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        for task in tasks:
            examples = task.load(config.n, seed=config.seed)
            task_samples = run_methods(small, big, task, examples, methods, config, progress)
            rows += summarize(task, examples, task_samples, [m.spec for m in methods])
            samples += task_samples
    return rows, samples
