"""Turning log-probs into the distribution we draw from, and drawing from it.

Both models' distributions go through the same `Sampler`, so temperature, top-k and top-p
act identically on the small and the big model (speculative sampling needs that to be
lossless). With temperature 0 (greedy) the distribution is the plain softmax and
`choose` takes the argmax of the log-probs (`greedy_token`); top-k and top-p apply only
when sampling, as in HF `generate`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ConfigError


@dataclass
class Sampler:
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None     # None: fresh randomness each time; an int reproduces the draws

    def __post_init__(self):
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature >= 0):
            raise ConfigError(f"temperature must be a finite number ≥ 0 (0 = greedy), got {self.temperature!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ConfigError(f"top_k must be an integer ≥ 1 or None, got {self.top_k!r}")
        if self.top_p is not None and not (0 < self.top_p <= 1):
            raise ConfigError(f"top_p must be in (0, 1] or None, got {self.top_p!r}")
        # our own generator, so sampling never reads or reseeds torch's global RNG (the caller's)
        self.generator = torch.Generator()
        if self.seed is None:
            self.generator.seed()  # fresh entropy, this generator only
        else:
            self.generator.manual_seed(self.seed)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def probs(self, logp: torch.Tensor) -> torch.Tensor:
        """The processed distribution for log-probs [..., vocab]."""
        if self.greedy:
            return logp.exp()
        logits = logp / self.temperature
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, -math.inf)
        if self.top_p is not None and self.top_p < 1:
            logits = _top_p_mask(logits, self.top_p)
        return torch.softmax(logits, dim=-1)

    def choose(self, logp: torch.Tensor, probs: torch.Tensor | None = None) -> torch.Tensor:
        """One token per row of log-probs [..., vocab]: the greedy rule, or a draw from the
        processed distribution (`probs`, when the caller has already computed it)."""
        if self.greedy:
            return greedy_token(logp)
        return self.draw(self.probs(logp) if probs is None else probs)

    def draw(self, probs: torch.Tensor) -> torch.Tensor:
        """One token drawn from each row of probs [..., vocab]."""
        flat = probs.reshape(-1, probs.shape[-1])
        return torch.multinomial(flat, 1, generator=self.generator).reshape(probs.shape[:-1])

    def uniform(self, shape) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator)


def greedy_token(logp: torch.Tensor) -> torch.Tensor:
    """The one greedy rule, used by every path (drafts, big-only steps, verification, corrections):
    the argmax of the log-probs, the first index on an exact tie. Taking it on exp(log-probs)
    instead can break a near-tie differently: float32 exp maps log-probs one ulp apart to one value."""
    return logp.argmax(dim=-1)


def _top_p_mask(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (always at least one)."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    drop_sorted = (cum - torch.softmax(sorted_logits, dim=-1)) >= top_p  # mass before this token
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, -math.inf)
