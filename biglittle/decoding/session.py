"""A backend session plus the token ids it holds, kept in sync with the committed sequence."""
from __future__ import annotations

import time
from typing import Sequence

import torch

from ..tokens import common_prefix
from .result import Stats


class TrackedSession:
    """A backend session plus the token ids it holds, so it can be synced with the committed
    sequence: whatever it cached beyond the common prefix (rejected drafts) is truncated.
    Every call is counted in `stats` under the session's role ("small" or "big")."""

    def __init__(self, session, role: str, stats: Stats):
        self.session, self.role, self.stats = session, role, stats
        self.tokens: list[int] = []
        self.returned_at: float | None = None  # time.perf_counter() when the last call returned

    def sync(self, seq: Sequence[int], min_feed: int = 0) -> list[int]:
        """Truncate to the longest prefix shared with seq, leaving at least `min_feed` tokens of
        seq to feed; return the tokens of seq still to feed."""
        n = common_prefix(self.tokens, seq[: max(0, len(seq) - min_feed)])
        if n < len(self.tokens):
            self.session.truncate(n)
            del self.tokens[n:]
        return list(seq[n:])

    def extend(self, ids: list[int], keep: int) -> tuple[torch.Tensor, float]:
        """Feed ids; return the last `keep` rows of log-probs and the seconds the call took."""
        t0 = time.perf_counter()
        logp = self.session.extend(ids, keep=keep)
        self.returned_at = time.perf_counter()
        seconds = self.returned_at - t0
        self.tokens.extend(ids)
        s = self.stats
        if self.role == "big":
            s.big_calls, s.big_s, s.big_positions = s.big_calls + 1, s.big_s + seconds, s.big_positions + len(ids)
        else:
            s.small_calls, s.small_s = s.small_calls + 1, s.small_s + seconds
        return logp, seconds
