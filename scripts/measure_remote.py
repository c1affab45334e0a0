"""Edge–cloud split: the big model behind `biglittle serve`, the small one local, at several added
round-trip times (a delay proxy in between).

For each RTT it compares, on the same prompts:
  big-only (honest baseline): the server generates the whole answer itself in ONE streamed request;
  speculative / bild through the remote backend: the local small model drafts, each big call is one
  scoring request.
and reports end-to-end seconds, the speedup over the baseline, big-model calls (round trips) per
token, and the server's busy (forward-pass) time per token.

    python scripts/measure_remote.py --rtts 0,20,50,100 --tokens 48 --prompts 3 --out /tmp/remote.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import httpx

import biglittle as bl
from biglittle.data import get_task

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from live import free_port, wait_ready  # noqa: E402


def baseline(url: str, ids: list[int], tokens: int) -> tuple[float, float, int]:
    """The server alone, one streamed request: (end-to-end s, server generation s, tokens)."""
    body = {"model": "biglittle", "prompt": ids, "max_tokens": tokens, "stream": True,
            "biglittle": {"policy": "big"}}
    t0 = time.perf_counter()
    stats = {}
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=600) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                ev = json.loads(line[6:])
                stats = ev.get("biglittle", {}).get("stats", stats)
    return time.perf_counter() - t0, stats.get("big_s", 0.0), stats.get("new_tokens", 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", default="gguf:qwen2.5-coder-0.5b")
    ap.add_argument("--big", default="gguf:qwen2.5-coder-1.5b", help="the model the server holds")
    ap.add_argument("--rtts", default="0,20,50,100")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--methods", default="speculative:draft=4;bild")
    ap.add_argument("--out", default="remote.json")
    args = ap.parse_args()

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "biglittle.cli", "serve", "--small", args.small, "--big", args.big,
                               "--port", str(port), "--policy", "big"], stderr=subprocess.DEVNULL)
    procs = [server]
    try:
        wait_ready(f"http://127.0.0.1:{port}", server, timeout=300, path="/health")
        small = bl.load_model(args.small)
        task = get_task("code")
        prompts = [small.tokenizer.apply_chat(task.build_prompt(ex, True)) for ex in task.load(args.prompts)]
        rows = []
        for rtt in [float(x) for x in args.rtts.split(",")]:
            pport = free_port()
            proxy = subprocess.Popen([sys.executable, "-m", "biglittle.delay_proxy", "--listen", str(pport),
                                      "--target", f"127.0.0.1:{port}", "--delay-ms", str(rtt)])
            procs.append(proxy)
            url = f"http://127.0.0.1:{pport}"
            wait_ready(url, proxy, path="/health")
            remote = bl.load_model(f"remote:{url}#biglittle", tokenizer_from=small)
            base = [baseline(url, ids, args.tokens) for ids in prompts]
            base_s = sum(b[0] for b in base)
            n_base = sum(b[2] for b in base)
            rows.append({"rtt_ms": rtt, "method": "big-only (server, one streamed request)", "seconds": base_s,
                         "speedup": 1.0, "round_trips_per_token": 1 / n_base * len(prompts),
                         "big_calls_per_token": 1.0, "server_s_per_token": sum(b[1] for b in base) / n_base})
            for spec in args.methods.split(";"):
                policy = bl.parse_policy(spec)
                remote.dialect.server_s = 0.0
                t0 = time.perf_counter()
                results = [bl.generate(small, remote, ids, policy=policy, max_new_tokens=args.tokens) for ids in prompts]
                secs = time.perf_counter() - t0
                n = sum(r.stats.new_tokens for r in results)
                calls = sum(r.stats.big_calls for r in results)
                rows.append({"rtt_ms": rtt, "method": spec, "seconds": secs, "speedup": base_s / secs,
                             "round_trips_per_token": calls / n, "big_calls_per_token": calls / n,
                             "server_s_per_token": remote.dialect.server_s / n})
                print(json.dumps(rows[-1]), flush=True)
            proxy.terminate()
        with open(args.out, "w") as f:
            json.dump({"small": args.small, "big": args.big, "tokens": args.tokens, "prompts": args.prompts,
                       "rows": rows}, f, indent=1)
        print("| RTT | method | end-to-end s | speedup vs server alone | big calls / token | server busy ms / token |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['rtt_ms']:g} ms | {r['method']} | {r['seconds']:.1f} | {r['speedup']:.2f}× | "
                  f"{r['big_calls_per_token']:.2f} | {1000 * r['server_s_per_token']:.0f} |")
    finally:
        for p in procs:
            p.terminate()


if __name__ == "__main__":
    main()
