"""biglittle: big–little LLM decoding (BiLD, speculative decoding and their family).

    import biglittle as bl
    small = bl.load_model("hf:Qwen/Qwen2.5-Coder-0.5B-Instruct")
    big = bl.load_model("hf:Qwen/Qwen2.5-Coder-1.5B-Instruct")
    r = bl.generate(small, big, "def quicksort(xs):", policy=bl.BiLD(), max_new_tokens=64)
    print(r.text, r.stats.to_dict())
"""
import importlib as _importlib
import sys as _sys
import types as _types
from typing import TYPE_CHECKING

from .errors import BigLittleError, ConfigError, ModelSpecError, PromptError, VocabMismatchError

# The other names load on first use: importing torch takes seconds, and the command line must be
# able to catch Ctrl-C from its first moment (it installs its handler before anything heavy).
_LAZY = {"Chunk": "decoding.result", "GenerationResult": "decoding.result", "Stats": "decoding.result",
         "generate": "generate", "stream": "generate", "load_model": "models",
         **{name: "policies" for name in ("BigOnly", "BiLD", "Cascade", "Contrastive", "Policy", "Router",
                                          "SmallOnly", "Speculative", "load_policy_config", "parse_policy")}}

if TYPE_CHECKING:  # what type checkers (and readers of the import graph) see
    from .decoding.result import Chunk, GenerationResult, Stats
    from .generate import generate, stream
    from .models import load_model
    from .policies import (BigOnly, BiLD, Cascade, Contrastive, Policy, Router, SmallOnly, Speculative,
                           load_policy_config, parse_policy)


class _Package(_types.ModuleType):
    def __getattr__(self, name):
        if name not in _LAZY:
            raise AttributeError(f"module 'biglittle' has no attribute {name!r}")
        value = getattr(_importlib.import_module(f".{_LAZY[name]}", __name__), name)
        _types.ModuleType.__setattr__(self, name, value)
        return value

    def __setattr__(self, name, value):
        # importing the submodule biglittle.generate binds it as the attribute `generate`;
        # bl.generate stays the function, as it always was
        if name in _LAZY and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(_LAZY))


_sys.modules[__name__].__class__ = _Package

__version__ = "0.1.0"

__all__ = [
    "BigLittleError", "BigOnly", "BiLD", "Chunk", "ConfigError", "GenerationResult", "ModelSpecError",
    "Policy", "PromptError", "SmallOnly", "Speculative", "Stats", "VocabMismatchError", "generate",
    "load_model", "parse_policy", "stream",
    "Cascade", "Contrastive", "Router", "load_policy_config",
]
