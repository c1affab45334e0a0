"""The interface between the decode loop and a policy: a per-generation controller.

A token-level policy is a validated, immutable config; `policy.start(memory)` hands the loop a
`Controller` for one generation (`memory` is the pair of models' PairMemory, where an adaptive
controller keeps what it learned for later generations — statistics only, never its own
per-request state). The loop asks it each round; in the first round of a controller that
verifies, the big model reads the prompt alone and only `accept` and `update` are asked:
  draft_limit(state)   how many tokens the small model may draft (None = no limit), given where
                       the generation stands (a schedules.RoundState)
  copy_limit(state)    how many tokens copied by prompt lookup to verify (0: none; then the
                       small model drafts, if the controller uses one); asked only when
                       `lookup_ngram` > 0 and the lookup found a match
  stop_before(probs)   drop the token just proposed and call the big model (BiLD fallback)
  stop_after(probs)    keep the token, then call the big model (confidence stop)
  accept(...)          how many drafts to keep, and the big model's next token
  update(...)          what happened, for adaptive schedules
The loop knows no policy by name: it only drives this interface.
"""
from __future__ import annotations

import torch

from .sampling import Sampler
from .schedules import RoundState


class Controller:
    verifies = True     # call the big model at all
    can_reject = True   # a verification may discard drafts (if not, a full budget needs no check)
    lookup_ngram = 0    # > 0: the loop keeps a prompt-lookup index of this n-gram length

    def draft_limit(self, state: RoundState = RoundState()) -> int | None:
        return 0

    def copy_limit(self, state: RoundState) -> int:
        return 0

    def stop_before(self, probs: torch.Tensor) -> bool:
        return False

    def stop_after(self, probs: torch.Tensor) -> bool:
        return False

    def accept(self, draft: torch.Tensor, q: torch.Tensor, p_logp: torch.Tensor,
               sampler: Sampler) -> tuple[int, int]:
        """draft [1, k], q [1, k, V] (processed small), p_logp [1, k+1, V] (raw big log-probs)
        → (number of drafts kept, the big model's token after them)."""
        raise NotImplementedError

    def update(self, drafted: int, accepted: int, **timings) -> None:
        pass


class SmallOnlyController(Controller):
    """The small model writes alone, one token per round (so streaming shows each token as it
    comes). The loop also falls back to it when a remote big model is lost mid-generation."""
    verifies = False
    can_reject = False

    def draft_limit(self, state=RoundState()):
        return 1


def big_pick(p_logp: torch.Tensor, n: int, sampler: Sampler) -> int:
    """The big model's own token at position n: the greedy rule, or a draw from its processed
    distribution."""
    return int(sampler.choose(p_logp[0, n]))
