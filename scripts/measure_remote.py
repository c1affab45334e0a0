"""Edge–cloud split: the big model behind a server, the small one local, at several added
round-trip times (a delay proxy in between).

The server (--engine): `biglittle serve` (the default), or a real vLLM (its CPU build, started by
scripts/vllm_server.py from .venv-vllm, serving the bf16 conversion of the catalog's 1.5B).
For each RTT it compares, on the same prompts:
  big-only (honest baseline): the server generates the whole answer itself in ONE request;
  speculative / bild through the remote backend: the local small model drafts, each big call is one
  scoring request.
and reports end-to-end seconds, the speedup over the baseline, big-model calls (round trips) per
token, and the server's busy time per token (biglittle: its forward passes; vLLM: the time its
requests spent running, from its Prometheus metrics).

    python scripts/measure_remote.py --rtts 0,20,50,100 --tokens 48 --prompts 3 --out /tmp/remote.json
    python scripts/measure_remote.py --engine vllm --rtts 0,20,50 --out /tmp/remote-vllm.json
    python scripts/measure_remote.py --task code-edit --rtts 0,50 \
        --methods "speculative:drafter=lookup,schedule=auto;speculative:drafter=lookup,draft=8"
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
sys.path.insert(0, os.path.dirname(__file__))
import vllm_server  # noqa: E402
from live import free_port, wait_ready  # noqa: E402

VLLM_BUSY = "vllm:request_inference_time_seconds_sum"  # seconds requests spent running in the engine


class BiglittleEngine:
    """`biglittle serve` holding the big model; its busy time is its forward passes."""
    label = "server"

    def __init__(self, args):
        self.small, self.big, self.procs = args.small, args.big, []
        self.model, self.base_busy = "biglittle", 0.0

    def start(self) -> str:
        port = free_port()
        self.procs.append(subprocess.Popen([sys.executable, "-m", "biglittle.cli", "serve", "--small", self.small,
                                            "--big", self.big, "--port", str(port), "--policy", "big"],
                                           stderr=subprocess.DEVNULL))
        wait_ready(f"http://127.0.0.1:{port}", self.procs[0], timeout=300, path="/health")
        return f"127.0.0.1:{port}"

    def baseline(self, url: str, ids: list[int], tokens: int) -> int:
        """The server alone, one streamed request; returns the tokens it generated."""
        body = {"model": "biglittle", "prompt": ids, "max_tokens": tokens, "stream": True,
                "biglittle": {"policy": "big"}}
        stats = {}
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=600) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    stats = json.loads(line[6:]).get("biglittle", {}).get("stats", stats)
        self.base_busy += stats.get("big_s", 0.0)
        return stats.get("new_tokens", 0)

    def busy_s(self, remote) -> float:
        """Cumulative server busy seconds (baselines + scoring requests through `remote`)."""
        return self.base_busy + remote.dialect.server_s

    def stop(self):
        for p in self.procs:
            stop_process(p)


class VllmEngine:
    """A real vLLM (scripts/vllm_server.py) holding the bf16 big model; its busy time is the time
    its requests spent running, from its metrics (read straight from it, not through the proxy)."""
    label = "vLLM"

    def __init__(self, args):
        self.server = vllm_server.VllmServer(log_path=args.out + ".vllm.log")
        self.model = self.server.name

    def start(self) -> str:
        vllm_server.install()
        return self.server.start().removeprefix("http://")

    def baseline(self, url: str, ids: list[int], tokens: int) -> int:
        """vLLM alone, greedy, one request; returns the tokens it generated."""
        body = {"model": self.model, "prompt": ids, "max_tokens": tokens, "temperature": 0.0}
        return httpx.post(url + "/v1/completions", json=body, timeout=600).json()["usage"]["completion_tokens"]

    def busy_s(self, remote) -> float:
        text = httpx.get(self.server.url + "/metrics", timeout=10).text
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(VLLM_BUSY))

    def stop(self):
        self.server.stop()


def timed(engine, remote, run) -> tuple[float, float, object]:
    """(wall seconds, server busy seconds, run()'s value)."""
    busy0, t0 = engine.busy_s(remote), time.perf_counter()
    out = run()
    return time.perf_counter() - t0, engine.busy_s(remote) - busy0, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=["biglittle", "vllm"], default="biglittle", help="the big model's server")
    ap.add_argument("--small", default="gguf:qwen2.5-coder-0.5b")
    ap.add_argument("--big", default="gguf:qwen2.5-coder-1.5b",
                    help="the model `biglittle serve` holds (vLLM holds the bf16 conversion of the catalog's 1.5B)")
    ap.add_argument("--rtts", default="0,20,50,100")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--methods", default="speculative:draft=4;bild",
                    help="policy specs separated by ';' (e.g. speculative:drafter=lookup,schedule=auto)")
    ap.add_argument("--task", default="code", help="the prompts' task (code-edit: answers that copy their input)")
    ap.add_argument("--out", default="remote.json")
    ap.add_argument("--read-timeout", type=float, default=300.0,
                    help="seconds to wait for one scoring request (a long prefill on a busy CPU is slow)")
    args = ap.parse_args()

    engine = (VllmEngine if args.engine == "vllm" else BiglittleEngine)(args)
    procs = []
    try:
        target = engine.start()
        small = bl.load_model(args.small)
        task = get_task(args.task)
        prompts = [small.tokenizer.apply_chat(task.build_prompt(ex, True)) for ex in task.load(args.prompts)]
        rows = []
        for rtt in [float(x) for x in args.rtts.split(",")]:
            pport = free_port()
            proxy = subprocess.Popen([sys.executable, "-m", "biglittle.delay_proxy", "--listen", str(pport),
                                      "--target", target, "--delay-ms", str(rtt)])
            procs.append(proxy)
            url = f"http://127.0.0.1:{pport}"
            wait_ready(url, proxy, path="/v1/models")
            remote = bl.load_model(f"remote:{url}#{engine.model}", tokenizer_from=small,
                                   read_timeout=args.read_timeout)
            base_s, busy, counts = timed(engine, remote, lambda: [engine.baseline(url, ids, args.tokens)
                                                                  for ids in prompts])
            n_base = sum(counts)
            rows.append({"rtt_ms": rtt, "method": f"big-only ({engine.label} alone, one request)", "seconds": base_s,
                         "speedup": 1.0, "round_trips_per_token": len(prompts) / n_base, "big_calls_per_token": 1.0,
                         "server_s_per_token": busy / n_base})
            print(json.dumps(rows[-1]), flush=True)
            for spec in args.methods.split(";"):
                policy = bl.parse_policy(spec)
                secs, busy, results = timed(engine, remote, lambda: [
                    bl.generate(small, remote, ids, policy=policy, max_new_tokens=args.tokens) for ids in prompts])
                n = sum(r.stats.new_tokens for r in results)
                calls = sum(r.stats.big_calls for r in results)
                rows.append({"rtt_ms": rtt, "method": spec, "seconds": secs, "speedup": base_s / secs,
                             "round_trips_per_token": calls / n, "big_calls_per_token": calls / n,
                             "server_s_per_token": busy / n})
                print(json.dumps(rows[-1]), flush=True)
            stop_process(proxy)
        with open(args.out, "w") as f:
            json.dump({"engine": args.engine, "task": args.task, "small": args.small, "big": args.big if args.engine == "biglittle"
                       else f"{vllm_server.BIG} (bf16, vLLM)", "tokens": args.tokens, "prompts": args.prompts,
                       "rows": rows}, f, indent=1)
        print(f"| RTT | method | end-to-end s | speedup vs {engine.label} alone | big calls / token | "
              f"round trips / token | {engine.label} busy ms / token |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['rtt_ms']:g} ms | {r['method']} | {r['seconds']:.1f} | {r['speedup']:.2f}× | "
                  f"{r['big_calls_per_token']:.2f} | {r['round_trips_per_token']:.2f} | "
                  f"{1000 * r['server_s_per_token']:.0f} |")
    finally:
        for p in procs:
            stop_process(p)
        engine.stop()


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, wait for the exit (SIGKILL if it lingers): no process outlives the measurement."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
