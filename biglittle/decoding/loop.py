"""The one decode loop every token-level policy runs through.

    while budget left:
        draft:   the small model proposes tokens one by one until the policy's stop rule fires,
                 or prompt lookup copies a run of tokens from the text so far (free)
        verify:  the big model scores every token it has not seen, in ONE forward pass
        accept:  the policy's acceptance rule keeps a prefix of the drafts
        correct: the big model supplies the next token (at the first rejected position,
                 or after the last accepted one)
        both caches are cut back to the committed sequence

Baselines are the same loop: big-only drafts nothing, small-only never verifies.

Every method that verifies starts the same way: its first round is the big model reading the
prompt alone, writing the first new token (as BiLD's reference code, gpt-fast and vLLM do), and
stats.prompt_s is the moment that call returns. So prompt_s is the same work for every method and
the decode phase (wall_s − prompt_s) holds all of a method's own work. The small model reads the
prompt only when it first drafts, so a policy that never wakes it never pays for it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Iterator, Sequence

import torch

from ..errors import RemoteError
from .controller import Controller, SmallOnlyController
from .lookup import PromptLookup
from .result import Commit, Stats, TokenLogprob
from .sampling import Sampler
from .schedules import RoundState
from .session import TrackedSession
from .vocab_bridge import VocabBridge


def decode(small, big, prompt_ids: Sequence[int], ctl: Controller, sampler: Sampler,
           max_new_tokens: int, stats: Stats, bridge: VocabBridge | None = None,
           logprobs: int | None = None) -> Iterator[Commit]:
    """Yield a Commit (token_ids, origins, reasons, logprobs) each time tokens are committed;
    updates `stats` in place.

    small / big: the models the controller drives (None for one it does not use: small=None is
    the big model alone, or prompt lookup without a small model; big=None the small model alone).
    bridge: set when the small model has another tokenizer (it drafts in its own tokens; greedy only).

    origins says who wrote each token: "small" (a kept draft of the small model), "copy" (a kept
    draft copied by prompt lookup) or "big". reasons says why each token is there: "small",
    "copy", "correction" (the big model's token where it rejected a draft), "fallback" (the big
    model's token after the small one handed over), "big" (any other big-model token: big-only
    steps, bonus tokens, step limits).

    logprobs: None (the default) computes nothing; an integer n ≥ 0 carries out each committed
    token's TokenLogprob with its top-n alternatives, under the model whose decision kept it: the
    big model's raw row where it verified (kept drafts, copies, its own tokens), the small model's
    raw row where nothing verified (small-only, drafts committed unchecked, a lost remote big
    model); None for an unverified token of a small model with another tokenizer (a bridge).
    Each row is reduced to that at once: no whole row is kept."""
    # each model ends the text with its own EOS: drafts stop at the small model's, a big-model token at the big one's
    eos = {role: m.eos_token_ids if m is not None else frozenset() for role, m in (("small", small), ("big", big))}
    eos["copy"] = eos["big"]  # a copied token is kept only where the big model agrees
    small_own_eos = eos["small"]  # what ends the small model's drafting, in its own token ids
    if bridge is not None:  # its drafts reach the loop as big-model tokens: judge them by the big model's EOS
        eos["small"] = eos["big"]
    small_sess = TrackedSession(small.session(), "small", stats) if small is not None else None
    big_sess = TrackedSession(big.session(), "big", stats) if big is not None else None
    lookup = PromptLookup(ctl.lookup_ngram) if ctl.lookup_ngram and big is not None else None
    seq = list(prompt_ids)
    produced = 0
    t_start = time.perf_counter()
    stats.finish_reason = "length"
    reading_prompt = ctl.verifies and big_sess is not None  # this round: the big model reads the prompt alone
    while produced < max_new_tokens:
        budget = max_new_tokens - produced
        state = RoundState(len(seq) - len(small_sess.tokens) if small_sess is not None else 0, budget)
        draft = None
        if reading_prompt:  # drafts nothing: neither the policy nor prompt lookup is asked
            draft = Draft([], [])
        elif lookup is not None:
            draft = _copy(lookup, seq, state, ctl, budget, sampler, big, logprobs)
        if draft is None:
            limit = ctl.draft_limit(state)
            draft = _draft(small_sess, bridge.small_seq(seq) if bridge else seq,
                           budget if limit is None else min(limit, budget), ctl, sampler, small_own_eos, stats,
                           logprobs)
            if bridge is not None:  # the small model's tokens, as the big model's
                tokens = bridge.to_big(draft.tokens)[:budget]
                # no row of the big vocabulary scores them unless the big model verifies them
                lps = None if logprobs is None else [TokenLogprob(None, [], "small") for _ in tokens]
                draft = Draft(tokens, [], fell_back=draft.fell_back, timing=draft.timing, logprobs=lps)
        ends = len(draft.tokens) == budget or (draft.tokens and draft.tokens[-1] in eos[draft.source])
        new, origins, lps = list(draft.tokens), [draft.source] * len(draft.tokens), draft.logprobs
        if ctl.verifies and (ctl.can_reject or not ends):
            try:
                new, origins, lps = _verify(big_sess, seq, draft, ctl, sampler, budget, eos[draft.source], stats,
                                            logprobs)
            except RemoteError as e:
                if small_sess is None or getattr(big, "on_failure", "raise") != "small-only":
                    raise
                # the big model's server is gone: finish with the small model, and say so
                stats.degraded, stats.extra["degraded_reason"] = True, str(e)
                ctl, big_sess, lookup = SmallOnlyController(), None, None
                stats.drafted += len(draft.tokens)
                stats.accepted += len(draft.tokens)
        else:
            stats.drafted += len(draft.tokens)
            stats.accepted += len(draft.tokens)
        stats.rounds += 1
        if reading_prompt:
            reading_prompt = False
            if big_sess is not None:  # (None: the remote big model was lost reading it)
                stats.prompt_s = big_sess.returned_at - t_start
        seq += new
        produced += len(new)
        who = [o if o in ("small", "copy") else "big" for o in origins]
        stats.small_tokens += who.count("small")
        stats.copied_tokens += who.count("copy")
        stats.big_tokens += who.count("big")
        stats.new_tokens = produced
        # roll back: cut both caches to the committed sequence
        if small_sess is not None:
            small_sess.sync(bridge.small_seq(seq) if bridge else seq)
        if big_sess is not None:
            big_sess.sync(seq)
        yield Commit(new, who, origins, lps)
        if new and new[-1] in eos[who[-1]]:
            stats.finish_reason = "eos"
            return


@dataclass
class Draft:
    """Tokens proposed for one verification, and where they came from."""
    tokens: list[int]
    q_rows: list[torch.Tensor]      # the distribution each was drawn from (a point mass for a copy)
    source: str = "small"           # "small" (the small model) or "copy" (prompt lookup)
    fell_back: bool = False         # the small model handed over (BiLD fallback)
    timing: dict = field(default_factory=dict)  # what drafting cost, for adaptive schedules
    copy_n: int = 0                 # for a copy: the length of the n-gram that matched
    logprobs: list[TokenLogprob] | None = None  # when asked for: each draft's, as if committed unchecked


def _copy(lookup: PromptLookup, seq, state: RoundState, ctl, budget: int, sampler, big,
          logprobs: int | None = None) -> Draft | None:
    """Tokens copied by prompt lookup, if the controller wants any verified this round."""
    lookup.catch_up(seq)
    tokens, n = lookup.propose(budget)
    if not tokens:
        return None
    k = min(ctl.copy_limit(replace(state, copy_len=len(tokens), copy_n=n)), budget)
    if k < 1:
        return None
    # lossless sampling with a point-mass draft q: accept x with probability min(1, p(x)); on a
    # rejection, sample from p with x removed — the ordinary rejection rule with this q
    q_rows = list(torch.nn.functional.one_hot(torch.tensor(tokens[:k]), big.vocab_size).float()) \
        if not sampler.greedy else []
    # a copy no model scored: it has a log-prob only once the big model verifies it
    lps = None if logprobs is None else [TokenLogprob(None, [], "copy") for _ in tokens[:k]]
    return Draft(tokens[:k], q_rows, source="copy", copy_n=n, logprobs=lps)


def _draft(small_sess, seq, limit, ctl, sampler, eos, stats, logprobs: int | None = None) -> Draft:
    """Let the small model propose up to `limit` tokens; stop early on the policy's rules or EOS.
    Returns the drafts, their distributions, the time spent, and whether the small model handed over.
    Time is split into one-token draft steps and catching up on tokens it had not read (a prompt,
    or tokens the big model wrote meanwhile), since the two cost very differently.
    logprobs: an integer n keeps each draft's raw small-model log-prob and top-n (see `decode`)."""
    drafts: list[int] = []
    q_rows: list[torch.Tensor] = []
    lps: list[TokenLogprob] | None = None if logprobs is None else []
    timing = {"small_s": 0.0, "small_steps": 0, "feed_s": 0.0, "feed_n": 0}
    if small_sess is None or limit == 0:
        return Draft(drafts, q_rows, timing=timing, logprobs=lps)
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
            return Draft(drafts, q_rows, fell_back=True, timing=timing, logprobs=lps)
        token = int(sampler.choose(logp[-1], probs))
        drafts.append(token)
        q_rows.append(probs)
        if lps is not None:  # the raw row, not the processed probs
            lps.append(TokenLogprob.from_row(logp[-1], token, logprobs, "small"))
        if token in eos or ctl.stop_after(probs):
            break
        feed = [token]
    return Draft(drafts, q_rows, timing=timing, logprobs=lps)


