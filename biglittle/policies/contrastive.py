"""Contrastive decoding (Li et al. 2023, arXiv 2210.15097): pick the token the big model likes
much more than the small one, among the tokens the big model finds plausible.

    score(x) = log p_big(x) − log p_small^τ(x)     for x with p_big(x) ≥ α · max p_big
    next token = argmax score                        (greedy)

p_small^τ is the small model's distribution at temperature τ (`small_temperature`): its
log-probs divided by τ and renormalised, as the paper's "amateur temperature".

It is for quality, not speed: both models run a forward pass for every token, so it is always
slower than the big model alone. It is greedy (the paper's search); sampling is refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..decoding.result import Commit, TokenLogprob
from ..decoding.sampling import greedy_token
from ..decoding.session import TrackedSession
from ..errors import ConfigError
from ..numbers import check_number
from .base import Policy


def contrastive_scores(big_logp: torch.Tensor, small_logp: torch.Tensor, alpha: float,
                       small_temperature: float = 1.0) -> torch.Tensor:
    """Contrastive scores [..., vocab] from raw log-probs [..., vocab]; −inf outside the
    plausible set {x : p_big(x) ≥ α · max p_big}."""
    amateur = torch.log_softmax(small_logp / small_temperature, dim=-1)
    score = big_logp - amateur
    cutoff = big_logp.max(dim=-1, keepdim=True).values + math.log(alpha)
    return score.masked_fill(big_logp < cutoff, -math.inf)


@dataclass(frozen=True)
class Contrastive(Policy):
    """Contrastive decoding: big log-prob minus small log-prob over the big model's plausible set.

    alpha: plausibility cut-off in (0, 1]; only tokens with p_big ≥ alpha · max p_big may be
      chosen (1 keeps only the big model's argmax, i.e. big-model greedy).
    small_temperature: temperature applied to the small model before the difference (> 0;
      the paper's amateur temperature, 0.5 in their best setting, 1 is the plain difference).

    Every new token is reported as the big model's ("big"): the big model's plausible set
    decides what may be written, and the small model only steers away from its own tastes.
    Both models run every step: for quality, not speed. Log-probs (when asked for) are the big
    (expert) model's raw log-probs of the chosen tokens.
    """
    alpha: float = 0.1
    small_temperature: float = 1.0
    name = "contrastive"
    drafts_across_vocabularies = False  # its own loop compares the two models' tokens directly

    def __post_init__(self):
        if not 0 < check_number("alpha", self.alpha) <= 1:
            raise ConfigError(f"alpha must be in (0, 1], got {self.alpha!r}")
        if check_number("small_temperature", self.small_temperature) <= 0:
            raise ConfigError(f"small_temperature must be a finite number > 0, got {self.small_temperature!r}")

    def run(self, small, big, prompt_ids, sampler, max_new_tokens, stats, logprobs: int | None = None):
        """Yield a Commit one token at a time; both models step together. Its log-prob (when
        `logprobs` is an integer) is the big model's raw one, with the big model's top-n."""
        if not sampler.greedy:
            raise ConfigError("contrastive decoding is greedy: use temperature=0")
        big_sess = TrackedSession(big.session(), "big", stats)
        small_sess = TrackedSession(small.session(), "small", stats)
        feed = list(prompt_ids)
        changed = 0  # tokens where the contrast picked something other than the big model's argmax
        stats.finish_reason = "length"
        stats.extra.update(alpha=self.alpha, small_temperature=self.small_temperature)
        for produced in range(1, max_new_tokens + 1):
            big_row = big_sess.extend(feed, keep=1)[0][-1]
            small_row = small_sess.extend(feed, keep=1)[0][-1]
            token = int(greedy_token(contrastive_scores(big_row, small_row, self.alpha, self.small_temperature)))
            changed += int(token != int(greedy_token(big_row)))
            stats.rounds += 1
            stats.new_tokens = produced
            stats.extra["changed_from_big_greedy"] = changed
            lps = None if logprobs is None else [TokenLogprob.from_row(big_row, token, logprobs, "big")]
            yield Commit([token], ["big"], ["big"], lps)
            if token in big.eos_token_ids:
                stats.finish_reason = "eos"
                return
            feed = [token]
