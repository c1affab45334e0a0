"""Measure the real Qwen2.5-Coder pair on each backend of this machine.

    python scripts/measure_backends.py [--parts costs,alpha,speed] [--tokens 48] [--out results.json]

Per backend and model: load time (cached), ms per token (one-token extends), the cost of
scoring a block of k = 1, 2, 4, 8, 16 tokens, and (llama.cpp) how often block scoring and
one-at-a-time scoring pick different argmax tokens. For the pair: the acceptance rate α of
greedy speculative decoding on 10 code prompts, and the speedup of `speculative` and `bild`
over big-only for each backend combination, each ratio taken in one run (same prompts,
warm-up first, medians of repeats, methods interleaved). Timings on a shared 2-core machine
are noisy: compare ratios, not absolute times.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time

import torch

import biglittle as bl

PROMPTS = [
    "def is_prime(n: int) -> bool:\n",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "# Read a CSV file and print the sum of the 'price' column\nimport csv\n\n",
    "def binary_search(items, target):\n",
    "class Stack:\n    \"\"\"A simple LIFO stack.\"\"\"\n\n    def __init__(self):\n",
    "def reverse_words(sentence: str) -> str:\n",
    "import json\n\ndef load_config(path):\n",
    "def merge_sort(arr):\n",
    "# Count how often each word appears in a text\ndef word_counts(text):\n",
    "def flatten(nested):\n    \"\"\"Flatten a list of lists.\"\"\"\n",
]

SMALL, BIG = "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"
BACKENDS = {  # label → (spec prefix, dtype)
    "llama.cpp Q4": ("gguf", "float32"),
    "HF bf16": ("hf-gguf", "bfloat16"),
    "HF fp32": ("hf-gguf", "float32"),
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def load(name: str, backend: str):
    prefix, dtype = BACKENDS[backend]
    t0 = time.perf_counter()
    m = bl.load_model(f"{prefix}:{name}", dtype=dtype)
    return m, time.perf_counter() - t0


def free(*models):
    del models
    gc.collect()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def model_costs(name: str, backend: str, repeats: int = 3) -> dict:
    """Load time, ms per token, block-scoring costs (and llama.cpp block/single agreement)."""
    bl.load_model(f"{BACKENDS[backend][0]}:{name}", dtype=BACKENDS[backend][1])  # convert/pull once, untimed
    gc.collect()
    loads = []
    for _ in range(2):
        m, dt = load(name, backend)
        loads.append(dt)
        if _ == 0:
            del m
            gc.collect()
    prompt = m.tokenizer.encode(PROMPTS[1])
    s = m.session()
    s.extend(prompt, keep=1)  # warm-up
    s.truncate(0)
    # ms per token: greedy, one token per extend
    logp = s.extend(prompt, keep=1)
    per_token = []
    gen = []
    for _ in range(24):
        t = int(logp[-1].argmax())
        gen.append(t)
        logp, dt = timed(lambda: s.extend([t]))
        per_token.append(dt)
    base = len(prompt)
    cont = gen + gen  # tokens to score as blocks (what a verifier sees)
    block = {}
    for k in (1, 2, 4, 8, 16):
        times = []
        for _ in range(repeats):
            s.truncate(base)
            _, dt = timed(lambda: s.extend(cont[:k], keep=k))
            times.append(dt)
        block[k] = statistics.median(times) * 1000
    out = {"model": name, "backend": backend, "load_s": statistics.median(loads),
           "ms_per_token": statistics.median(per_token) * 1000, "block_ms": block}
    if backend.startswith("llama.cpp"):
        out["block_vs_single"] = block_agreement(m)
    free(m)
    return out


def block_agreement(m) -> dict:
    """Score the same text as one block and one token at a time; compare argmax and probs."""
    agree = total = 0
    worst = 0.0
    for p in PROMPTS:
        ids = m.tokenizer.encode(p + "    return None\n\n\nif __name__ == '__main__':\n    main()\n")
        a = m.session().extend(ids)
        s = m.session()
        b = torch.cat([s.extend([t]) for t in ids])
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        total += len(ids)
        worst = max(worst, float((a - b).abs().max()))
    return {"positions": total, "argmax_agree": agree, "max_abs_logprob_diff": worst}


def run(small, big, prompt, policy, tokens):
    return bl.generate(small, big, prompt, policy=policy, max_new_tokens=tokens, temperature=0.0)


def pair_speed(small_backend: str, big_backend: str, tokens: int, n_prompts: int, repeats: int,
               small_name: str = SMALL) -> dict:
    small, _ = load(small_name, small_backend)
    big, _ = load(BIG, big_backend)
    methods = {"big only": bl.BigOnly(), "speculative γ=4": bl.Speculative(draft=4), "bild": bl.BiLD()}
    prompts = [big.tokenizer.encode(p) for p in PROMPTS[:n_prompts]]
    run(small, big, prompts[0], bl.Speculative(draft=4), 8)  # warm-up both models
    times = {k: [] for k in methods}
    stats = {k: [] for k in methods}
    outputs = {k: [] for k in methods}
    for r in range(repeats):
        for i, p in enumerate(prompts):
            for label, pol in methods.items():  # interleaved, so load changes hit every method alike
                res = run(small, big, p, pol, tokens)
                times[label].append(res.stats.wall_s / max(1, res.stats.new_tokens))
                if r == 0:
                    stats[label].append(res.stats)
                    outputs[label].append(res.token_ids)
    base = statistics.median(times["big only"])
    out = {"small": f"{small_name} on {small_backend}", "big": f"{BIG} on {big_backend}",
           "tokens": tokens, "prompts": n_prompts, "repeats": repeats, "methods": {}}
    for label in methods:
        st = stats[label]
        drafted = sum(s.drafted for s in st)
        accepted = sum(s.accepted for s in st)
        new = sum(s.new_tokens for s in st)
        same = sum(int(a == b) for a, b in zip(outputs[label], outputs["big only"]))
        out["methods"][label] = {
            "ms_per_token": statistics.median(times[label]) * 1000,
            "speedup": base / statistics.median(times[label]),
            "alpha": accepted / drafted if drafted else None,
            "big_calls_per_token": sum(s.big_calls for s in st) / new,
            "small_token_share": sum(s.small_tokens for s in st) / new,
            "same_as_big_only": f"{same}/{len(st)}",
        }
    free(small, big)
    return out


def alpha(small_backend: str, big_backend: str, tokens: int) -> dict:
    """Greedy acceptance rate α (γ = 4) and the token agreement on the 10 code prompts."""
    small, _ = load(SMALL, small_backend)
    big, _ = load(BIG, big_backend)
    drafted = accepted = 0
    for p in PROMPTS:
        res = run(small, big, big.tokenizer.encode(p), bl.Speculative(draft=4), tokens)
        drafted += res.stats.drafted
        accepted += res.stats.accepted
    free(small, big)
    return {"small": small_backend, "big": big_backend, "prompts": len(PROMPTS), "tokens": tokens,
            "drafted": drafted, "accepted": accepted, "alpha": accepted / drafted}


COMBOS = [  # (small backend, big backend, small model)
    ("llama.cpp Q4", "llama.cpp Q4", SMALL),
    ("llama.cpp Q4", "HF bf16", SMALL),
    ("llama.cpp Q4", "HF fp32", SMALL),
    ("HF bf16", "HF bf16", SMALL),
    ("HF fp32", "HF fp32", SMALL),
    ("llama.cpp Q4", "HF bf16", BIG),   # ARI-style: the same 1.5B, Q4 drafts for its full-precision self
    ("llama.cpp Q4", "HF fp32", BIG),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="costs,alpha,speed")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--speed-prompts", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--combos", default="all", help="comma-separated indexes into COMBOS, or all")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--out", default="measure_backends.json")
    args = ap.parse_args()
    parts = args.parts.split(",")
    results = {"torch_threads": torch.get_num_threads(), "costs": [], "alpha": [], "speed": []}

    def save():
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)

    if "costs" in parts:
        for backend in args.backends.split(","):
            for name in (SMALL, BIG):
                log(f"costs: {name} on {backend}")
                results["costs"].append(model_costs(name, backend))
                log(json.dumps(results["costs"][-1]))
                save()
    if "alpha" in parts:
        log("alpha: llama.cpp pair, 10 prompts")
        results["alpha"].append(alpha("llama.cpp Q4", "llama.cpp Q4", args.tokens))
        log(json.dumps(results["alpha"][-1]))
        save()
    if "speed" in parts:
        chosen = COMBOS if args.combos == "all" else [COMBOS[int(i)] for i in args.combos.split(",")]
        for sb, bb, sname in chosen:
            log(f"speed: small {sname} on {sb}, big on {bb}")
            results["speed"].append(pair_speed(sb, bb, args.tokens, args.speed_prompts, args.repeats, sname))
            log(json.dumps(results["speed"][-1]))
            save()
    print(report(results))


def report(results: dict) -> str:
    lines = []
    if results["costs"]:
        lines += ["| model | backend | load (s) | ms/token | block k=1 | k=2 | k=4 | k=8 | k=16 (ms) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in results["costs"]:
            b = c["block_ms"]
            lines.append(f"| {c['model']} | {c['backend']} | {c['load_s']:.1f} | {c['ms_per_token']:.0f} | "
                         + " | ".join(f"{b[k]:.0f}" for k in b) + " |")
        for c in results["costs"]:
            if "block_vs_single" in c:
                a = c["block_vs_single"]
                lines.append(f"\n{c['model']} llama.cpp block vs one-at-a-time: argmax agrees at "
                             f"{a['argmax_agree']}/{a['positions']} positions, max |Δ log p| {a['max_abs_logprob_diff']:.2f}")
    for a in results["alpha"]:
        lines.append(f"\nα (greedy, γ=4, {a['prompts']} code prompts × {a['tokens']} tokens, small {a['small']}, "
                     f"big {a['big']}): {a['accepted']}/{a['drafted']} = {a['alpha']:.2f}")
    if results["speed"]:
        lines += ["", "| small | big | method | ms/token | speedup vs big only | α | big calls/token | same as big only |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in results["speed"]:
            for label, m in r["methods"].items():
                al = f"{m['alpha']:.2f}" if m["alpha"] is not None else "—"
                lines.append(f"| {r['small']} | {r['big']} | {label} | {m['ms_per_token']:.0f} | "
                             f"{m['speedup']:.2f}× | {al} | {m['big_calls_per_token']:.2f} | {m['same_as_big_only']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
