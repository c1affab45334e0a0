"""biglittle: big–little LLM decoding (BiLD, speculative decoding and their family).

    import biglittle as bl
    small = bl.load_model("hf:Qwen/Qwen2.5-Coder-0.5B-Instruct")
    big = bl.load_model("hf:Qwen/Qwen2.5-Coder-1.5B-Instruct")
    r = bl.generate(small, big, "def quicksort(xs):", policy=bl.BiLD(), max_new_tokens=64)
    print(r.text, r.stats.to_dict())
"""
from .decoding.result import Chunk, GenerationResult, Stats
from .errors import BigLittleError, ConfigError, ModelSpecError, PromptError, VocabMismatchError
from .generate import generate, stream
from .models import load_model
from .policies import (BigOnly, BiLD, Cascade, Contrastive, Policy, Router, SmallOnly, Speculative,
                       load_policy_config, parse_policy)

__version__ = "0.1.0"

__all__ = [
    "BigLittleError", "BigOnly", "BiLD", "Chunk", "ConfigError", "GenerationResult", "ModelSpecError",
    "Policy", "PromptError", "SmallOnly", "Speculative", "Stats", "VocabMismatchError", "generate",
    "load_model", "parse_policy", "stream",
    "Cascade", "Contrastive", "Router", "load_policy_config",
]
