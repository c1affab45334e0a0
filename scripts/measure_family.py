"""How good is the answer for how much big-model work? Cascades, a router and BiLD side by side.

Query-level methods decide once per request (a cascade after the small model has answered, a
router from the prompt alone); BiLD decides per token. On GSM math (accuracy on the final number)
and our code prompts (agreement with big-only's tokens), this script

1. runs big-only and small-only on separate dev prompts, labels each dev prompt "small" when the
   small answer is as good as the big one (code, without references: when its agreement with
   big-only is in the better half), calibrates each cascade's threshold to escalate that
   share of the dev prompts, and trains the router on the labels;
2. runs big, small, BiLD, both cascades and the router on the test prompts with the benchmark
   runner (same run, warm-up first, speed against big-only);
3. traces each cascade's and the router's whole quality-vs-big-share curve on the test prompts
   from the small and big answers and the scores (a cascade's output at any threshold is one of
   those two answers), and plots the real runs on top;
4. compares contrastive decoding with big-only greedy on open-ended MT-bench questions:
   repetition, distinct-n, agreement, speed.

    BIGLITTLE_THREADS=1 python scripts/measure_family.py --n-dev 12 --n 12 --out family-out

Writes family.json, family.md and family.png to --out.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import biglittle as bl
from biglittle.bench.methods import parse_method
from biglittle.bench.runner import BenchConfig, run_methods, summarize
from biglittle.data.metrics import agreement
from biglittle.policies.cascade import answer_logps, reduce_logps, threshold_for_share
from biglittle.data import distinct_n, get_task, repetition_rate
from biglittle.decoding.session import TrackedSession
from biglittle.decoding.result import Stats
from biglittle.generate import encode_prompt
from biglittle.policies.router import prompt_features, train_router

TOKEN_METHODS = ["big", "small", "bild"]


def split(task, n_dev: int, n: int):
    """Dev and test examples that never overlap."""
    if task.name == "code":  # one fixed set of 22: alternate prompts go to dev and test
        every = task.load(None)
        return every[0::2][:n_dev], every[1::2][:n]
    return task.load(n_dev, seed=1), task.load(n, seed=0)


def quality(task, text: str, example, tokens: list[int], big_tokens: list[int]) -> float:
    """0–100: accuracy of this one answer where the task has references, else agreement with big-only."""
    if task.primary_metric is not None:
        return task.metric([text], [example.reference])[task.primary_metric]
    return 100.0 * agreement(tokens, big_tokens)["agreement"]


def score(model, role: str, prompt_ids: list[int], answer: list[int]) -> float:
    """A cascade's score of an answer: the mean token log-prob under `model`, one forward pass."""
    if not answer:
        return -math.inf
    return reduce_logps(answer_logps(TrackedSession(model.session(), role, Stats()), prompt_ids, answer), "mean")


def answers(small, big, ids, max_new):
    outs = {}
    for name in ("big", "small"):
        m = parse_method(name)
        outs[name] = [m.run(small, big, p, max_new) for p in ids]
    return outs


def calibrate(small, big, task, examples, ids, max_new, out_dir: Path) -> dict:
    """Labels, cascade thresholds and a router from the dev prompts."""
    outs = answers(small, big, ids, max_new)
    q_big = [quality(task, b.text or "", ex, b.token_ids, b.token_ids) for ex, b in zip(examples, outs["big"])]
    q_small = [quality(task, s.text or "", ex, s.token_ids, b.token_ids)
               for ex, s, b in zip(examples, outs["small"], outs["big"])]
    if task.primary_metric is not None:  # the small answer will do where it scores as well as the big one
        labels = ["small" if qs >= qb else "big" for qs, qb in zip(q_small, q_big)]
    else:  # only agreement with big-only: the better half of the small answers will do (Hybrid LLM
        # relaxes its quality-gap labels the same way, so both classes exist)
        cut = statistics.median(q_small)
        labels = ["small" if qs >= cut else "big" for qs in q_small]
    need_big = labels.count("big") / len(labels)
    small_scores = [score(small, "small", p, s.token_ids) for p, s in zip(ids, outs["small"])]
    big_scores = [score(big, "big", p, s.token_ids) for p, s in zip(ids, outs["small"])]
    cal = {"labels": labels, "need_big": need_big,
           "threshold_small_confidence": threshold_for_share(small_scores, need_big),
           "threshold_big_score": threshold_for_share(big_scores, need_big), "router": None}
    if 0 < need_big < 1:  # a classifier needs both kinds of prompt
        clf = train_router(small, ids, labels)
        path = out_dir / f"router-{task.name}.json"
        clf.save(path)
        cal["router"] = str(path)
    return cal


