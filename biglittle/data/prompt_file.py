"""Your own prompts as a benchmark task: `biglittle bench --prompts FILE.jsonl`.

One JSON object per line: {"prompt": "text"} or {"messages": [{"role": ..., "content": ...}, ...]},
optionally with "reference" (the answer you expect) and "id". With references on every line the
task scores BLEU/chrF and ROUGE against them; without, the benchmark reports agreement with
big-only, like the code tasks.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import metrics
from .cache import DataError
from .tasks import Example, Task, pick_examples


class PromptFileTask(Task):
    needs_references = True
    max_new_tokens = 256

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = f"prompts-{self.path.stem}"
        self.description = f"your prompts from {self.path}"
        self.items = read_prompt_file(self.path)
        self.primary_metric = "bleu" if all(it.get("reference") is not None for it in self.items) else None

    def load(self, n: int | None = None, seed: int = 0) -> list[Example]:
        chosen = pick_examples(list(enumerate(self.items)), n, seed)
        return [self._example(i, item) for i, item in chosen]

    def _example(self, i: int, item: dict) -> Example:
        messages = item.get("messages") or [{"role": "user", "content": item["prompt"]}]
        text = item.get("prompt") or messages[-1]["content"]
        return Example(id=str(item.get("id", i)), source=text, reference=item.get("reference"), prompt=text,
                       messages=messages, meta={"plain": "prompt" in item})

    def build_prompt(self, example: Example, chat: bool):
        if chat:
            return example.messages
        if not example.meta["plain"]:
            raise DataError(f"{self.path}: example {example.id} has only chat messages; run with --chat")
        return example.prompt

    def metric(self, outputs, references):
        if self.primary_metric is None:
            return {}
        return {**metrics.bleu_chrf(outputs, references), **metrics.rouge(outputs, references)}


def read_prompt_file(path: Path) -> list[dict]:
    """The checked lines of a prompts file; a bad line is a DataError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None
    except UnicodeDecodeError as e:
        line = text_line_of(path.read_bytes(), e.start)
        raise DataError(f"{path}:{line}: not UTF-8 text ({e.reason})") from None
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{number}: not JSON ({e.msg})") from None
        if not _valid(item):
            raise DataError(f'{path}:{number}: expected {{"prompt": "text"}} or {{"messages": [{{"role", "content"}}, …]}}, '
                            'with an optional "reference"')
        items.append(item)
    if not items:
        raise DataError(f"{path} holds no prompts")
    return items


def _valid(item) -> bool:
    if not isinstance(item, dict) or not (isinstance(item.get("prompt"), str) or item.get("messages")):
        return False
    messages = item.get("messages")
    ok_messages = messages is None or (isinstance(messages, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages))
    return ok_messages and (item.get("reference") is None or isinstance(item["reference"], str))


def text_line_of(data: bytes, offset: int) -> int:
    """The 1-based line number of a byte offset."""
    return data.count(b"\n", 0, offset) + 1
