"""What it costs a llama.cpp model to serve two jobs taking turns, against one job alone.

    python scripts/measure_job_switch.py [--model gguf:qwen2.5-coder-1.5b] [--prompt-tokens 300]
                                         [--steps 12] [--n-seq 8]

Two sessions each read a prompt of --prompt-tokens tokens, then add one token at a time: first
one session alone, then both in turn (a, b, a, b, ...), which is what the server does with two
concurrent generations. Prints the median milliseconds per token of each. With one sequence per
session (n_seq >= 2) the two are the same; with --n-seq 1 every turn re-reads the other job's
sequence. Run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import statistics
import time

import biglittle as bl
from biglittle.models.llamacpp import DEFAULT_SEQUENCES

CODE = "def f(x):\n    return x * 2\n"
TEXT = "Translate to English: Der Hund läuft schnell über die Wiese. "


def per_token_ms(model, prompts: list[list[int]], steps: int) -> float:
    """Median ms of one one-token extend while the sessions of `prompts` take turns."""
    sessions = [model.session() for _ in prompts]
    for s, ids in zip(sessions, prompts):
        s.extend(ids, keep=1)
    times = []
    for _ in range(steps):
        for s in sessions:
            t = time.perf_counter()
            s.extend([5], keep=1)
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="gguf:qwen2.5-coder-1.5b")
    ap.add_argument("--prompt-tokens", type=int, default=300)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--n-seq", type=int, default=DEFAULT_SEQUENCES, help="llama.cpp sequences (sessions with their own KV)")
    args = ap.parse_args()
    model = bl.load_model(args.model, n_ctx=4096, n_seq=args.n_seq)
    a = model.tokenizer.encode(CODE * 40)[:args.prompt_tokens]
    b = model.tokenizer.encode(TEXT * 30)[:args.prompt_tokens]
    one = per_token_ms(model, [a], args.steps)
    two = per_token_ms(model, [a, b], args.steps)
    print(f"{args.model}, n_seq={args.n_seq}, prompts of {args.prompt_tokens} tokens: one job {one:.0f} ms "
          f"per token; two jobs taking turns {two:.0f} ms per token")


if __name__ == "__main__":
    main()
