"""Model specs → loaded models. One table maps each spec prefix to its backend's loader."""
from __future__ import annotations

from typing import Callable

from ..errors import ModelSpecError
from .base import Model, Session, Tokenizer


def _load_hf(spec: str, rest: str, **kw) -> Model:
    from .hf import load_hf

    return load_hf(spec, rest, **kw)


# prefix → (loader(spec, rest, **kwargs), one-line help). Backends add themselves here.
LOADERS: dict[str, tuple[Callable[..., Model], str]] = {
    "hf": (_load_hf, "hf:<hub-id-or-folder>   a transformers causal LM"),
}


def spec_forms() -> str:
    return "; ".join(help for _, help in LOADERS.values())


def load_model(spec: str, dtype: str = "float32", **kwargs) -> Model:
    """Load a model from a spec such as "hf:/path/to/folder".

    Keyword arguments go to the backend (e.g. `dtype="bfloat16"` for transformers).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(f"a model spec must be a non-empty string; accepted forms: {spec_forms()}")
    prefix, sep, rest = spec.partition(":")
    if not sep or prefix not in LOADERS or not rest:
        raise ModelSpecError(f"unknown model spec {spec!r}; accepted forms: {spec_forms()}")
    loader, _ = LOADERS[prefix]
    return loader(spec, rest, dtype=dtype, **kwargs)


__all__ = ["LOADERS", "Model", "Session", "Tokenizer", "load_model", "spec_forms"]
