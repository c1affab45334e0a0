"""Where ov: models come from (issue 28, item 2): the pure-Q4_0 catalog copies, the IR folder made
once in the cache with a checked manifest, and the ov: spec's errors. The fast tests need no
OpenVINO (its modules are faked where a spec gets that far); the slow ones run the real reader."""
from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

import biglittle as bl
from biglittle import catalog
from biglittle.catalog import convert
from biglittle.errors import ModelSpecError
from biglittle.models import openvino_ir, spec_forms

gguf = pytest.importorskip("gguf")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("BIGLITTLE_CACHE", str(root))
    return root


@pytest.fixture
def fake_openvino(monkeypatch):
    """Importable stand-ins for openvino and openvino_genai: the spec's checks run without them."""
    for name in ("openvino", "openvino_genai"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))


def no_openvino(monkeypatch) -> None:
    for name in ("openvino", "openvino_genai"):
        monkeypatch.setitem(sys.modules, name, None)  # `import openvino` raises ImportError


# ---------------------------------------------------------------- the pure-Q4_0 catalog copies


def test_q4_0_entries_are_pure_copies_of_the_qwen_models():
    for size in ("0.5b", "1.5b"):
        e = catalog.get(f"qwen2.5-coder-{size}-q4_0")
        assert (e.derived_from, e.ftype, e.pure, e.parts) == (f"qwen2.5-coder-{size}", "Q4_0", True, ())
        assert e.tokenizer == catalog.get(e.derived_from).tokenizer == "qwen2.5"
        assert e.source.startswith(f"made here from qwen2.5-coder-{size} by llama.cpp's quantize to pure Q4_0")
        assert "pure: every tensor" in catalog.fetch.origin(e)
    assert catalog.get("qwen2.5-coder-0.5b-q4_0").size == 360_662_912
    assert catalog.get("qwen2.5-coder-1.5b-q4_0").size == 1_006_060_608


def test_models_list_shows_where_the_q4_0_copies_come_from(cache):
    from biglittle.cli import app

    r = CliRunner().invoke(app, ["models", "list"], env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if "qwen2.5-coder-0.5b-q4_0" in ln)
    assert "made here from qwen2.5-coder-0.5b" in line


def test_pure_conversion_makes_every_matrix_q4_0(tmp_path):
    """The `pure` flag reaches llama.cpp through the child process: the output layer and the
    embeddings are Q4_0 too (a mixed Q4_0 keeps the output layer at higher precision)."""
    from test_bf16 import write_tiny_gguf

    src, dst = tmp_path / "tiny-q8.gguf", tmp_path / "tiny-q4_0.gguf"
    write_tiny_gguf(src)
    code, log = convert.run(str(src), str(dst), "Q4_0", lambda done: None, pure=True)
    assert code == 0, log
    types_ = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(dst)).tensors}
    assert {types_[n] for n in types_ if not n.endswith("norm.weight")} == {"Q4_0"}
    assert types_["output_norm.weight"] == "F32"


# ---------------------------------------------------------------- the ov: spec's errors


@pytest.mark.parametrize("spec", ["ov:qwen2.5-coder-0.5b", "ov:/some/ir/folder"])
def test_ov_without_openvino_names_the_extra(cache, monkeypatch, spec):
    no_openvino(monkeypatch)
    with pytest.raises(ModelSpecError, match=r"pip install 'biglittle\[openvino\]'"):
        bl.load_model(spec)
    assert not cache.exists()  # refused before pulling or converting anything


def test_ov_is_among_the_spec_forms():
    assert "ov:<Qwen catalog name or IR folder>" in spec_forms()


def test_ov_runs_on_the_cpu_only(fake_openvino):
    with pytest.raises(ModelSpecError, match="runs on the CPU; drop device='cuda'"):
        bl.load_model("ov:qwen2.5-coder-0.5b", device="cuda")


def test_ov_of_a_model_with_no_q4_0_copy_says_which_work(cache, fake_openvino):
    with pytest.raises(ModelSpecError, match="'smollm2-135m' has no pure-Q4_0 copy.*qwen2.5-coder-0.5b, "
                                             "qwen2.5-coder-1.5b"):
        bl.load_model("ov:smollm2-135m")
    assert not cache.exists()


def test_ov_folder_errors_say_what_is_missing(tmp_path, fake_openvino):
    with pytest.raises(ModelSpecError, match="no such folder"):
        bl.load_model(f"ov:{tmp_path / 'nope'}")
    with pytest.raises(ModelSpecError, match="has no openvino_model.xml"):
        bl.load_model(f"ov:{tmp_path}")
    (tmp_path / "openvino_model.xml").write_text("<net/>")
    with pytest.raises(ModelSpecError, match="no readable biglittle.json naming its GGUF"):
        bl.load_model(f"ov:{tmp_path}")
    (tmp_path / "biglittle.json").write_text(json.dumps({"gguf": str(tmp_path / "gone.gguf")}))
    with pytest.raises(ModelSpecError, match="the GGUF that biglittle.json names for the tokenizer is missing"):
        bl.load_model(f"ov:{tmp_path}")


# ---------------------------------------------------------------- the IR folder (the reader faked)


def fake_reader(monkeypatch, calls: list, interrupt: bool = False) -> None:
    """Replace the child process by one that writes what openvino_genai would (or is interrupted)."""
    def run_child(gguf_path: str, out: Path) -> None:
        calls.append(gguf_path)
        (out / "openvino_model.xml").write_text("<net/>")
        if interrupt:
            raise KeyboardInterrupt
        (out / "openvino_model.bin").write_bytes(b"\x01" * 1000)

    monkeypatch.setattr(openvino_ir, "_run_child", run_child)