def spec_of(name: str, cal: dict) -> str | None:
    t_sc, t_bs = cal["threshold_small_confidence"], cal["threshold_big_score"]
    return {"cascade-small-confidence": f"cascade:scorer=small-confidence,threshold={t_sc:.6g}",
            "cascade-big-score": f"cascade:scorer=big-score,threshold={t_bs:.6g}",
            "router": cal["router"]}.get(name, name)


def request_share(samples) -> float:
    """Share of requests the big model answered (cascades, router) or took part in (token-level)."""
    def big_answered(st):
        by = st.get("extra", {}).get("answered_by")
        return by == "big" if by else st.get("big_calls", 0) > 0
    return statistics.mean(big_answered(s.stats) for s in samples)


def curve(task, examples, ids, by_method, small, big, router_path):
    """Each query-level method's quality and big share at every threshold, on the test prompts."""
    big_s, small_s = by_method["big"], by_method["small"]
    q_small = [quality(task, s.text or "", ex, s.token_ids, b.token_ids) for ex, s, b in zip(examples, small_s, big_s)]
    q_big = [quality(task, b.text or "", ex, b.token_ids, b.token_ids) for ex, b in zip(examples, big_s)]
    keys = {"cascade-small-confidence": [score(small, "small", p, s.token_ids) for p, s in zip(ids, small_s)],
            "cascade-big-score": [score(big, "big", p, s.token_ids) for p, s in zip(ids, small_s)]}
    if router_path:  # a router escalates the prompts with the highest P(big needed): rank by −p
        router = bl.Router.load(router_path)
        keys["router"] = [-float(router.classifier.p_big(prompt_features(small, p))) for p in ids]
    curves = {}
    for name, key in keys.items():
        order = sorted(range(len(ids)), key=lambda i: key[i])  # escalated first
        points = []
        for k in range(len(ids) + 1):
            up = set(order[:k])
            q = statistics.mean(q_big[i] if i in up else q_small[i] for i in range(len(ids)))
            big_tok = sum(len(big_s[i].token_ids) for i in up)
            all_tok = big_tok + sum(len(small_s[i].token_ids) for i in range(len(ids)) if i not in up)
            points.append({"requests": k / len(ids), "tokens": big_tok / all_tok if all_tok else 0.0, "quality": q})
        curves[name] = points
    return curves


def measure_task(small, big, task_name, n_dev, n, max_new_tokens, out_dir: Path) -> dict:
    task = get_task(task_name)
    dev, test = split(task, n_dev, n)
    max_new = max_new_tokens or task.max_new_tokens
    enc = lambda exs: [encode_prompt(big, task.build_prompt(ex, True), True) for ex in exs]  # noqa: E731
    print(f"[{task.name}] calibrating on {len(dev)} dev prompts …", flush=True)
    cal = calibrate(small, big, task, dev, enc(dev), max_new, out_dir)
    names = TOKEN_METHODS + ["cascade-small-confidence", "cascade-big-score"] + (["router"] if cal["router"] else [])
    specs = [spec_of(name, cal) for name in names]
    config = BenchConfig(small.spec, big.spec, [task.name], specs, n=len(test), max_new_tokens=max_new)
    print(f"[{task.name}] {len(names)} methods on {len(test)} test prompts …", flush=True)
    samples = run_methods(small, big, task, test, [parse_method(s) for s in specs], config)
    rows = summarize(task, test, samples, specs)
    by = {name: [s for s in samples if s.method == spec] for name, spec in zip(names, specs)}
    ids = enc(test)
    curves = curve(task, test, ids, by, small, big, cal["router"])
    table = []
    for name, spec, row in zip(names, specs, rows):
        q = row["quality"].get(task.primary_metric) if task.primary_metric else 100.0 * row["agreement"]
        table.append({"method": name, "spec": spec, "quality": q, "big_request_share": request_share(by[name]),
                      "big_token_share": row["big_share"] if row["big_share"] is not None else 1.0,
                      "speedup": row["speedup"], "big_calls_per_token": row["big_calls_per_token"]})
    return {"task": task.name, "metric": task.primary_metric or "agreement with big-only (%)",
            "n_dev": len(dev), "n_test": len(test), "max_new_tokens": max_new, "calibration": cal,
            "methods": table, "curves": curves, "rows": rows}


