"""Sample prompts for tune: a benchmark task's, or a JSONL file's."""
from __future__ import annotations

import json
from pathlib import Path

from ..data import get_task
from ..errors import ConfigError


def default_n(task) -> int:
    """Sample prompts by default: a metric scored per sentence (BLEU, ROUGE, accuracy) varies a lot
    from prompt to prompt, so its interval needs dozens; agreement needs fewer."""
    return 32 if task is not None and task.primary_metric else 16


def task_prompts(name: str, n: int | None = None, seed: int = 0, chat: bool = False):
    """(prompts, references, task) for a benchmark task of biglittle.data ("code", "xsum", ...).
    References are None for tasks without them (code, mtbench). n: default_n(task) when None."""

    task = get_task(name)
    examples = task.load(default_n(task) if n is None else n, seed=seed)
    refs = [e.reference for e in examples]
    return [task.build_prompt(e, chat) for e in examples], (None if None in refs else refs), task


def read_jsonl(path: str | Path) -> list[dict]:
    """The objects of a JSONL file, one per line, each with a "prompt" (text or chat messages)."""
    items = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"cannot read {str(path)!r}: {e}") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            item["prompt"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"{path}:{i}: expected a JSON object with a \"prompt\" key") from None
        items.append(item)
    if not items:
        raise ConfigError(f"{path} holds no prompts")
    return items


def read_prompts(path: str | Path) -> list:
    """Prompts from a JSONL file of {"prompt": ...} lines."""
    return [item["prompt"] for item in read_jsonl(path)]
