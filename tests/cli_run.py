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


def start(*args: str, cwd: str | None = None, pause_at: str | None = None, env: dict | None = None) -> subprocess.Popen:
    """Start the program. pause_at: the name of a pause point (biglittle/signal_points.py) where it
    will wait for a signal; `paused(proc)` returns once it is there."""
    if pause_at is None:
        return subprocess.Popen([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**ENV, **(env or {})}, cwd=cwd)
    r, w = os.pipe()
    env = {**ENV, **(env or {}), "BIGLITTLE_PAUSE_AT": pause_at, "BIGLITTLE_PAUSE_FD": str(w)}
    try:
        proc = subprocess.Popen([BIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                cwd=cwd, pass_fds=(w,))
    finally:
        os.close(w)
    proc.pause_pipe = os.fdopen(r, "rb")
    return proc


def paused(proc: subprocess.Popen) -> None:
    """Block until the program started with `pause_at` waits at that point (it then writes the
    point's name to the pipe); an AssertionError, with its output, if it ended without reaching it."""
    with proc.pause_pipe as pipe:
        line = pipe.readline()  # b"" once the program has ended: the pipe's write end is closed
    if not line:
        out, err = proc.communicate(timeout=60)
        raise AssertionError(f"the program ended (rc {proc.returncode}) before its pause point:\n{err}")
