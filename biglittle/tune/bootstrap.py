"""Paired percentile bootstrap over prompts: the intervals tune's quality floor is judged on."""
from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np

CONFIDENCE = 0.95      # of the bootstrap intervals
RESAMPLES = 2000       # bootstrap resamples of the prompts


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """Row r: the prompt indices of resample r, n drawn with replacement
    (`numpy.random.default_rng(seed).integers(0, n, size=(resamples, n))`)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def percentile_interval(values, confidence: float = CONFIDENCE) -> list[float]:
    """[low, high]: the central `confidence` share of the resampled values (percentile method)."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(np.asarray(values, dtype=float), [tail, 100 - tail])
    return [float(low), float(high)]


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n: int, *, resamples: int = RESAMPLES,
                       confidence: float = CONFIDENCE, seed: int = 0) -> list[float]:
    """Percentile bootstrap interval of statistic(indices) over resamples of n prompts. A paired
    difference is a statistic that computes both sides on the same indices; the same seed draws
    the same resamples, so every candidate is compared with big-only on the same prompt sets."""
    return percentile_interval([statistic(ix) for ix in resample_indices(n, resamples, seed)], confidence)


def metric_on_prompts(task, outputs: Sequence[str], references: Sequence[str]) -> Callable[[np.ndarray], float]:
    """f(indices): `task`'s primary metric on the outputs of those prompts (a resample: repeats
    allowed). Corpus metrics are recomputed on the resample, not averaged: corpus BLEU from its
    per-sentence n-gram counts, a metric that is a mean over prompts from per-prompt scores,
    anything else by calling the metric on the resampled lists (slow, but right)."""
    outs, refs = [task.postprocess(o) for o in outputs], list(references)

    def score(idx) -> float:
        return float(task.metric([outs[i] for i in idx], [refs[i] for i in idx])[task.primary_metric])

    checks = [np.arange(len(outs)), np.arange((len(outs) + 1) // 2)]  # the whole set and its first half

    def agrees(fast) -> bool:
        return all(math.isclose(fast(ix), score(ix), rel_tol=1e-9, abs_tol=1e-9) for ix in checks)

    if task.primary_metric == "bleu":
        counts = _bleu_counts(outs, refs)
        fast = lambda ix: _bleu_from_counts(counts[ix].sum(axis=0))  # noqa: E731
        if counts is not None and agrees(fast):
            return fast
    per_prompt = np.array([score([i]) for i in range(len(outs))])
    fast = lambda ix: float(per_prompt[ix].mean())  # noqa: E731
    return fast if agrees(fast) else score


def _bleu_counts(outs: Sequence[str], refs: Sequence[str]) -> np.ndarray | None:
    """Per sentence: sacrebleu's matched and total n-gram counts (n = 1..4), output and reference
    lengths, which sum to the corpus statistics. None without sacrebleu."""
    try:
        from sacrebleu.metrics import BLEU
    except ImportError:
        return None
    bleu = BLEU(effective_order=True)  # only the counts are used; this silences the sentence-level warning
    rows = []
    for o, r in zip(outs, refs):
        s = bleu.sentence_score(o, [r])
        rows.append([*s.counts, *s.totals, s.sys_len, s.ref_len])
    return np.array(rows, dtype=np.int64)


def _bleu_from_counts(total: np.ndarray) -> float:
    from sacrebleu.metrics import BLEU

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(BLEU.compute_bleu([int(x) for x in total[:4]], [int(x) for x in total[4:8]], int(total[8]),
                                       int(total[9]), smooth_method="exp").score)  # corpus_bleu's default
