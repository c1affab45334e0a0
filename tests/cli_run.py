"""The `biglittle` program as a user runs it: a subprocess of the venv's script, pipes for output."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = str(Path(sys.executable).parent / "biglittle")
# one thread each: on a 2-core machine shared with other jobs, spin-waiting threads stall badly
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "BIGLITTLE_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout, env={**ENV, **(env or {})})


def start(*args: str, cwd: str | None = None) -> subprocess.Popen:
    return subprocess.Popen([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            cwd=cwd)
