"""Benchmark output: one JSON file per run (schema below), a markdown summary, and plots.

JSON schema (`SCHEMA`, checked by `validate`):
  schema       "biglittle-bench/1"
  created      ISO time; machine: platform, python, cpu_count, torch threads; packages: versions
  config       the BenchConfig (small, big, tasks, methods, n, repeats, max_new_tokens, temperature, chat, seed)
  results      one row per (task, method): speed (tokens_per_s, speedup = big-only time / method time
               on the same prompts in the same run, speedup_median over prompts), what each model did
               (accepted_per_big_call, big_calls_per_token, small_share, big_share, rollbacks,
               fallbacks), quality (task metric, its change against big-only, agreement and exact
               match with big-only's tokens), and the analytic bound from measured α and c with
               efficiency = speedup / bound. Figures a method cannot have (peers have no α) are null.
  samples      every (task, method, example): token ids, text, median wall time, all wall times, stats
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

SCHEMA_ID = "biglittle-bench/1"
_num = {"type": ["number", "null"]}
SCHEMA = {
    "type": "object",
    "required": ["schema", "created", "machine", "packages", "config", "results", "samples"],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "created": {"type": "string"},
        "machine": {"type": "object", "required": ["platform", "python", "cpu_count"]},
        "packages": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        "config": {"type": "object", "required": ["big", "tasks", "methods", "n"]},
        "results": {"type": "array", "items": {
            "type": "object",
            "required": ["task", "method", "n", "new_tokens", "time_s", "tokens_per_s", "speedup",
                         "speedup_median", "quality", "quality_delta", "agreement", "exact_match",
                         "accepted_per_big_call", "big_calls_per_token", "small_share", "big_share",
                         "alpha", "c", "bound", "efficiency"],
            "properties": {
                "task": {"type": "string"}, "method": {"type": "string"}, "n": {"type": "integer"},
                "new_tokens": {"type": "integer"}, "time_s": {"type": "number"},
                "tokens_per_s": _num, "speedup": _num, "speedup_median": _num, "decode_speedup": _num,
                "quality": {"type": "object", "additionalProperties": {"type": "number"}},
                "quality_delta": {"type": "object", "additionalProperties": {"type": "number"}},
                "agreement": {"type": "number"}, "exact_match": {"type": "number"},
                "accepted_per_big_call": _num, "big_calls_per_token": _num, "small_share": _num,
                "big_share": _num, "alpha": _num, "c": _num, "bound": _num, "efficiency": _num,
            },
        }},
        "samples": {"type": "array", "items": {
            "type": "object",
            "required": ["task", "method", "example_id", "token_ids", "wall_s", "stats"],
        }},
    },
}

PACKAGES = ("biglittle", "torch", "transformers", "llama_cpp_python", "numpy", "rouge-score", "sacrebleu")


def machine_info() -> dict:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def build_report(config, rows: list[dict], samples: list) -> dict:
    return {"schema": SCHEMA_ID, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(), "packages": package_versions(), "config": config.to_dict(),
            "results": rows, "samples": [asdict(s) for s in samples]}


def validate(report: dict) -> None:
    """Raise jsonschema.ValidationError if the report does not follow SCHEMA."""
    import jsonschema

    jsonschema.validate(report, SCHEMA)


def _fmt(value, spec: str = ".2f", unit: str = "") -> str:
    return "–" if value is None else format(value, spec) + unit


def markdown(report: dict) -> str:
    cfg = report["config"]
    lines = [f"# biglittle bench — {report['created']}", "",
             f"small `{cfg['small']}` · big `{cfg['big']}` · n = {cfg['n']} per task · repeats = {cfg['repeats']}"
             f" · temperature {cfg['temperature']} · {report['machine']['platform']}, "
             f"{report['machine']['cpu_count']} CPUs", ""]
    for task in dict.fromkeys(r["task"] for r in report["results"]):
        rows = [r for r in report["results"] if r["task"] == task]
        metric_keys = list(rows[0]["quality"])
        lines += [f"## {task}", "",
                  "| method | tok/s | speedup | decode | quality | Δ vs big | agree | acc/big call | big calls/tok | small share | α | c | bound | eff. |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            q = ", ".join(f"{k} {v:.2f}" for k, v in r["quality"].items()) or "–"
            dq = ", ".join(f"{r['quality_delta'][k]:+.2f}" for k in metric_keys if k in r["quality_delta"]) or "–"
            lines.append(
                f"| `{r['method']}` | {_fmt(r['tokens_per_s'], '.1f')} | {_fmt(r['speedup'])}× | "
                f"{_fmt(r.get('decode_speedup'), '.2f', '×')} | {q} | {dq} | "
                f"{r['agreement']:.0%} | {_fmt(r['accepted_per_big_call'])} | {_fmt(r['big_calls_per_token'])} | "
                f"{_fmt(r['small_share'], '.0%')} | {_fmt(r['alpha'])} | {_fmt(r['c'])} | {_fmt(r['bound'])} | "
                f"{_fmt(r['efficiency'], '.0%')} |")
        lines.append("")
    lines += ["speedup: big-only time / method time on the same prompts in this run (warm-up first, median "
              "of repeats); decode: the same after each one's big model has read the prompt. agree: share of token positions equal to big-only's output. acc/big call: drafted "
              "tokens kept per big-model call. α: accepted / drafted; c: small-call time / big-call time; "
              "bound: (1−α^(γ+1)) / ((1−α)(γc+1)) at the mean draft length γ; eff.: speedup / bound.", ""]
    return "\n".join(lines)


def quality_axis(row: dict, primary: str | None) -> tuple[float, str]:
    """The number a Pareto plot puts on its quality axis: the task's primary metric, else agreement."""
    if primary and primary in row["quality"]:
        return row["quality"][primary], primary
    return 100 * row["agreement"], "agreement with big-only (%)"


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated in (speedup, quality), both higher-is-better."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for x2, y2 in points):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot_pareto(rows: list[dict], primary: str | None, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["speedup"] is not None]
    pts = [(r["speedup"], quality_axis(r, primary)[0]) for r in rows]
    label = quality_axis(rows[0], primary)[1] if rows else "quality"
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    families = {"bild": "tab:blue", "speculative": "tab:orange", "big": "black", "small": "tab:green"}
    for r, (x, y) in zip(rows, pts):
        fam = r["method"].split(":")[0]
        ax.scatter(x, y, color=families.get(fam, "tab:purple"), s=28, zorder=3)
        ax.annotate(_short(r["method"]), (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(pts)
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "--", color="gray", lw=1, zorder=2,
            label="Pareto front")
    ax.axvline(1.0, color="black", lw=0.6, alpha=0.4)
    ax.set_xlabel("speedup over big-only (same run)")
    ax.set_ylabel(label)
    ax.set_title(title, fontsize=10)
    for fam, color in families.items():
        ax.scatter([], [], color=color, label=fam)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _short(spec: str) -> str:
    name, _, args = spec.partition(":")
    short = {"fallback": "fb", "rollback": "rb", "max_small_steps": "N", "draft": "γ", "schedule": "",
             "confidence_stop": "cs", "acceptance": ""}
    parts = []
    for item in filter(None, args.split(",")):
        k, _, v = item.partition("=")
        parts.append(f"{short.get(k, k)}{'=' if short.get(k, k) else ''}{v}")
    return name + (" " + " ".join(parts) if parts else "")


def write_outputs(report: dict, out_dir: str | Path, tasks_by_name: dict) -> list[Path]:
    """Write bench.json, summary.md and one Pareto plot per task; return the paths."""
    validate(report)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "bench.json", out / "summary.md"]
    tmp = out / "bench.json.tmp"
    tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    tmp.replace(paths[0])  # never leave a half-written results file
    paths[1].write_text(markdown(report))
    for name in dict.fromkeys(r["task"] for r in report["results"]):
        rows = [r for r in report["results"] if r["task"] == name]
        png = out / f"pareto-{name}.png"
        plot_pareto(rows, getattr(tasks_by_name.get(name), "primary_metric", None), png,
                    f"{name}: quality vs speedup ({report['config']['big']})")
        paths.append(png)
    return paths
