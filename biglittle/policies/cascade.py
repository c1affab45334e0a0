"""Query-level cascades (FrugalGPT; "when to trust the teacher"; confidence-tuned cascades).

The small model answers the whole request; a scorer rates the answer; the answer is kept when
its score is at least `threshold`, otherwise the big model answers from scratch:

    answer = small(prompt)
    score  = scorer(prompt, answer)          # a mean or min token log-prob, ≤ 0
    return answer if score ≥ threshold else big(prompt)

Scorers:
  small-confidence  the small model's own log-probs of the tokens it wrote (free: they come
                    out of the generation itself)
  big-score         the big model's log-probs of the small answer, in ONE forward pass over
                    prompt + answer (far cheaper than the big model writing the answer)
`reduce` turns per-token log-probs into one score: "mean" or "min".

threshold = −inf always keeps the small answer; +inf always escalates (then the small model
is not run at all). Nothing is yielded before the decision, so a stream never shows an answer
that is then thrown away. The small model's work on a discarded answer still counts in
small_calls / small_sess. stats.extra records who answered and why. Log-probs (when asked for)
are those of the model that wrote the answer: the small model's for a kept small answer, the
big model's once the cascade has escalated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from ..decoding.result import Commit, TokenLogprob
from ..decoding.session import TrackedSession
from ..errors import ConfigError, RemoteError
from ..numbers import from_json_number, json_number
from .base import Policy

SCORERS = ("small-confidence", "big-score")
REDUCES = ("mean", "min")


def reduce_logps(values: Sequence[float], reduce: str) -> float:
    """One score from per-token log-probs: their mean or their min."""
    if not values:
        raise ConfigError("cannot score an empty answer")
    return sum(values) / len(values) if reduce == "mean" else min(values)


def write_alone(tracked: TrackedSession, feed: list[int], sampler, max_new_tokens: int, eos,
                first_row: torch.Tensor | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """One model writes on its own: yield (token, the raw log-prob row [vocab] it was picked from)
    until EOS or the budget (row[token] is the token's log-prob; reduce the row at once, not keep it).

    feed: the tokens the session still has to see before the first new token (the prompt, for
    a fresh session). first_row: the distribution of the first new token, if a caller already
    has it (then `feed` must already be in the session). Picks tokens exactly as the shared
    loop's SmallOnly / BigOnly do, so greedy output (and a seeded draw) is the same."""
    row = first_row
    for _ in range(max_new_tokens):
        if row is None:
            row = tracked.extend(feed, keep=1)[0][-1]
        token = int(sampler.choose(row))
        yield token, row
        if token in eos:
            return
        feed, row = [token], None


def answer_logps(tracked: TrackedSession, prompt_ids: Sequence[int], answer: Sequence[int]) -> list[float]:
    """The model's log-prob of each token of `answer` after `prompt_ids`, in one forward pass."""
    seq = list(prompt_ids) + list(answer)
    feed = tracked.sync(seq[:-1], min_feed=len(answer))
    logp = tracked.extend(feed, keep=len(answer))[0]
    return logp.gather(1, torch.tensor(list(answer), dtype=torch.long)[:, None])[:, 0].tolist()


@dataclass(frozen=True)
class Cascade(Policy):
    """Small model answers; keep the answer if its score ≥ threshold, else the big model answers.

    scorer: "small-confidence" (the small model's own token log-probs) or "big-score" (the big
      model scores the small answer in one forward pass).
    threshold: on the reduced log-prob (≤ 0); −inf always keeps the small answer, +inf always
      escalates. Calibrate it on a dev set (`biglittle tune` does).
    reduce: "mean" or "min" token log-prob.
    """
    scorer: str = "small-confidence"
    threshold: float = -1.0
    reduce: str = "mean"
    name = "cascade"
    drafts_across_vocabularies = False  # its own loop compares the two models' tokens directly

    def __post_init__(self):
        if self.scorer not in SCORERS:
            raise ConfigError(f"scorer must be one of {', '.join(SCORERS)}, got {self.scorer!r}")
        if self.reduce not in REDUCES:
            raise ConfigError(f"reduce must be one of {', '.join(REDUCES)}, got {self.reduce!r}")
        object.__setattr__(self, "threshold", from_json_number(self.threshold, "threshold"))

    def run(self, small, big, prompt_ids, sampler, max_new_tokens, stats, logprobs: int | None = None):
        """Yield Commits: the kept small answer in one piece, or the big model's answer token by
        token once the cascade has escalated (log-probs, when asked for, of the model that wrote it)."""
        extra = stats.extra
        extra.update(scorer=self.scorer, reduce=self.reduce, threshold=json_number(self.threshold))
        if self.threshold == math.inf:
            extra.update(answered_by="big", score=None, small_answer_tokens=0,
                         reason="threshold is +inf: always escalate (the small model is not run)")
            yield from big_answer(big, None, prompt_ids, sampler, max_new_tokens, stats, logprobs)
            return

        small_sess = TrackedSession(small.session(), "small", stats)
        answer, logps = [], []
        kept: list[TokenLogprob] | None = None if logprobs is None else []
        for token, row in write_alone(small_sess, list(prompt_ids), sampler, max_new_tokens, small.eos_token_ids):
            answer.append(token)
            logps.append(float(row[token]))
            if kept is not None:
                kept.append(TokenLogprob.from_row(row, token, logprobs, "small"))
        stats.rounds += 1
        stats.drafted += len(answer)
        extra["small_answer_tokens"] = len(answer)

        big_sess, score = None, None
        if self.scorer == "small-confidence":
            score = reduce_logps(logps, self.reduce)
        elif self.threshold > -math.inf:  # at −inf the big model's opinion cannot change anything
            big_sess = TrackedSession(big.session(), "big", stats)
            try:
                score = reduce_logps(answer_logps(big_sess, prompt_ids, answer), self.reduce)
            except RemoteError as e:
                if getattr(big, "on_failure", "raise") != "small-only":
                    raise
                stats.degraded, extra["degraded_reason"] = True, str(e)
        extra["score"] = json_number(score)

        if score is None or score >= self.threshold:
            why = ("the big model could not be reached" if stats.degraded else
                   "threshold is -inf: always keep the small answer" if score is None else
                   f"score {score:.4g} ≥ threshold {self.threshold:g}")
            extra.update(answered_by="small", reason=why)
            stats.accepted += len(answer)
            stats.finish_reason = "eos" if answer[-1] in small.eos_token_ids else "length"
            yield Commit(answer, ["small"] * len(answer), ["small"] * len(answer), kept)
            return
        extra.update(answered_by="big", reason=f"score {score:.4g} < threshold {self.threshold:g}")
        stats.rollbacks += 1
        yield from big_answer(big, big_sess, prompt_ids, sampler, max_new_tokens, stats, logprobs)


def big_answer(big, big_sess: TrackedSession | None, prompt_ids, sampler, max_new_tokens, stats,
               logprobs: int | None = None):
    """The big model answers alone, token by token (reusing its scoring pass's prompt cache);
    yields Commits, with the big model's log-probs when `logprobs` is an integer."""
    big_sess = big_sess or TrackedSession(big.session(), "big", stats)
    feed = big_sess.sync(list(prompt_ids), min_feed=1)
    stats.finish_reason = "length"
    for token, row in write_alone(big_sess, feed, sampler, max_new_tokens, big.eos_token_ids):
        stats.rounds += 1
        lps = None if logprobs is None else [TokenLogprob.from_row(row, token, logprobs, "big")]
        yield Commit([token], ["big"], ["big"], lps)
        if token in big.eos_token_ids:
            stats.finish_reason = "eos"


def threshold_for_share(scores: Sequence[float], big_share: float) -> float:
    """The threshold that escalates about `big_share` of requests whose scores look like `scores`
    (a dev set's): requests scoring below it go to the big model. 0 → −inf, 1 → +inf."""
    if not 0 <= big_share <= 1:
        raise ConfigError(f"big_share must be in [0, 1], got {big_share!r}")
    ranked = sorted(scores)
    k = round(big_share * len(ranked))
    if k == 0:
        return -math.inf
    if k >= len(ranked):
        return math.inf
    return (ranked[k - 1] + ranked[k]) / 2  # midway: the k lowest fall below it