def measure_contrastive(small, big, n, max_new) -> dict:
    task = get_task("mtbench")
    examples = task.load(n, seed=0)
    specs = ["big", "contrastive"]
    config = BenchConfig(small.spec, big.spec, [task.name], specs, n=n, max_new_tokens=max_new)
    print(f"[contrastive] big vs contrastive on {n} MT-bench questions …", flush=True)
    samples = run_methods(small, big, task, examples, [parse_method(s) for s in specs], config)
    rows = summarize(task, examples, samples, specs)
    table = []
    for spec, row in zip(specs, rows):
        toks = [s.token_ids for s in samples if s.method == spec]
        table.append({"method": spec, "repetition_4gram": statistics.mean(repetition_rate(t, 4) for t in toks),
                      "distinct_1": distinct_n(toks, 1), "distinct_2": distinct_n(toks, 2),
                      "agreement": row["agreement"], "exact_match": row["exact_match"], "speedup": row["speedup"],
                      "mean_tokens": statistics.mean(len(t) for t in toks)})
    return {"task": "mtbench", "n": n, "max_new_tokens": max_new, "methods": table}


def markdown(results: dict) -> str:
    lines = []
    for t in results["tasks"]:
        lines += [f"**{t['task']}** ({t['metric']}; {t['n_test']} test prompts, {t['n_dev']} dev prompts for "
                  f"calibration, ≤ {t['max_new_tokens']} new tokens; dev prompts needing the big model: "
                  f"{t['calibration']['need_big']:.0%})", "",
                  "| method | quality | requests answered by big | tokens by big | big calls / token | speedup |",
                  "|---|---|---|---|---|---|"]
        for m in t["methods"]:
            lines.append(f"| {m['method']} | {m['quality']:.1f} | {m['big_request_share']:.0%} | "
                         f"{m['big_token_share']:.0%} | {m['big_calls_per_token']:.2f} | {m['speedup']:.2f}× |")
        lines.append("")
    c = results["contrastive"]
    lines += [f"**contrastive vs big-only** (MT-bench, {c['n']} questions, ≤ {c['max_new_tokens']} new tokens, greedy)",
              "", "| method | repeated 4-grams | distinct-1 | distinct-2 | agreement with big | speedup |",
              "|---|---|---|---|---|---|"]
    for m in c["methods"]:
        lines.append(f"| {m['method']} | {m['repetition_4gram']:.1%} | {m['distinct_1']:.3f} | {m['distinct_2']:.3f} | "
                     f"{m['agreement']:.0%} | {m['speedup']:.2f}× |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = results["tasks"]
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 4.2 * len(tasks)), squeeze=False)
    styles = {"cascade-small-confidence": "C0", "cascade-big-score": "C1", "router": "C2"}
    for row, t in zip(axes, tasks):
        for ax, share, label in ((row[0], "requests", "share of requests answered by the big model"),
                                 (row[1], "tokens", "share of tokens written by the big model")):
            for name, points in t["curves"].items():
                ax.plot([p[share] for p in points], [p["quality"] for p in points], "-", color=styles[name],
                        alpha=0.5, label=f"{name} (all thresholds)")
            for m in t["methods"]:
                x = m["big_request_share"] if share == "requests" else m["big_token_share"]
                ax.plot(x, m["quality"], "o", color=styles.get(m["method"], "k"))
                ax.annotate(f"{m['method']} {m['speedup']:.2f}×", (x, m["quality"]), fontsize=7,
                            xytext=(4, 4), textcoords="offset points")
            ax.set_xlabel(label)
            ax.set_ylabel(t["metric"])
            ax.set_title(f"{t['task']}: quality vs big-model share")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair", default="qwen-coder")
    ap.add_argument("--tasks", default="gsm,code")
    ap.add_argument("--n-dev", type=int, default=12)
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: each task's own")
    ap.add_argument("--contrastive-n", type=int, default=8)
    ap.add_argument("--contrastive-tokens", type=int, default=128)
    ap.add_argument("--out", default="family-out")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    small, big = bl.models.load_pair(args.pair)
    results = {"pair": [small.spec, big.spec], "tasks": []}
    for name in filter(None, args.tasks.split(",")):
        results["tasks"].append(measure_task(small, big, name, args.n_dev, args.n, args.max_new_tokens, out))
        (out / "family.json").write_text(json.dumps(results, indent=1, default=str))  # keep what is done
    results["contrastive"] = measure_contrastive(small, big, args.contrastive_n, args.contrastive_tokens)
    (out / "family.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "family.md").write_text(markdown(results))
    plot(results, out / "family.png")
    print(markdown(results))
    print(f"wrote {out / 'family.json'}, {out / 'family.md'}, {out / 'family.png'}")


if __name__ == "__main__":
    main()
