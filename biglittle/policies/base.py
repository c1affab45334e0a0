"""The base of every policy: a validated, immutable config that knows how to run a generation."""
from __future__ import annotations

from dataclasses import fields

from ..decoding.controller import Controller
from ..decoding.loop import decode
from ..decoding.pair_memory import PairMemory, pair_memory
from ..decoding.sampling import Sampler


class Policy:
    """Token-level policies supply a controller for the shared loop (`start`); a policy with a
    loop of its own (contrastive decoding, cascades, routers) overrides `run`."""
    name = "policy"
    uses_small = True
    uses_big = True

    def start(self, memory: PairMemory | None = None) -> Controller:
        """A controller for one generation; `memory` is what the pair of models has taught policies
        so far (decoding/pair_memory.py), for a controller that learns across requests."""
        raise NotImplementedError

    # whether the policy runs through the shared loop, so a small model with another tokenizer
    # can draft through a decoding.vocab_bridge.VocabBridge (greedy only)
    drafts_across_vocabularies = True

    def run(self, small, big, prompt_ids, sampler: Sampler, max_new_tokens: int, stats, bridge=None,
            logprobs: int | None = None):
        """Yield a decoding.result.Commit (token_ids, origins, reasons, logprobs) each time tokens
        are committed, updating `stats` in place (see decoding.loop.decode for what they hold).
        logprobs: None computes none; an integer n carries each token's log-prob and top-n out."""
        small, big = (small if self.uses_small else None), (big if self.uses_big else None)
        return decode(small, big, prompt_ids, self.start(pair_memory(small, big)), sampler, max_new_tokens, stats,
                      bridge if small is not None and big is not None else None, logprobs)

    def describe(self) -> str:
        args = ",".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))  # type: ignore[arg-type]
        return f"{self.name}:{args}" if args else self.name
