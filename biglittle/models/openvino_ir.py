"""Where an `ov:` model's weights come from: an OpenVINO IR folder made once from a GGUF.

OpenVINO GenAI reads a pure-Q4_0 GGUF (catalog: `<name>-q4_0`, made by llama.cpp's quantize)
into an int4 model; `LLMPipeline(gguf, "CPU", enable_save_ov_model=True)` then writes
openvino_model.xml/.bin (and tokenizer IRs) beside the file it read. So the build:

1. runs in a child process (`python -m biglittle.models.openvino_ir GGUF OUT`), so a Ctrl-C or
   a crash in the reader stops the child and never leaves it half-done in the user's process,
2. reads a symlink to the GGUF inside a fresh temp folder next to the cache folder, so what it
   writes lands there and not beside the user's (or the catalog's) file,
3. writes biglittle.json (the source GGUF, the sha256 of the .xml and .bin), and only then
   renames the temp folder into place. A reused folder's checksums are checked; a mismatch rebuilds it.

The cache key is the GGUF's path, size and mtime, as for hf-gguf: an edited or replaced file is
converted again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import ModelSpecError

log = logging.getLogger("biglittle")

MANIFEST = "biglittle.json"
MODEL_FILES = ("openvino_model.xml", "openvino_model.bin")
EXTRA = "pip install 'biglittle[openvino]'"


def require_openvino(spec: str) -> None:
    """A clear error, naming the extra to install, where OpenVINO or its GenAI reader is missing."""
    try:
        import openvino  # noqa: F401
        import openvino_genai  # noqa: F401
    except ImportError as e:
        raise ModelSpecError(f"{spec}: the OpenVINO backend needs openvino and openvino-genai ({EXTRA})") from e
    try:  # the GGUF is made and its tokenizer read by llama.cpp
        import llama_cpp  # noqa: F401
    except ImportError as e:
        raise ModelSpecError(f"{spec}: the OpenVINO backend reads its tokenizer with llama-cpp-python "
                             "(pip install 'biglittle[llama]')") from e


def catalog_gguf(spec: str, name: str) -> str:
    """The pure-Q4_0 GGUF behind catalog model `name` (the model itself, or its `-q4_0` copy),
    pulled and made if needed; a ModelSpecError for a model with no such copy."""
    from .. import catalog

    entry = catalog.get(name)
    if not (entry.ftype == "Q4_0" and entry.pure):
        copies = [e for e in catalog.MODELS.values() if e.derived_from == name and e.ftype == "Q4_0" and e.pure]
        if not copies:
            usable = [e.derived_from for e in catalog.MODELS.values() if e.ftype == "Q4_0" and e.pure]
            raise ModelSpecError(f"{spec}: {name!r} has no pure-Q4_0 copy for OpenVINO in the catalog; "
                                 f"ov: works with {', '.join(usable)} (or ov:/path/to/an/IR/folder)")
        entry = copies[0]
    return str(catalog.ensure(entry.name, reporter=catalog.RichReporter(), announce=catalog.announce))


def folder_source(spec: str, folder: str) -> tuple[Path, str]:
    """An IR folder's model file and the GGUF its manifest names (for the tokenizer); a
    ModelSpecError saying what is missing otherwise."""
    d = Path(os.path.expanduser(folder))
    if not d.is_dir():
        raise ModelSpecError(f"{spec}: no such folder {str(d)!r} (ov: takes a catalog name or an IR folder)")
    xml = d / MODEL_FILES[0]
    if not xml.is_file():
        raise ModelSpecError(f"{spec}: {str(d)!r} has no {MODEL_FILES[0]} (not an OpenVINO IR folder)")
    try:
        gguf = json.loads((d / MANIFEST).read_text())["gguf"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelSpecError(f"{spec}: {str(d)!r} has no readable {MANIFEST} naming its GGUF "
                             f'({{"gguf": "/path/to/model.gguf"}}), which holds the tokenizer ({e})') from e
    if not os.path.isfile(gguf):
        raise ModelSpecError(f"{spec}: the GGUF that {MANIFEST} names for the tokenizer is missing: {gguf!r}")
    return xml, gguf


def ir_folder(gguf_path: str) -> Path:
    """The IR folder of `gguf_path` in the cache, built first if it is missing or fails its checksums."""
    target = _cache_folder(gguf_path)
    if target.is_dir():
        problem = _check(target)
        if problem is None:
            return target
        log.warning("the OpenVINO IR in %s %s; rebuilding it", target, problem)
    return _build(gguf_path, target)


def _cache_folder(gguf_path: str) -> Path:
    from ..catalog import cache_dir

    p = Path(gguf_path).resolve()
    st = p.stat()
    key = hashlib.sha256(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir() / "openvino" / f"{p.stem}-{key}"


def _sha256(path: Path) -> str:
    from ..files import sha256_file

    return sha256_file(path)


def _check(folder: Path) -> str | None:
    """None if the folder's model files match its manifest; else what is wrong, for the log line."""
    try:
        recorded = json.loads((folder / MANIFEST).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"has no readable {MANIFEST}"
    for name in MODEL_FILES:
        if not (folder / name).is_file():
            return f"lacks {name}"
        if _sha256(folder / name) != recorded.get(name):
            return f"has a {name} whose sha256 differs from its manifest's (corrupt or changed)"
    return None


def _build(gguf_path: str, target: Path) -> Path:
    """Make the IR in a child process into a temp folder beside `target`, write the manifest, and
    rename the folder into place; on any failure (an interrupt included) nothing is left behind."""
    source = str(Path(gguf_path).resolve())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the IR is an ordinary cache folder
    log.info("converting %s to an OpenVINO IR (once; later loads use %s)", gguf_path, target)
    try:
        _run_child(source, tmp)
        manifest = {"gguf": source, "sha256": {name: _sha256(tmp / name) for name in MODEL_FILES}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if target.exists():  # a corrupt folder being rebuilt
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)
        except OSError:  # another process put its build there first: use it if it is sound
            if _check(target) is not None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _run_child(gguf: str, out: Path) -> None:
    """`python -m biglittle.models.openvino_ir GGUF OUT`; a ModelSpecError with the tail of its
    output if it fails. The child is killed if this process is interrupted while it runs."""
    cmd = [sys.executable, "-m", "biglittle.models.openvino_ir", gguf, str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    try:
        output, _ = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise ModelSpecError(f"OpenVINO GenAI could not convert {gguf!r} to an IR (exit {proc.returncode}):\n{tail}")


def convert(gguf: str, out: str) -> None:
    """In the child: read a symlink to `gguf` placed in `out`, so the IR is written into `out`."""
    import openvino_genai

    link = Path(out) / Path(gguf).name
    link.symlink_to(gguf)
    try:
        openvino_genai.LLMPipeline(str(link), "CPU", enable_save_ov_model=True)
    finally:
        link.unlink()
    missing = [name for name in MODEL_FILES if not (Path(out) / name).is_file()]
    if missing:
        raise SystemExit(f"openvino_genai wrote no {', '.join(missing)} in {out}")


if __name__ == "__main__":
    convert(sys.argv[1], sys.argv[2])
