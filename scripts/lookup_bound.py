"""The most prompt lookup could gain on a task with a given big model: an oracle bound.

A real schedule picks each round's block before it knows how many copied tokens the big model
will keep. This oracle knows (it has the big model's greedy answer), so its time is a bound that
no prompt-lookup schedule can beat with this model on this machine:

1. The big model's greedy answer to each prompt (big-only, prompts built as `biglittle bench`
   builds them).
2. C(n), the time of one call scoring n new positions after a prompt-sized prefix, measured here on
   the same model (medians of --repeats; linear between the measured sizes).
3. Dynamic programming over each answer: at position i, either one big step (C(1), one token), or
   verify the first k tokens of the lookup draft at i (C(k + 1): the pending token and k drafts),
   which yields the a <= k drafted tokens that equal the answer plus one token of the big model.

Reading the prompt costs both the same, so the bound is on the decode phase (the time after the
prompt is read); big-only there costs C(1) a token. Greedy lookup answers equal big-only's, so
the answer fixes every acceptance.

Usage: python scripts/lookup_bound.py --task code-edit --n 12 [--big gguf:qwen2.5-coder-1.5b]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

import biglittle as bl
from biglittle.data import get_task
from biglittle.decoding.lookup import PromptLookup
from biglittle.tokens import common_prefix

SIZES = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]


def block_costs(big, prefix: list[int], repeats: int) -> np.ndarray:
    """C(n) for n = 0..max(SIZES), seconds (C(0) = 0), interpolated between SIZES."""
    session = big.session()
    session.extend(prefix, keep=1)
    filler = (prefix * (1 + max(SIZES) // len(prefix)))[: max(SIZES)]
    measured = []
    for n in SIZES:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            session.extend(filler[:n], keep=n)
            times.append(time.perf_counter() - t0)
            session.truncate(len(prefix))
        measured.append(statistics.median(times))
    return np.interp(np.arange(max(SIZES) + 1), [0] + SIZES, [0.0] + measured)


def oracle_time(prompt: list[int], answer: list[int], cost: np.ndarray, ngram: int) -> tuple[float, int]:
    """The least decode time any lookup schedule can reach, and how many tokens it copies."""
    lookup = PromptLookup(ngram)
    proposals = []
    for i in range(len(answer)):
        lookup.catch_up(prompt + answer[:i])
        proposals.append(lookup.propose(len(cost) - 2)[0])
    n = len(answer)
    best = [0.0] * (n + 1)
    copied = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        best[i], copied[i] = cost[1] + best[i + 1], copied[i + 1]
        run = common_prefix(proposals[i], answer[i:])  # the drafted tokens the big model keeps
        for k in range(1, len(proposals[i]) + 1):
            a = min(run, k)
            nxt = min(n, i + a + 1)
            t = cost[k + 1] + best[nxt]
            if t < best[i]:
                best[i], copied[i] = t, a + copied[nxt]
    return best[0], copied[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="code-edit")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--big", default="gguf:qwen2.5-coder-1.5b")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: the task's")
    ap.add_argument("--ngram", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    big = bl.load_model(args.big)
    task = get_task(args.task)
    examples = task.load(args.n, seed=0)
    limit = args.max_new_tokens or task.max_new_tokens
    rows = []
    for j, ex in enumerate(examples):
        prompt = big.tokenizer.apply_chat(task.build_prompt(ex, chat=True))
        res = bl.generate(None, big, prompt, policy=bl.BigOnly(), max_new_tokens=limit)
        answer = list(res.token_ids)
        if j == 0:
            cost = block_costs(big, prompt, args.repeats)
            print("C(n), ms: " + ", ".join(f"{n}: {cost[n] * 1000:.0f}" for n in SIZES), flush=True)
        bound, copied = oracle_time(prompt, answer, cost, args.ngram)
        plain = cost[1] * len(answer)
        rows.append((len(answer), copied, plain / bound))
        print(f"prompt {j}: {len(answer)} tokens, {copied} copied by the oracle, "
              f"decode-phase bound {plain / bound:.2f}x", flush=True)
    ratios = [r[2] for r in rows]
    print(f"{args.task}, {len(rows)} prompts, {args.big}: the best any lookup schedule can do in the decode "
          f"phase: geometric mean {math.exp(statistics.mean(map(math.log, ratios))):.2f}x, "
          f"min {min(ratios):.2f}x, max {max(ratios):.2f}x; copied {sum(r[1] for r in rows)}/{sum(r[0] for r in rows)} tokens")


if __name__ == "__main__":
    main()