def _verify(big_sess, seq, draft: Draft, ctl, sampler, budget, draft_eos, stats, logprobs: int | None = None):
    """One big forward pass over everything it has not seen; keep a prefix of the drafts plus its
    token. Returns the committed tokens, the reason for each (see `decode`) and, when `logprobs`
    is an integer, each one's TokenLogprob under the big model (row i of its k + 1 rows scores
    the token at position i), else None.

    Devices: every session hands back float32 CPU log-probs (models/base.py), so the small model's
    q rows and the big model's k + 1 rows meet on the CPU whichever devices the two models run on
    (small on the CPU and big on a GPU, or the reverse); a GPU model copied its rows over once per
    forward pass, so acceptance adds no device transfer, per token or per round."""
    drafts = draft.tokens
    k = len(drafts)
    feed = big_sess.sync(seq + drafts, min_feed=k + 1)
    logp, big_time = big_sess.extend(feed, keep=k + 1)
    draft_t = torch.tensor([drafts], dtype=torch.long)
    # greedy acceptance never reads q, so copies skip building point masses there
    q = torch.stack(draft.q_rows).unsqueeze(0) if draft.q_rows else logp.new_zeros((1, 0, logp.shape[-1]))
    n, nxt = ctl.accept(draft_t, q, logp.unsqueeze(0), sampler)
    stats.drafted += k
    stats.accepted += n
    stats.rollbacks += int(n < k)
    ctl.update(k, n, source=draft.source, copy_n=draft.copy_n, big_s=big_time, big_block=len(feed), **draft.timing)
    new, origins = drafts[:n], [draft.source] * n
    ended_on_eos = n == k and k > 0 and drafts[-1] in draft_eos
    if n < budget and not ended_on_eos:
        reason = "correction" if n < k else "fallback" if draft.fell_back else "big"
        new, origins = new + [nxt], origins + [reason]
    lps = None if logprobs is None else \
        [TokenLogprob.from_row(logp[i], t, logprobs, "big") for i, t in enumerate(new)]
    return new, origins, lps
