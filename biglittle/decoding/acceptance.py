"""Acceptance rules: which prefix of the drafted tokens the big model keeps.

Pure functions on tensors with a leading batch dimension:
  draft   [B, k]           tokens the small model proposed
  q       [B, k, V]        the small model's (processed) distributions they were drawn from
  p       [B, k+1, V]      the big model's distributions at the same positions, plus one more
                           (p[:, i] predicts draft[:, i]; p[:, k] predicts the token after the block)
Each rule returns n_accepted [B] (0..k); rows are independent, so a batch may accept
different lengths. Vocabulary follows vLLM's rejection sampler: accepted, recovered
(the big model's token at the first rejection), bonus (the token after a fully accepted block).
"""
from __future__ import annotations

import torch

from .sampling import greedy_token


def accepted_prefix(ok: torch.Tensor) -> torch.Tensor:
    """Length of the leading run of True in each row of ok [B, k]."""
    return ok.to(torch.long).cumprod(dim=-1).sum(dim=-1)


def take(p: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Row p[b, index[b]] for each b: [B, k+1, V], [B] → [B, V]."""
    return p[torch.arange(p.shape[0]), index]


def draft_probs(dist: torch.Tensor, draft: torch.Tensor) -> torch.Tensor:
    """dist[b, i, draft[b, i]]: [B, k(+1), V], [B, k] → [B, k]."""
    k = draft.shape[1]
    return dist[:, :k].gather(-1, draft.unsqueeze(-1)).squeeze(-1)


def greedy_match(draft: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Speculative, greedy: keep drafts while each equals the big model's greedy token
    (p: log-probs, so the argmax is the same one every other greedy path takes)."""
    return accepted_prefix(draft == greedy_token(p[:, : draft.shape[1]]))


def rejection_sample(draft: torch.Tensor, q: torch.Tensor, p: torch.Tensor, uniform: torch.Tensor,
                     pick) -> tuple[torch.Tensor, torch.Tensor]:
    """Speculative sampling (Leviathan et al. 2023; Chen et al. 2023), lossless.

    Draft i is accepted with probability min(1, p_i(x)/q_i(x)) (uniform [B, k] supplies the
    coin flips). At the first rejection the recovered token is drawn from norm(max(0, p − q));
    if all are accepted the bonus token is drawn from p after the block. `pick(probs [B, V])`
    draws one token per row. Returns (n_accepted [B], next_token [B]).
    """
    k = draft.shape[1]
    ratio = draft_probs(p, draft) / draft_probs(q, draft).clamp_min(1e-30)
    n = accepted_prefix(uniform < ratio)
    target = take(p, n)
    if k:
        residual = (take(p, n.clamp(max=k - 1)) - take(q, n.clamp(max=k - 1))).clamp_min(0)
        mass = residual.sum(dim=-1, keepdim=True)
        # mass is 0 only when p == q at that position, where a rejection cannot happen
        residual = torch.where(mass > 0, residual / mass.clamp_min(1e-30), target)
        target = torch.where((n < k).unsqueeze(-1), residual, target)
    return n, pick(target)


def typical_accept(draft: torch.Tensor, p: torch.Tensor, epsilon: float = 0.09,
                   delta: float = 0.3) -> torch.Tensor:
    """Typical acceptance (Medusa; vLLM), lossy: keep a draft while
    p_big(draft) > min(epsilon, delta · exp(−H(p_big)))."""
    k = draft.shape[1]
    pk = p[:, :k]
    entropy = -(pk * pk.clamp_min(1e-30).log()).sum(dim=-1)
    threshold = torch.minimum(torch.full_like(entropy, epsilon), delta * torch.exp(-entropy))
    return accepted_prefix(draft_probs(pk, draft) > threshold)


def rollback_accept(draft: torch.Tensor, big_logp: torch.Tensor, threshold: float) -> torch.Tensor:
    """BiLD rollback: keep drafts up to the first whose distance d = −log p_big(token)
    exceeds the threshold (the earliest such position wins). `big_logp` is the big model's
    raw log-softmax, as in the reference code; threshold = inf never rolls back."""
    return accepted_prefix(-draft_probs(big_logp, draft) <= threshold)
