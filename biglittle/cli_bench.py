"""`biglittle bench` and `biglittle sweep`: the benchmark harness on the command line."""
from __future__ import annotations

import math
from typing import Optional

import typer


DEFAULT_METHODS = "big,small,speculative:draft=4,speculative:draft=4,schedule=auto,bild,hf-assisted"


def _floats(text: str) -> list[float]:
    return [math.inf if v.strip().lower() == "inf" else float(v) for v in text.split(",") if v.strip()]


def _run(small: Optional[str], big: Optional[str], tasks: list[str], method_specs: list[str], n: int,
         repeats: int, max_new_tokens: Optional[int], temperature: float, chat: bool, seed: int, out: str,
         dtype: str) -> None:
    import biglittle as bl
    from .bench.methods import parse_method
    from .cli import err, fail, load_pair
    from .bench.report import build_report, write_outputs
    from .bench.runner import BASELINE, BenchConfig, run_bench
    from .data import get_task

    try:
        if BASELINE not in method_specs:
            method_specs = [BASELINE] + method_specs  # speedups are against big-only in the same run
        methods = [parse_method(s) for s in method_specs]
        task_objs = [get_task(t) for t in tasks]
        if n < 1 or repeats < 1:
            raise bl.ConfigError("--n and --repeats must be ≥ 1")
        needs_small = any(m.uses()[0] for m in methods)
        small_m, big_m = load_pair(small, big, bl.Speculative() if needs_small else bl.BigOnly(), dtype)
        config = BenchConfig(small_m.spec if small_m else None, big_m.spec, tasks, method_specs, n=n, repeats=repeats, max_new_tokens=max_new_tokens,
                             temperature=temperature, chat=chat, seed=seed)
        rows, samples = run_bench(config, small_m, big_m, task_objs, methods)
    except (bl.BigLittleError, ValueError) as e:
        fail(str(e))
    report = build_report(config, rows, samples)
    paths = write_outputs(report, out, {t.name: t for t in task_objs})
    from rich.markdown import Markdown

    from .cli import out as console
    from .bench.report import markdown

    console.print(Markdown(markdown(report)))
    err.print("wrote " + ", ".join(str(p) for p in paths))


def bench(
    tasks: str = typer.Option("code", help="Comma list of tasks: xsum, deen, mtbench, gsm, code."),
    methods: str = typer.Option(DEFAULT_METHODS, help="Comma list of method specs, e.g. "
                                "big,small,speculative:draft=4,bild:fallback=0.6,rollback=5,hf-assisted. "
                                "'big' is always run: speedups are against it."),
    small: Optional[str] = typer.Option(None, help="Small model spec (default: the qwen-coder pair)."),
    big: Optional[str] = typer.Option(None, help="Big model spec (default: the qwen-coder pair)."),
    n: int = typer.Option(20, help="Prompts per task."),
    repeats: int = typer.Option(1, help="Runs per prompt and method; the median wall time is kept."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Default: each task's own."),
    temperature: float = typer.Option(0.0, help="0 = greedy (the default for benchmarks)."),
    chat: bool = typer.Option(True, "--chat/--no-chat", help="Use the big model's chat template for prompts."),
    seed: int = typer.Option(0, help="Which examples are drawn, and the sampling seed."),
    out: str = typer.Option("bench-out", help="Folder for bench.json, summary.md and the plots."),
    dtype: str = typer.Option("float32", help="Weights dtype for HF models."),
):
    """Benchmark methods on real tasks: speed against big-only in the same run, quality, and what each model did."""
    from .bench.methods import split_specs

    _run(small, big, split_specs(tasks), split_specs(methods), n, repeats, max_new_tokens, temperature, chat,
         seed, out, dtype)


def sweep(
    task: str = typer.Option("code", help="The task to sweep on."),
    fallbacks: str = typer.Option("0.3,0.5,0.7,0.9", help="BiLD fallback thresholds."),
    rollbacks: str = typer.Option("1,2,3,5,inf", help="BiLD rollback thresholds."),
    drafts: str = typer.Option("1,2,4,8", help="Speculative draft lengths."),
    small: Optional[str] = typer.Option(None, help="Small model spec (default: the qwen-coder pair)."),
    big: Optional[str] = typer.Option(None, help="Big model spec (default: the qwen-coder pair)."),
    n: int = typer.Option(10, help="Prompts."),
    repeats: int = typer.Option(1, help="Runs per prompt and method."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="Default: the task's own."),
    chat: bool = typer.Option(True, "--chat/--no-chat", help="Use the big model's chat template."),
    out: str = typer.Option("sweep-out", help="Folder for bench.json, summary.md and the Pareto plot."),
    dtype: str = typer.Option("float32", help="Weights dtype for HF models."),
):
    """Sweep BiLD's (fallback, rollback) grid and speculative draft lengths: a quality-vs-speedup Pareto plot."""
    specs = ["big", "small"]
    specs += [f"bild:fallback={f:g},rollback={r:g}" for f in _floats(fallbacks) for r in _floats(rollbacks)]
    specs += [f"speculative:draft={int(d)}" for d in _floats(drafts)]
    _run(small, big, [task], specs, n, repeats, max_new_tokens, 0.0, chat, 0, out, dtype)
