"""The one decode loop every token-level policy runs through.

    while budget left:
        draft:   the small model proposes tokens one by one until the policy's stop rule fires
        verify:  the big model scores every token it has not seen, in ONE forward pass
        accept:  the policy's acceptance rule keeps a prefix of the drafts
        correct: the big model supplies the next token (at the first rejected position,
                 or after the last accepted one)
        both caches are cut back to the committed sequence

Baselines are the same loop: big-only drafts nothing, small-only never verifies.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch

from ..errors import RemoteError
from .controller import Controller, SmallOnlyController
from .result import Stats
from .sampling import Sampler
from .schedules import RoundState
from .session import TrackedSession


def decode(small, big, prompt_ids: Sequence[int], ctl: Controller, sampler: Sampler,
           max_new_tokens: int, stats: Stats) -> Iterator[tuple[list[int], list[str], list[str]]]:
    """Yield (token_ids, origins, reasons) each time tokens are committed; updates `stats` in place.

    small / big: the models the controller drives (None for one it does not use: small=None is
    the big model alone, big=None the small model alone).

    reasons says why each token is there: "small" (a kept draft), "correction" (the big model's
    token where it rejected a draft), "fallback" (the big model's token after the small one
    handed over), "big" (any other big-model token: big-only steps, bonus tokens, step limits)."""
    # each model ends the text with its own EOS: drafts stop at the small model's, a big-model token at the big one's
    eos = {role: m.eos_token_ids if m is not None else frozenset() for role, m in (("small", small), ("big", big))}
    small_sess = TrackedSession(small.session(), "small", stats) if small is not None else None
    big_sess = TrackedSession(big.session(), "big", stats) if big is not None else None
    seq = list(prompt_ids)
    produced = 0
    stats.finish_reason = "length"
    while produced < max_new_tokens:
        budget = max_new_tokens - produced
        limit = ctl.draft_limit(RoundState(len(seq) - len(small_sess.tokens) if small_sess is not None else 0,
                                           len(seq) - len(big_sess.tokens) if big_sess is not None else 0, budget))
        limit = budget if limit is None else min(limit, budget)
        drafts, q_rows, draft_timing, fell_back = _draft(small_sess, seq, limit, ctl, sampler, eos["small"], stats)
        ends = len(drafts) == budget or (drafts and drafts[-1] in eos["small"])
        new, origins = list(drafts), ["small"] * len(drafts)
        if ctl.verifies and (ctl.can_reject or not ends):
            try:
                new, origins = _verify(big_sess, seq, drafts, q_rows, ctl, sampler, budget, eos["small"], stats,
                                       draft_timing, fell_back)
            except RemoteError as e:
                if small_sess is None or getattr(big, "on_failure", "raise") != "small-only":
                    raise
                # the big model's server is gone: finish with the small model, and say so
                stats.degraded, stats.extra["degraded_reason"] = True, str(e)
                ctl, big_sess = SmallOnlyController(), None
                stats.drafted += len(drafts)
                stats.accepted += len(drafts)
        else:
            stats.drafted += len(drafts)
            stats.accepted += len(drafts)
        stats.rounds += 1
        seq += new
        produced += len(new)
        stats.small_tokens += origins.count("small")
        stats.big_tokens += len(origins) - origins.count("small")
        stats.new_tokens = produced
        for tracked in (small_sess, big_sess):
            if tracked is not None:
                tracked.sync(seq)  # roll back: cut both caches to the committed sequence
        yield new, ["small" if o == "small" else "big" for o in origins], origins
        if new and new[-1] in eos["small" if origins[-1] == "small" else "big"]:
            stats.finish_reason = "eos"
            return


def _draft(small_sess, seq, limit, ctl, sampler, eos, stats) -> tuple[list[int], list[torch.Tensor], dict, bool]:
    """Let the small model propose up to `limit` tokens; stop early on the policy's rules or EOS.
    Returns the drafts, their distributions, the time spent, and whether the small model handed over.
    Time is split into one-token draft steps and catching up on tokens it had not read (a prompt,
    or tokens the big model wrote meanwhile), since the two cost very differently."""
    drafts: list[int] = []
    q_rows: list[torch.Tensor] = []
    timing = {"small_s": 0.0, "small_steps": 0, "feed_s": 0.0, "feed_n": 0}
    if small_sess is None or limit == 0:
        return drafts, q_rows, timing, False
    feed = small_sess.sync(seq, min_feed=1)
    while len(drafts) < limit:
        logp, dt = small_sess.extend(feed, keep=1)
        if len(feed) == 1:
            timing["small_s"] += dt
            timing["small_steps"] += 1
        else:
            timing["feed_s"] += dt
            timing["feed_n"] += len(feed)
        probs = sampler.probs(logp[-1])
        if ctl.stop_before(probs):  # BiLD fallback: the unsure token is discarded
            stats.fallbacks += 1
            return drafts, q_rows, timing, True
        token = int(sampler.choose(logp[-1], probs))
        drafts.append(token)
        q_rows.append(probs)
        if token in eos or ctl.stop_after(probs):
            break
        feed = [token]
    return drafts, q_rows, timing, False


def _verify(big_sess, seq, drafts, q_rows, ctl, sampler, budget, small_eos, stats, draft_timing, fell_back):
    """One big forward pass over everything it has not seen; keep a prefix of drafts plus its token.
    Returns the committed tokens and the reason for each (see `decode`)."""
    k = len(drafts)
    feed = big_sess.sync(seq + drafts, min_feed=k + 1)
    logp, big_time = big_sess.extend(feed, keep=k + 1)
    draft_t = torch.tensor([drafts], dtype=torch.long)
    q = torch.stack(q_rows).unsqueeze(0) if q_rows else logp.new_zeros((1, 0, logp.shape[-1]))
    n, nxt = ctl.accept(draft_t, q, logp.unsqueeze(0), sampler)
    stats.drafted += k
    stats.accepted += n
    stats.rollbacks += int(n < k)
    ctl.update(k, n, big_s=big_time, big_block=len(feed), **draft_timing)
    new, origins = drafts[:n], ["small"] * n
    ended_on_eos = n == k and k > 0 and drafts[-1] in small_eos
    if n < budget and not ended_on_eos:
        reason = "correction" if n < k else "fallback" if fell_back else "big"
        new, origins = new + [nxt], origins + [reason]
    return new, origins
