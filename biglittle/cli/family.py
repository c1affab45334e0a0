"""`biglittle router train` and `biglittle tune`: the query-level family on the command line."""
from __future__ import annotations

from typing import Optional

import typer

from ..numbers import parse_floats
from .common import err, load_pair, out as console, user_errors

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
        clf.save(out)
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
    n: int = typer.Option(8, help="Sample prompts (from --task)."),
    seed: int = typer.Option(0, help="Which task examples are drawn."),
    min_agreement: float = typer.Option(0.99, help="Quality floor: mean agreement with big-only greedy tokens."),
    max_metric_loss: Optional[float] = typer.Option(None, help="Quality floor instead: at most this fraction "
                                                    "worse than big-only on the task's metric (0.01 = 1%)."),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens", help="Tokens generated per prompt and candidate."),
    drafts: str = typer.Option("1,2,3,4,5,6,7,8", help="Speculative draft lengths to try."),
    fallbacks: str = typer.Option("0.3,0.5,0.7,0.9", help="BiLD fallback thresholds to try."),
    rollbacks: str = typer.Option("1,2,3,5,inf", help="BiLD rollback thresholds to try."),
    cascades: bool = typer.Option(True, "--cascades/--no-cascades", help="Also try cascades (thresholds "
                                  "between the observed scores)."),
    rank_by: str = typer.Option("estimate", help="estimate (calls priced at measured costs) or wall."),
    chat: bool = typer.Option(True, "--chat/--no-chat", help="Use the big model's chat template (as bench)."),
    out: str = typer.Option("biglittle-tune.json", help="Config file to write."),
    dtype: str = typer.Option("float32", help="Weights dtype for HF models."),
):
    """Pick the fastest policy that meets a quality floor on sample prompts, and write it to a config file.

    The file works with `generate --config FILE`, `bench --methods FILE` and `serve --policy FILE`."""
    from rich.table import Table

    from ..tune import grid, read_prompts, task_prompts
    from ..tune import tune as run_tune

    with user_errors():
        if prompts:
            sample, refs, task_obj, task_name = read_prompts(prompts), None, None, None
        else:
            sample, refs, task_obj = task_prompts(task, n, seed, chat)
            task_name = task
        policies = grid([int(d) for d in parse_floats(drafts, "--drafts")], parse_floats(fallbacks, "--fallbacks"),
                        parse_floats(rollbacks, "--rollbacks"))
        small_m, big_m = load_pair(small, big, True, True, dtype)
        with err.status("tuning…") as status:
            result = run_tune(small_m, big_m, sample, min_agreement=min_agreement, max_metric_loss=max_metric_loss,
                              task=task_obj, references=refs, max_new_tokens=max_new_tokens, chat=chat,
                              policies=policies, cascades=cascades, rank_by=rank_by,
                              progress=lambda msg: status.update(f"tuning: {msg}"))
        result.save(out, small=small_m.spec, big=big_m.spec, task=task_name, prompts_file=prompts)

    table = Table(title=f"candidates meeting the floor ({result.quality}), fastest first")
    for col in ("policy", "speedup", "agreement", "big calls", "est. s", "wall s"):
        table.add_column(col)
    ok = sorted((c for c in result.candidates if c.meets_floor), key=lambda c: -c.speedup)
    for c in ok[:10]:
        table.add_row(c.spec, f"{c.speedup:.2f}×", f"{c.agreement:.3f}", str(c.big_calls), f"{c.est_s:.3f}",
                      f"{c.wall_s:.3f}")
    console.print(table)
    b = result.best
    err.print(f"chosen: {b.spec} ({b.speedup:.2f}× big-only, agreement {b.agreement:.3f}) · "
              f"α={result.pair['alpha']} c={result.pair['cost_ratio']} · wrote {out}")
