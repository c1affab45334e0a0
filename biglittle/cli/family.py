"""`biglittle router train` and `biglittle tune`: the query-level family on the command line."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Optional

import typer

from ..numbers import parse_floats
from ..signal_points import pause_point
from .common import atomic_file, check_utf8, err, load_pair, print_table, user_errors

router_app = typer.Typer(help="Prompt routers: decide from the prompt alone whether the small model will do.",
                         no_args_is_help=True, add_completion=False)


@router_app.command("train")
def router_train(
    data: str = typer.Option(..., help='JSONL, one {"prompt": ..., "label": "small"|"big"} per line. Lines '
                             'without a label are labelled by running both models: "small" when the small '
                             "model's greedy answer agrees with the big model's on ≥ --min-agreement of positions."),
    out: str = typer.Option("router.json", help="Where to write the router (JSON)."),
    small: Optional[str] = typer.Option(None, help="Small model spec (its prompt pass gives the features)."),
    big: Optional[str] = typer.Option(None, help="Big model spec (needed only to label unlabelled lines)."),
    chat: bool = typer.Option(False, "--chat/--no-chat", help="Wrap prompts in the chat template, as generate --chat."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Answer length when labelling by agreement."),
    min_agreement: float = typer.Option(0.9, help="Agreement with big-only at which the small answer counts as good."),
    l2: float = typer.Option(0.01, help="L2 penalty on the classifier's weights."),
    dtype: str = typer.Option("float32", help="Weights dtype for HF models."),
):
    """Train a prompt router (logistic regression on features of one small-model prompt pass)."""
    from ..generate import encode_prompt
    from ..policies.router import label_by_agreement, train_router
    from ..tune import read_jsonl

    with user_errors():
        check_utf8(data, "--data")
        items = read_jsonl(data)
        need_big = any("label" not in it for it in items)
        small_m, big_m = load_pair(small, big, True, need_big, dtype)
        lead = big_m or small_m
        prompts = [encode_prompt(lead, it["prompt"], chat) for it in items]
        labels, derived = [], 0
        for ids, it in zip(prompts, items):
            if "label" in it:
                labels.append(it["label"])
            else:
                labels.append(label_by_agreement(small_m, big_m, ids, max_new_tokens, min_agreement))
                derived += 1
        clf = train_router(small_m, prompts, labels, l2=l2)
        clf.info.update(data=data, labels_derived=derived, chat=chat,
                        **({"min_agreement": min_agreement, "max_new_tokens": max_new_tokens} if derived else {}))
        with atomic_file(out) as tmp:
            clf.save(tmp)
    i = clf.info
    err.print(f"trained on {i['examples']} prompts ({i['small']} small, {i['big']} big; {derived} labelled by "
              f"agreement) · training accuracy {i['train_accuracy']:.1%} · wrote {out}")
    err.print(f"[dim]use it: biglittle generate --config {out} …, bench --methods router:path={out}, "
              f"or bl.Router.load({out!r})[/]")


def tune(
    small: Optional[str] = typer.Option(None, help="Small model spec (default: the qwen-coder pair)."),
    big: Optional[str] = typer.Option(None, help="Big model spec (default: the qwen-coder pair)."),
    task: str = typer.Option("code", help="Sample prompts from this benchmark task (code, xsum, deen, mtbench, gsm)."),
    prompts: Optional[str] = typer.Option(None, help='JSONL of {"prompt": ...} lines to tune on instead of --task.'),
    n: Optional[int] = typer.Option(None, help="Sample prompts (from --task). Default: 32 for a task with a metric "
                                    "(it varies a lot from sentence to sentence), 16 otherwise."),
    seed: int = typer.Option(0, help="Which task examples are drawn."),
    min_agreement: float = typer.Option(0.99, help="Quality floor: mean agreement with big-only greedy tokens "
                                        "(the low end of its 95% bootstrap interval must reach it)."),
    max_metric_loss: Optional[float] = typer.Option(None, help="Quality floor instead: at most this fraction "
                                                    "worse than big-only on the task's metric (0.01 = 1%), at "
                                                    "the low end of the 95% bootstrap interval."),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens", help="Tokens generated per prompt and candidate."),
    drafts: str = typer.Option("1,2,3,4,5,6,7,8", help="Speculative draft lengths to try."),
    fallbacks: str = typer.Option("0.3,0.5,0.7,0.9", help="BiLD fallback thresholds to try."),
    rollbacks: str = typer.Option("1,2,3,5,inf", help="BiLD rollback thresholds to try."),
    lookup: bool = typer.Option(True, "--lookup/--no-lookup", help="Also try the prompt-lookup and hybrid drafters."),
    cascades: bool = typer.Option(True, "--cascades/--no-cascades", help="Also try cascades (thresholds "
                                  "between the observed scores)."),
    repeats: int = typer.Option(3, help="Timed rounds (median) of each candidate that meets the floor, "
                                "round-robin with big-only."),
    rank_by: str = typer.Option("wall", help="wall (measured speedup) or estimate (calls priced at measured costs)."),
    chat: bool = typer.Option(True, "--chat/--no-chat", help="Use the big model's chat template (as bench)."),
    out: str = typer.Option("biglittle-tune.json", help="Config file to write."),
    dtype: str = typer.Option("float32", help="Weights dtype for HF models."),
):
    """Pick the fastest policy shown to meet a quality floor on sample prompts, and write it to a config file.

    Speed is measured (wall time against big-only on the same prompts); quality is the difference
    to big-only with a 95% bootstrap interval over prompts. The file works with
    `generate --config FILE`, `bench --methods FILE` and `serve --policy FILE`."""
    from ..tune import LOOKUPS, grid, read_prompts, task_prompts
    from ..tune import tune as run_tune

    with user_errors():
        if prompts:
            check_utf8(prompts, "--prompts")
            sample, refs, task_obj, task_name = read_prompts(prompts), None, None, None
        else:
            sample, refs, task_obj = task_prompts(task, n, seed, chat)
            task_name = task
        policies = grid([int(d) for d in parse_floats(drafts, "--drafts")], parse_floats(fallbacks, "--fallbacks"),
                        parse_floats(rollbacks, "--rollbacks"), LOOKUPS if lookup else ())
        small_m, big_m = load_pair(small, big, True, True, dtype)
        with _tune_progress() as progress:
            result = run_tune(small_m, big_m, sample, min_agreement=min_agreement, max_metric_loss=max_metric_loss,
                              task=task_obj, references=refs, max_new_tokens=max_new_tokens, chat=chat,
                              policies=policies, cascades=cascades, rank_by=rank_by, repeats=repeats,
                              progress=progress)
        with atomic_file(out) as tmp:
            result.save(tmp, small=small_m.spec, big=big_m.spec, task=task_name, prompts_file=prompts)
    _print_tune(result, out)


def _interval(delta, ci) -> str:
    return "–" if delta is None else f"{delta:+.3g} [{ci[0]:+.3g}, {ci[1]:+.3g}]"


def _print_tune(result, out: str) -> None:
    """The floor-meeting candidates, fastest first, then the choice with its interval."""
    ok = sorted((c for c in result.candidates if c.meets_floor), key=lambda c: -c.speedup)
    metric = result.quality["measure"] if result.quality["measure"] != "agreement" else "metric"
    print_table(f"candidates meeting the floor ({result.quality}), fastest by wall time first",
                ["policy", "speedup", "est.", "agreement Δ [95% CI]", f"{metric} Δ [95% CI]", "wall s", "rounds"],
                [[c.spec, f"{c.speedup:.2f}×" + (" (composed)" if c.timing == "composed" else ""),
                  f"{c.est_speedup:.2f}×" if c.est_speedup is not None else
                  ("–" if c.est_error is None else f"off {c.est_error:+.0%}"),
                  _interval(c.agreement_delta, c.agreement_delta_ci), _interval(c.metric_delta, c.metric_delta_ci),
                  f"{c.wall_s:.3f}", str(c.rounds)] for c in ok[:12]])
    b, d = result.best, result.decision
    quality = f"agreement {b.agreement:.3f}" if b.metric_delta is None else \
        f"{metric} {b.metric:.2f}, Δ {_interval(b.metric_delta, b.metric_delta_ci)}"
    err.print(f"chosen: {b.spec} ({b.speedup:.2f}× big-only by wall time, {quality}) · "
              f"α={result.pair['alpha']} c={result.pair['cost_ratio']} · wrote {out}")
    err.print(("" if d["decided"] else "[yellow]not decided:[/] ") + d["note"])


@contextmanager
def _tune_progress():
    """A progress bar over candidates × prompts × rounds, on stderr; yields the callback tune takes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    def paused(report):
        def after_run(done: int, total: int, what: str) -> None:
            report(done, total, what)
            pause_point("tune-run")  # tests: a signal between two measured runs
        return after_run

    if not err.is_terminal:  # a log or a pipe: a plain line every half minute instead of an invisible bar
        yield paused(_progress_lines(time.monotonic(), 30.0))
        return
    with Progress(TextColumn("tuning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), TextColumn("{task.description}"), console=err, transient=True) as p:
        job = p.add_task("measuring per-call costs", total=None)
        yield paused(lambda done, total, what: p.update(job, completed=done, total=total, description=what))


def _progress_lines(start: float, every_s: float):
    """tune's progress callback for a non-terminal stderr: 'tuning: done/total runs, elapsed, what'."""
    last = [start]

    def report(done: int, total: int, what: str) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s or done == total:
            last[0] = now
            err.print(f"tuning: {done}/{total} runs, {now - start:.0f} s, {what}", soft_wrap=True)
    return report
