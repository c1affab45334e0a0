"""The quality floor: a candidate's difference to big-only, with paired bootstrap intervals."""
from __future__ import annotations

import math

import numpy as np

from ..tokens import agreement
from .bootstrap import metric_on_prompts, percentile_interval, resample_indices
from .candidates import Candidate, PromptRun


class Judge:
    """Quality of a candidate's runs against big-only's, with paired bootstrap intervals."""

    def __init__(self, big_runs: list[PromptRun], task, references, confidence: float, resamples: int, seed: int):
        self.big_runs, self.task, self.refs, self.confidence = big_runs, task, references, confidence
        self.n = len(big_runs)
        self.index = resample_indices(self.n, resamples, seed)
        self.metric_values: dict[tuple, np.ndarray] = {}  # outputs -> metric on every resample
        self.base_metric = self._metric([r.text or "" for r in big_runs]) if self.has_metric else None

    @property
    def has_metric(self) -> bool:
        return self.task is not None and bool(self.task.primary_metric) and self.refs is not None

    def _metric(self, texts: list[str]) -> tuple[float, np.ndarray]:
        """(metric on all prompts, metric on every resample), once per distinct set of outputs."""
        key = tuple(texts)
        if key not in self.metric_values:
            f = metric_on_prompts(self.task, texts, self.refs)
            self.metric_values[key] = (f(np.arange(self.n)), np.array([f(ix) for ix in self.index]))
        return self.metric_values[key]

    def judge(self, c: Candidate, runs: list[PromptRun]) -> None:
        agree = np.array([agreement(r.tokens, b.tokens)["agreement"] for r, b in zip(runs, self.big_runs)])
        c.agreement = float(agree.mean())
        c.agreement_delta = c.agreement - 1.0
        c.agreement_delta_ci = percentile_interval(agree[self.index].mean(axis=1) - 1.0, self.confidence)
        if self.has_metric:
            (base, base_b), (mine, mine_b) = self.base_metric, self._metric([r.text or "" for r in runs])
            c.metric, c.metric_delta = mine, mine - base
            c.metric_delta_ci = percentile_interval(mine_b - base_b, self.confidence)


def apply_floor(c: Candidate, floor: float, on_agreement: bool, n: int) -> None:
    """Meets the floor when the interval's low end does (mean agreement, or the metric's difference
    to big-only). Where only the point estimate does, the prompts a decision would need: the
    interval narrows as 1/√n, so its lower half-width h reaches the margin m = point − floor at
    about n·(h/m)² prompts."""
    if on_agreement:
        point, low = c.agreement, c.agreement_delta_ci[0] + 1.0
    else:
        point, low = c.metric_delta, c.metric_delta_ci[0]
    c.meets_floor = low >= floor - 1e-9
    margin, half = point - floor, point - low
    if not c.meets_floor and margin > 1e-9:
        c.prompts_needed = math.ceil(n * (half / margin) ** 2)
