"""Model specs → loaded models. One table maps each spec prefix to its backend's loader."""
from __future__ import annotations

from typing import Callable

from ..errors import ModelSpecError
from .base import Model, Session, Tokenizer


def _load_hf(spec: str, rest: str, **kw) -> Model:
    from .hf_seq2seq import is_encoder_decoder

    if is_encoder_decoder(rest):  # T5, BART, Marian, ...: hf: loads them with the hf-seq2seq backend
        return _load_hf_seq2seq(spec, rest, **kw)
    from .hf import load_hf

    return load_hf(spec, rest, **kw)


def _load_hf_seq2seq(spec: str, rest: str, **kw) -> Model:
    from .hf_seq2seq import load_hf_seq2seq

    return load_hf_seq2seq(spec, rest, **kw)


def _load_remote(spec: str, rest: str, device: str | None = None, **kw) -> Model:
    from .remote import load_remote

    if device not in (None, "auto"):  # the server chose where the model runs
        raise ModelSpecError(f"{spec}: a remote model runs where its server put it; drop device={device!r}")

    return load_remote(spec, rest, **kw)


def _gguf_file(spec: str, rest: str) -> str:
    """The GGUF file a gguf:/hf-gguf: spec names: a path, or a catalog model (pulled if needed)."""
    import os

    from .. import catalog

    if rest in catalog.MODELS and not os.path.exists(rest):
        return str(catalog.ensure(rest, reporter=catalog.RichReporter(), announce=catalog.announce))
    return rest


def _load_gguf(spec: str, rest: str, dtype: str | None = None, **kw) -> Model:
    from .llamacpp import load_llamacpp

    return load_llamacpp(spec, _gguf_file(spec, rest), **kw)


def _load_hf_gguf(spec: str, rest: str, **kw) -> Model:
    from .hf_gguf import load_hf_gguf

    return load_hf_gguf(spec, _gguf_file(spec, rest), **kw)


def _load_ov(spec: str, rest: str, dtype: str | None = None, device: str | None = "auto", **kw) -> Model:
    """ov:NAME (a catalog model: its pure-Q4_0 copy, made into an IR once) or ov:/path/to/IR/folder.
    The tokenizer is the GGUF's own, read by llama.cpp, so it is the gguf: copy's exactly."""
    import os

    from .openvino_ir import catalog_gguf, folder_source, ir_folder, require_openvino

    if device not in (None, "auto", "cpu"):  # the IR is compiled for OpenVINO's CPU plugin
        raise ModelSpecError(f"{spec}: the OpenVINO backend runs on the CPU; drop device={device!r}")
    require_openvino(spec)  # before pulling or converting anything
    from .. import catalog

    if rest in catalog.MODELS and not os.path.exists(rest):
        gguf = catalog_gguf(spec, rest)
        xml = ir_folder(gguf) / "openvino_model.xml"
    else:
        xml, gguf = folder_source(spec, rest)
    from .llamacpp import gguf_tokenizer
    from .openvino import load_openvino_ir

    tokenizer, eos_ids, context = gguf_tokenizer(gguf)
    n_ctx = kw.pop("n_ctx", None)  # as for gguf: a window of n_ctx positions, never past the trained one
    return load_openvino_ir(spec, str(xml), tokenizer, eos_ids, min(context, n_ctx or context), **kw)


# prefix → (loader(spec, rest, **kwargs), one-line help). Backends add themselves here.
LOADERS: dict[str, tuple[Callable[..., Model], str]] = {
    "hf": (_load_hf, "hf:<hub-id-or-folder>   a transformers causal LM"),
    "hf-seq2seq": (_load_hf_seq2seq, "hf-seq2seq:<hub-id-or-folder>   a transformers encoder–decoder model "
                   "(T5, BART, Marian; hf: detects these too)"),
    "gguf": (_load_gguf, "gguf:<file.gguf or catalog name>   llama.cpp (quantized, fast on CPUs)"),
    "hf-gguf": (_load_hf_gguf, "hf-gguf:<file.gguf or catalog name>   transformers dequantizes the GGUF "
                "(cached as safetensors)"),
    "ov": (_load_ov, "ov:<Qwen catalog name or IR folder>   OpenVINO on the CPU (int4 IR made once from the "
           "pure-Q4_0 GGUF; flat block costs)"),
    "remote": (_load_remote, "remote:<http://host:port>#<model>   the big model on a biglittle, vLLM or "
               "llama-cpp-python server"),
}


def spec_forms() -> str:
    from ..catalog import MODELS

    return ("; ".join(help for _, help in LOADERS.values())
            + f"; or a catalog name ({', '.join(MODELS)}), which means gguf:<name>")


def load_model(spec: str, dtype: str = "float32", device: str | None = "auto", **kwargs) -> Model:
    """Load a model from a spec such as "hf:/path/to/folder".

    device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps": where a transformers
    model runs, and for llama.cpp how many layers it offloads ("cpu": none, a GPU: all; an explicit
    `n_gpu_layers=` wins). A device the machine lacks is a ConfigError naming the ones it has.
    Other keyword arguments go to the backend (e.g. `dtype="bfloat16"` for transformers).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(f"a model spec must be a non-empty string; accepted forms: {spec_forms()}")
    from ..catalog import PAIRS, resolve_spec

    if spec in PAIRS:
        raise ModelSpecError(f"{spec!r} is a pair; name one model (small: {PAIRS[spec].small!r}, "
                             f"big: {PAIRS[spec].big!r}) or use biglittle.models.load_pair({spec!r})")
    spec = resolve_spec(spec) or spec
    prefix, sep, rest = spec.partition(":")
    if not sep or prefix not in LOADERS or not rest:
        raise ModelSpecError(f"unknown model spec {spec!r}; accepted forms: {spec_forms()}")
    loader, _ = LOADERS[prefix]
    return loader(spec, rest, dtype=dtype, device=device, **kwargs)


def load_pair(name: str = "qwen-coder", small: str | None = None, big: str | None = None,
              dtype: str = "float32", **kwargs) -> tuple[Model, Model]:
    """Load both models of a catalog pair (pulling them on first use).

    small / big: the backend prefix for each side ("gguf" = llama.cpp, "hf-gguf" = transformers
    dequantized); the default is the pair's fastest measured combination on CPU."""
    from ..catalog import get_pair

    pair = get_pair(name)
    s_backend, b_backend = small or pair.backends[0], big or pair.backends[1]
    return (load_model(f"{s_backend}:{pair.small}", dtype=dtype, **kwargs),
            load_model(f"{b_backend}:{pair.big}", dtype=dtype, **kwargs))


__all__ = ["LOADERS", "Model", "Session", "Tokenizer", "load_model", "load_pair", "spec_forms"]
