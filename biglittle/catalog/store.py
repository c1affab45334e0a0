"""Where catalog models live in the cache, and whether a cached file is the right one.

A file that was hashed and matched gets a "verified" stamp next to it (its size, mtime and
sha256), so loading a pulled model does not re-hash a gigabyte every time; a file changed since
(other size or mtime) no longer matches its stamp and is hashed again.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..files import cache_root, sha256_file
from .entries import get


def cache_dir() -> Path:
    return cache_root()


def path(name: str) -> Path:
    """Where the assembled file of catalog model `name` lives (whether or not it is there)."""
    return cache_dir() / "models" / get(name).filename


@dataclass
class Status:
    name: str
    path: Path
    state: str                     # "ok", "missing", "wrong size", "checksum mismatch"
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "ok"


def verify(name: str, full: bool = True, progress: Callable[[int], None] | None = None) -> Status:
    """Check the cached file: present, the right size, and (full=True) the right sha256."""
    entry, p = get(name), path(name)
    if not p.is_file():
        return Status(name, p, "missing", "not pulled yet")
    size = p.stat().st_size
    if size != entry.size:
        return Status(name, p, "wrong size", f"{size:,} bytes, expected {entry.size:,} (truncated or corrupt)")
    if full:
        digest = sha256_file(p, progress)
        if digest != entry.sha256:
            return Status(name, p, "checksum mismatch", f"sha256 {digest}, expected {entry.sha256}")
        write_stamp(p, entry.sha256)  # only a full hash earns the stamp that lets `ensure` skip hashing
    return Status(name, p, "ok")


def stamp_path(p: Path) -> Path:
    """The verified stamp of the cached file `p`."""
    return p.with_name(p.name + ".verified")


def write_stamp(p: Path, sha256: str) -> None:
    """Remember that this exact file (size + mtime) was hashed and matched `sha256`."""
    st = p.stat()
    stamp_path(p).write_text(f"{st.st_size} {st.st_mtime_ns} {sha256}\n")


def recently_verified(name: str) -> bool:
    """Whether the cached file of `name` is unchanged since it was hashed and matched."""
    p = path(name)
    try:
        st = p.stat()
        return stamp_path(p).read_text().split() == [str(st.st_size), str(st.st_mtime_ns), get(name).sha256]
    except OSError:
        return False