def test_ir_folder_is_built_once_with_a_manifest(cache, tmp_path, monkeypatch):
    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF" + bytes(100))
    calls: list = []
    fake_reader(monkeypatch, calls)
    folder = openvino_ir.ir_folder(str(src))
    assert folder.parent == cache / "openvino" and folder.name.startswith("m-")
    manifest = json.loads((folder / "biglittle.json").read_text())
    assert manifest["gguf"] == str(src.resolve())
    assert manifest["sha256"]["openvino_model.bin"] == hashlib.sha256(b"\x01" * 1000).hexdigest()
    assert openvino_ir.ir_folder(str(src)) == folder and len(calls) == 1  # reused, not rebuilt
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]    # no temp folder left


def test_a_corrupt_ir_is_rebuilt_with_a_log_line(cache, tmp_path, monkeypatch, caplog):
    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF" + bytes(100))
    calls: list = []
    fake_reader(monkeypatch, calls)
    folder = openvino_ir.ir_folder(str(src))
    (folder / "openvino_model.bin").write_bytes(b"\x02" * 1000)  # same size, other bytes
    with caplog.at_level("WARNING", logger="biglittle"):
        assert openvino_ir.ir_folder(str(src)) == folder
    assert len(calls) == 2 and "sha256 differs from its manifest's" in caplog.text
    assert (folder / "openvino_model.bin").read_bytes() == b"\x01" * 1000


def test_an_interrupted_build_leaves_nothing(cache, tmp_path, monkeypatch):
    src = tmp_path / "m.gguf"
    src.write_bytes(b"GGUF" + bytes(100))
    fake_reader(monkeypatch, [], interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        openvino_ir.ir_folder(str(src))
    assert list((cache / "openvino").iterdir()) == []


def test_a_failed_reader_says_why_and_leaves_nothing(cache, tmp_path):
    pytest.importorskip("openvino_genai")
    src = tmp_path / "bad.gguf"
    src.write_bytes(b"GGUF" + bytes(100))  # not a model OpenVINO GenAI can read
    with pytest.raises(ModelSpecError, match="OpenVINO GenAI could not convert .*bad.gguf"):
        openvino_ir.ir_folder(str(src))
    assert list((cache / "openvino").iterdir()) == []


# ---------------------------------------------------------------- real models (slow)


@pytest.mark.slow
def test_the_recorded_q4_0_sha256_is_what_this_llama_cpp_makes(tmp_path, monkeypatch):
    """The real pure-Q4_0 conversion of the Q4_K_M 0.5B matches the catalog's size and sha256."""
    real = catalog.ensure("qwen2.5-coder-0.5b")
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path))
    (tmp_path / "models").mkdir()
    catalog.path("qwen2.5-coder-0.5b").symlink_to(real)  # the pulled source, not fetched again
    assert catalog.verify("qwen2.5-coder-0.5b-q4_0").state == "missing"
    path = catalog.ensure("qwen2.5-coder-0.5b-q4_0")
    assert catalog.verify("qwen2.5-coder-0.5b-q4_0").ok and path.stat().st_size == 360_662_912


@pytest.mark.slow
def test_the_real_ir_is_built_once_and_a_corrupt_bin_rebuilt(tmp_path, monkeypatch, caplog):
    pytest.importorskip("openvino_genai")
    gguf_path = catalog.ensure("qwen2.5-coder-0.5b-q4_0")
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path))
    folder = openvino_ir.ir_folder(str(gguf_path))
    assert {"openvino_model.xml", "openvino_model.bin", "biglittle.json"} <= {p.name for p in folder.iterdir()}
    assert not any(p.suffix == ".gguf" for p in folder.iterdir())  # the reader's symlink is gone
    mtime = (folder / "openvino_model.bin").stat().st_mtime_ns
    assert openvino_ir.ir_folder(str(gguf_path)) == folder
    assert (folder / "openvino_model.bin").stat().st_mtime_ns == mtime  # reused
    with open(folder / "openvino_model.bin", "r+b") as f:
        f.seek(1000)
        f.write(b"\xff" * 16)
    with caplog.at_level("WARNING", logger="biglittle"):
        assert openvino_ir.ir_folder(str(gguf_path)) == folder
    assert "rebuilding it" in caplog.text and openvino_ir._check(folder) is None


@pytest.mark.slow
def test_ov_scores_like_gguf_and_shares_its_vocabulary():
    pytest.importorskip("openvino_genai")
    import torch

    from biglittle.generate import check_pair

    ov = bl.load_model("ov:qwen2.5-coder-0.5b", threads=2)
    ref = bl.load_model("gguf:qwen2.5-coder-0.5b", n_ctx=512, threads=2)
    assert check_pair(ref, ov)  # one tokenizer: the small llama.cpp model drafts for the ov one
    ids = ref.tokenizer.encode("def fibonacci(n):\n    if n < 2:\n        return n\n    return")
    assert ov.tokenizer.encode("def fibonacci(n):") == ref.tokenizer.encode("def fibonacci(n):")
    a = ov.session().extend(ids, keep=6)
    b = ref.session().extend(ids, keep=6)
    assert torch.equal(a.argmax(-1), b.argmax(-1))
