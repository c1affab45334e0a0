"""Converting a GGUF file to another llama.cpp file type (e.g. BF16) with llama.cpp's own quantize.

The conversion runs in a child process (`python -m biglittle.catalog.convert SRC DST FTYPE [pure]`):
llama.cpp prints its progress ("[  12/ 291] blk.0.attn_k.weight ...") from C to stderr, which
the parent can only read as the child's output; and a Ctrl-C or an error kills the child, never
leaving llama.cpp half-way through inside the user's process.
"""
from __future__ import annotations

import re
import struct
import subprocess
import sys
from typing import Callable

PROGRESS = re.compile(r"^\[\s*(\d+)/\s*\d+\]")  # llama.cpp's line per tensor: [  i/ n]


def tensor_count(path: str) -> int | None:
    """How many tensors a GGUF file holds (read from its header: magic, version, tensor count), so
    a progress bar can show its total before llama.cpp has loaded the file; None if not a GGUF."""
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) < 16 or head[:4] != b"GGUF":
        return None
    return struct.unpack("<Q", head[8:16])[0]


def quantize(src: str, dst: str, ftype: str, pure: bool = False) -> int:
    """Convert in this process; llama.cpp's return code (0: done). Requantizing is allowed, since
    the catalog's sources are already quantized (the result has their quality, at ftype's size).
    pure: every tensor in ftype, the output layer and embeddings too (llama.cpp otherwise keeps
    some at a higher precision), which is the form OpenVINO GenAI's GGUF reader turns into int4."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.allow_requantize = True
    params.pure = pure
    return llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)


def run(src: str, dst: str, ftype: str, progress: Callable[[int], None], pure: bool = False) -> tuple[int, str]:
    """Convert src into dst in a child process; `progress(done)` is told how many tensors are
    written, as each one is. Returns the exit code and the tail of llama.cpp's log (for an error message)."""
    cmd = [sys.executable, "-m", "biglittle.catalog.convert", src, dst, ftype, *(["pure"] if pure else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
    log: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            log = (log + [line])[-15:]
            if m := PROGRESS.match(line):
                progress(int(m.group(1)))
        return proc.wait(), "".join(log).strip()
    finally:
        if proc.poll() is None:  # interrupted (Ctrl-C, an error in progress): stop the child now
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    sys.exit(1 if quantize(*sys.argv[1:4], pure=sys.argv[4:5] == ["pure"]) else 0)
