"""What a generation returns: the tokens, who wrote each one, and the statistics."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple


@dataclass
class Stats:
    """Counters for one generation. Data, never prints; `to_dict()` for JSON.

    Each counter is one of two kinds:
      output — describes the returned tokens: new_tokens, small_tokens, copied_tokens, big_tokens,
               finish_reason.
      work   — what the models did to get them: calls, positions, rounds, drafted, accepted,
               rollbacks, fallbacks and the times. Work includes tokens past a stop-string cut
               (the last round drafted and verified them before the text showed the stop),
               since it was paid for.
    So after a stop-string cut small_tokens + copied_tokens ≤ accepted ≤ drafted, and the two need
    not be equal.
    Rates: acceptance_rate is work over work (how often a draft passed); tokens_per_big_call and
    tokens_per_s are output over work (what the answer cost).
    """
    policy: str = ""
    prompt_tokens: int = 0
    new_tokens: int = 0         # output: tokens returned
    small_tokens: int = 0       # output: returned tokens written by the small model (kept drafts)
    copied_tokens: int = 0      # output: returned tokens copied by prompt lookup (kept drafts)
    big_tokens: int = 0         # output: returned tokens written by the big model (corrections, fallbacks, bonus)
    big_calls: int = 0          # work: forward passes of the big model (prompt included)
    small_calls: int = 0        # work: forward passes of the small model (prompt included)
    big_positions: int = 0      # work: tokens the big model scored, over all calls
    rounds: int = 0             # work: draft → verify rounds
    drafted: int = 0            # work: tokens proposed (by the small model or prompt lookup) and sent for checking
    accepted: int = 0           # work: of those, the ones the acceptance rule kept
    rollbacks: int = 0          # work: rounds in which the big model discarded drafts
    fallbacks: int = 0          # work: rounds the small model ended by handing over (BiLD)
    finish_reason: str = ""     # output: "length", "eos" or "stop"
    wall_s: float = 0.0         # work: the whole generation
    small_s: float = 0.0        # work: time inside small-model calls
    big_s: float = 0.0          # work: time inside big-model calls
    prompt_s: float | None = None  # work: from the start until the big model's first call returned
                                   # (it reads the prompt alone, in every method that verifies);
                                   # wall_s − prompt_s is the decode phase
    degraded: bool = False      # True if the big model was lost mid-way and the small one finished
    extra: dict = field(default_factory=dict)  # policy-specific facts (e.g. which model a cascade chose, and why)

    def count_output(self, origins: list[str]) -> None:
        """Set the output counters from the returned tokens' origins (after any stop-string cut);
        the work counters stay as they are."""
        self.new_tokens = len(origins)
        self.small_tokens, self.big_tokens = origins.count("small"), origins.count("big")
        self.copied_tokens = origins.count("copy")

    @property
    def acceptance_rate(self) -> float:
        """Work: accepted / drafted."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_big_call(self) -> float:
        """Output per work: returned tokens per big-model call."""
        return self.new_tokens / self.big_calls if self.big_calls else float(self.new_tokens)

    @property
    def tokens_per_s(self) -> float:
        """Output per work: returned tokens per second of wall time."""
        return self.new_tokens / self.wall_s if self.wall_s else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(acceptance_rate=self.acceptance_rate, tokens_per_big_call=self.tokens_per_big_call,
                 tokens_per_s=self.tokens_per_s)
        return d


@dataclass
class TokenLogprob:
    """One committed token's log-prob, under the model whose decision kept it.

    logprob: the raw log-softmax (temperature 1, no top-k/top-p) of the token under `model`'s
      distribution at that position; None where no model of the output vocabulary scored it (a
      small model of another tokenizer wrote it and nothing verified it).
    top: the `top` most likely tokens of that same row, [(token id, log-prob), ...], best first.
    model: "big" where the big model verified or wrote the token (kept drafts, copied tokens,
      corrections, bonus tokens), "small" where the small model's token was committed without a
      check (small-only, unverified drafts, a lost remote big model)."""
    logprob: float | None
    top: list[tuple[int, float]]
    model: str

    @classmethod
    def from_row(cls, row, token: int, top: int, model: str) -> "TokenLogprob":
        """Reduce a log-prob row [vocab] (a tensor) to the token's log-prob and its top-`top`, at once:
        the whole row is never kept."""
        k = min(top, row.shape[-1])
        alts = []
        if k > 0:
            values, ids = row.topk(k)
            alts = [(int(i), float(v)) for i, v in zip(ids.tolist(), values.tolist())]
        return cls(float(row[token]), alts, model)

    def to_dict(self) -> dict:
        return {"logprob": self.logprob, "top": [list(t) for t in self.top], "model": self.model}


class Commit(NamedTuple):
    """What the decode loop (and every policy's `run`) yields each time tokens are committed.
    logprobs is None unless log-probs were asked for; then one TokenLogprob per token."""
    token_ids: list[int]
    origins: list[str]
    reasons: list[str]
    logprobs: list[TokenLogprob] | None = None


@dataclass
class GenerationResult:
    token_ids: list[int]
    origins: list[str]          # per new token: "small", "copy" (prompt lookup) or "big"
    stats: Stats
    text: str | None = None     # None when the model has no tokenizer
    prompt_ids: list[int] = field(default_factory=list)
    # per new token, why it is there: "small", "correction" (big replaced a rejected draft),
    # "fallback" (big took over from an unsure small model) or "big" (any other big token)
    reasons: list[str] = field(default_factory=list)
    # per new token, its TokenLogprob (aligned with token_ids); None unless logprobs= was asked for
    logprobs: list[TokenLogprob] | None = None

    def to_dict(self) -> dict:
        d = {"text": self.text, "token_ids": self.token_ids, "origins": self.origins,
             "reasons": self.reasons, "stats": self.stats.to_dict()}
        if self.logprobs is not None:
            d["logprobs"] = [lp.to_dict() for lp in self.logprobs]
        return d


@dataclass
class Chunk:
    """One step of `stream`: the tokens committed since the last chunk and their text.

    The last chunk has `final` set to the whole GenerationResult (stats included)."""
    token_ids: list[int]
    origins: list[str]
    text: str = ""
    final: GenerationResult | None = None
    reasons: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None  # this chunk's tokens' log-probs, when asked for
