"""`biglittle bench` and `biglittle sweep`: the benchmark harness on the command line."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..numbers import parse_floats
from .common import (BIG_DEVICE_HELP, DEVICE_HELP, SMALL_DEVICE_HELP, atomic_folder, err, load_pair, out as console,
                     user_errors)

DEFAULT_METHODS = "big,small,speculative:draft=4,speculative:draft=4,schedule=auto,bild,hf-assisted"


def bench_and_report(small: Optional[str], big: Optional[str], tasks: list[str], method_specs: list[str], n: int,
                     repeats: int, max_new_tokens: Optional[int], temperature: float, chat: bool, seed: int,
                     out: str, dtype: str, prompts: Optional[str] = None,
                     devices: tuple = ("auto", None, None)) -> None:
    """Run the methods on the tasks, print the summary table and write the report files."""
    from rich.markdown import Markdown

    from ..bench.methods import parse_method
    from ..bench.report import build_report, markdown, write_outputs
    from ..bench.runner import BASELINE, BenchConfig, run_bench
    from ..data import get_task
    from ..data.prompt_file import PromptFileTask
    from ..errors import ConfigError

    with user_errors():
        if BASELINE not in method_specs:
            method_specs = [BASELINE] + method_specs  # speedups are against big-only in the same run
        methods = [parse_method(s) for s in method_specs]
        task_objs = [PromptFileTask(prompts)] if prompts else [get_task(t) for t in tasks]
        tasks = [t.name for t in task_objs]
        if n < 1 or repeats < 1:
            raise ConfigError("--n and --repeats must be ≥ 1")
        needs_small = any(m.uses()[0] for m in methods)
        small_m, big_m = load_pair(small, big, needs_small, True, dtype, devices=devices)
        config = BenchConfig(small_m.spec if small_m else None, big_m.spec, tasks, method_specs, n=n, repeats=repeats,
                             max_new_tokens=max_new_tokens, temperature=temperature, chat=chat, seed=seed)
        rows, samples = run_bench(config, small_m, big_m, task_objs, methods)
    report = build_report(config, rows, samples)
    with atomic_folder(out) as tmp:
        paths = [Path(out) / p.name for p in write_outputs(report, tmp, {t.name: t for t in task_objs})]
    # on a terminal, rendered; elsewhere the markdown itself (whole lines that scripts can read)
    if console.is_terminal:
        console.print(Markdown(markdown(report)))
    else:
        print(markdown(report))
    err.print("wrote " + ", ".join(str(p) for p in paths))


def bench(
    tasks: str = typer.Option("code", help="Comma list of tasks: xsum, deen, mtbench, gsm, code, code-edit."),
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
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    small_device: Optional[str] = typer.Option(None, "--small-device", help=SMALL_DEVICE_HELP),
    big_device: Optional[str] = typer.Option(None, "--big-device", help=BIG_DEVICE_HELP),
    prompts: Optional[str] = typer.Option(None, "--prompts", help='Your own prompts instead of --tasks: a JSONL file '
                                          'of {"prompt": ...} or {"messages": [...]} lines, optionally with a '
                                          '"reference" (BLEU/ROUGE when every line has one, else agreement).'),
):
    """Benchmark methods on real tasks: speed against big-only in the same run, quality, and what each model did."""
    from ..bench.methods import split_specs

    bench_and_report(small, big, split_specs(tasks), split_specs(methods), n, repeats, max_new_tokens, temperature,
                     chat, seed, out, dtype, prompts, devices=(device, small_device, big_device))


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
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    small_device: Optional[str] = typer.Option(None, "--small-device", help=SMALL_DEVICE_HELP),
    big_device: Optional[str] = typer.Option(None, "--big-device", help=BIG_DEVICE_HELP),
):
    """Sweep BiLD's (fallback, rollback) grid and speculative draft lengths: a quality-vs-speedup Pareto plot."""
    with user_errors():
        grid = [parse_floats(fallbacks, "--fallbacks"), parse_floats(rollbacks, "--rollbacks"),
                parse_floats(drafts, "--drafts")]
    specs = ["big", "small"]
    specs += [f"bild:fallback={f:g},rollback={r:g}" for f in grid[0] for r in grid[1]]
    specs += [f"speculative:draft={int(d)}" for d in grid[2]]
    bench_and_report(small, big, [task], specs, n, repeats, max_new_tokens, 0.0, chat, 0, out, dtype,
                     devices=(device, small_device, big_device))
