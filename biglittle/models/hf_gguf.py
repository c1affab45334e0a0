"""`hf-gguf:<file>`: transformers dequantizes a GGUF into a full-precision model.

Dequantizing takes tens of seconds (25–40 s for a 1.5B model on 2 cores), so the result is
saved once as safetensors (weights, config, tokenizer) in the cache folder and later loads
read that folder (about a second). The cache key is the GGUF's path, size and mtime plus
the dtype, so an edited or replaced file is converted again.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ModelSpecError

log = logging.getLogger("biglittle")


def converted_dir(gguf_path: str, dtype: str) -> Path:
    from ..catalog import cache_dir

    p = Path(gguf_path).resolve()
    st = p.stat()
    key = hashlib.sha256(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir() / "hf-gguf" / f"{p.stem}-{key}-{dtype}"


def convert(gguf_path: str, dtype: str, target: Path) -> Path:
    """Dequantize `gguf_path` with transformers and save it as safetensors into `target`
    (written to a temp folder first, renamed when complete)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .hf import DTYPES

    folder, name = os.path.split(os.path.abspath(gguf_path))
    log.info("dequantizing %s to %s with transformers (once; later loads use the safetensors cache)",
             gguf_path, dtype)
    extra = {}
    try:  # ask for plain dense weights even where packed-GGUF kernels are installed
        from transformers import GgufConfig

        extra["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    try:
        net = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=DTYPES[dtype], **extra)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelSpecError(f"transformers could not load the GGUF {gguf_path!r} ({e})") from e
    # the weights are plain tensors now: a saved quantization config would make transformers
    # try to quantize them again when the folder is loaded
    if hasattr(net.config, "quantization_config"):
        del net.config.quantization_config
    net.hf_quantizer = None
    _copy_eos(net, tok)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        net.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        # conversions of an older version of the same file are dead weight (gigabytes)
        for old in target.parent.glob(f"{Path(gguf_path).stem}-*-{dtype}"):
            if old != target and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _copy_eos(net, tok) -> None:
    """Let generation stop on the chat model's end-of-turn token as well as the GGUF's EOS."""
    ids = set()
    for value in (net.generation_config.eos_token_id, net.config.eos_token_id, tok.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(value)
    for name in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>"):
        tid = tok.convert_tokens_to_ids(name) if name in tok.get_vocab() else None
        if tid is not None:
            ids.add(int(tid))
    if ids:
        net.generation_config.eos_token_id = sorted(ids)


def load_hf_gguf(spec: str, gguf_path: str, dtype: str = "float32", device: str | None = "auto", **kwargs):
    """`device` as for load_hf; the conversion itself runs on the CPU (once), the model then moves."""
    from .device import resolve_device
    from .hf import DTYPES, load_hf

    if dtype not in DTYPES:
        raise ModelSpecError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    resolve_device(device)  # a missing GPU fails before tens of seconds of dequantizing
    path = os.path.expanduser(gguf_path)
    if not os.path.isfile(path):
        raise ModelSpecError(f"{spec}: no such GGUF file {path!r}")
    target = converted_dir(path, dtype)
    if not (target / "config.json").is_file():
        convert(path, dtype, target)
    model = load_hf(spec, str(target), dtype=dtype, device=device, **kwargs)
    return model
