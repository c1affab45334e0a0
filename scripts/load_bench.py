"""Load benchmark for `biglittle serve`: N concurrent streaming clients against a running server.

    biglittle serve --small ... --big ... --max-queue 128 &
    python scripts/load_bench.py --url http://127.0.0.1:8000 --clients 1,8,32,64 --requests 64

For each client count: requests/s, p50/p99 time to first token and latency, errors, and whether
every greedy answer equals the same request run alone (each prompt is first sent once, alone).
A measuring tool, not a timed test (tests/test_server_limits.py runs it at 64 clients for
correctness only)."""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import httpx

PROMPTS = ["def quicksort(xs):", "Write a haiku about the sea.", "The capital of France is",
           "class Stack:\n    def push(self, x):", "Explain recursion in one sentence.", "for i in range(10):"]


async def one_stream(client: httpx.AsyncClient, url: str, model: str, prompt: str, max_tokens: int) -> dict:
    """One streaming completion: its text, time to first text and total time (or its error)."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True}
    t0 = time.perf_counter()
    first, text = None, ""
    try:
        async with client.stream("POST", url + "/v1/completions", json=body) as r:
            if r.status_code != 200:
                return {"prompt": prompt, "error": f"HTTP {r.status_code}"}
            async for line in r.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    return {"prompt": prompt, "error": event["error"]["message"]}
                piece = event["choices"][0]["text"]
                if piece and first is None:
                    first = time.perf_counter() - t0
                text += piece
    except httpx.HTTPError as e:
        return {"prompt": prompt, "error": f"{type(e).__name__}: {e}"}
    total = time.perf_counter() - t0
    return {"prompt": prompt, "text": text, "ttft": first if first is not None else total, "latency": total}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def load(url: str, model: str, prompts: list[str], clients: int, requests: int, max_tokens: int) -> dict:
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        alone = {}
        for p in prompts:  # the reference: each prompt run alone
            alone[p] = (await one_stream(client, url, model, p, max_tokens)).get("text")
        queue: asyncio.Queue = asyncio.Queue()
        for i in range(requests):
            queue.put_nowait(prompts[i % len(prompts)])
        results: list[dict] = []

        async def worker():
            while not queue.empty():
                results.append(await one_stream(client, url, model, queue.get_nowait(), max_tokens))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    ok = [r for r in results if "error" not in r]
    ttft, lat = [r["ttft"] for r in ok], [r["latency"] for r in ok]
    return {"clients": clients, "done": len(ok), "errors": len(results) - len(ok),
            "mismatches": sum(r["text"] != alone[r["prompt"]] for r in ok), "rps": len(ok) / wall,
            "ttft_p50": percentile(ttft, 0.5), "ttft_p99": percentile(ttft, 0.99),
            "latency_p50": percentile(lat, 0.5), "latency_p99": percentile(lat, 0.99),
            "answers": [(r["prompt"], r["text"]) for r in ok], "alone": alone,
            "error_messages": sorted({r["error"] for r in results if "error" in r})}


def run_load(url: str, model: str, prompts: list[str], clients: int, requests: int, max_tokens: int) -> dict:
    return asyncio.run(load(url, model, prompts, clients, requests, max_tokens))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", default="biglittle", help="the model name the server serves (serve --name)")
    ap.add_argument("--clients", default="1,8,32,64", help="comma list of concurrent client counts")
    ap.add_argument("--requests", type=int, default=64, help="requests per client count")
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()
    print("| clients | requests | req/s | TTFT p50 | TTFT p99 | latency p50 | latency p99 | errors | ≠ alone |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in (int(x) for x in args.clients.split(",")):
        r = run_load(args.url, args.model, PROMPTS, n, max(args.requests, n), args.max_tokens)
        print(f"| {n} | {r['done'] + r['errors']} | {r['rps']:.2f} | {r['ttft_p50']:.3f} s | {r['ttft_p99']:.3f} s "
              f"| {r['latency_p50']:.3f} s | {r['latency_p99']:.3f} s | {r['errors']} | {r['mismatches']} |", flush=True)
        for message in r["error_messages"]:
            print(f"  error: {message}")


if __name__ == "__main__":
    main()
