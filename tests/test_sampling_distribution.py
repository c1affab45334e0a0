"""Speculative sampling is lossless: the joint distribution of two new tokens equals the big
model's, checked by a chi-square test on a tiny vocabulary. The same test must reject the small
model's distribution, or it would prove nothing. Every verifying method's first token comes from
the big model reading the prompt alone (decoding/loop.py), so for them the test counts tokens 2
and 3, the ones drafts and copies decide, against the big model's distribution with token 1
marginalised out."""
import itertools

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

import biglittle as bl
from biglittle.decoding.sampling import Sampler
from tiny import make_model

VOCAB = 6
RUNS = 2000
PROMPT = [1, 2, 3]


@pytest.fixture(scope="module")
def vocab_pair(tiny_dir):
    big = make_model(str(tiny_dir / "v_big"), layers=2, hidden=32, vocab=VOCAB, seed=21, sharpen=3.0)
    small = make_model(str(tiny_dir / "v_small"), layers=1, hidden=32, vocab=VOCAB, seed=22, sharpen=3.0)
    return bl.load_model(f"hf:{small}"), bl.load_model(f"hf:{big}")


def next_probs(model, sampler: Sampler, seq: list[int]) -> np.ndarray:
    return sampler.probs(model.session().extend(seq)[-1]).numpy()


def joint(model, sampler: Sampler, prompt=PROMPT, after: int = 0) -> np.ndarray:
    """Exact P(t[after], t[after + 1] | prompt) of the new tokens t under the model's processed
    distribution, by enumeration (the `after` tokens before them marginalised out)."""
    prefixes = [([], 1.0)]
    for _ in range(after):
        prefixes = [(pre + [t], w * p) for pre, w in prefixes
                    for t, p in enumerate(next_probs(model, sampler, prompt + pre))]
    out = np.zeros((VOCAB, VOCAB))
    for pre, w in prefixes:
        p1 = next_probs(model, sampler, prompt + pre)
        for a in range(VOCAB):
            out[a] += w * p1[a] * next_probs(model, sampler, prompt + pre + [a])
    return out / out.sum()


def sample_counts(small, big, policy, prompt=PROMPT, runs: list | None = None, after: int = 0, **kw) -> np.ndarray:
    """How often each pair (t[after], t[after + 1]) of new tokens came out, over RUNS seeds."""
    counts = np.zeros((VOCAB, VOCAB))
    for seed in range(RUNS):
        r = bl.generate(small, big, prompt, policy=policy, max_new_tokens=after + 2, seed=seed, **kw)
        counts[r.token_ids[after], r.token_ids[after + 1]] += 1
        if runs is not None:
            runs.append(r)
    return counts


def chi2_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    """Chi-square goodness of fit, pooling cells expected below 5 into one."""
    exp = probs.ravel() * counts.sum()
    obs = counts.ravel()
    big_cells = exp >= 5
    obs_k = np.append(obs[big_cells], obs[~big_cells].sum())
    exp_k = np.append(exp[big_cells], exp[~big_cells].sum())
    if exp_k[-1] == 0:
        if obs_k[-1] > 0:
            return 0.0  # an outcome the distribution calls impossible was drawn
        obs_k, exp_k = obs_k[:-1], exp_k[:-1]
    return float(chisquare(obs_k, exp_k).pvalue)


@pytest.mark.parametrize("settings", [dict(temperature=1.0), dict(temperature=0.8, top_k=4, top_p=0.95)],
                         ids=["t1", "t0.8-topk4-topp0.95"])
@pytest.mark.parametrize("draft", [1, 3])
def test_speculative_sampling_matches_big_distribution(vocab_pair, settings, draft):
    small, big = vocab_pair
    sampler = Sampler(seed=0, **settings)
    p_big, p_small = joint(big, sampler, after=1), joint(small, sampler, after=1)
    tv = 0.5 * np.abs(p_big - p_small).sum()
    assert tv > 0.15, "the pair is too alike for this test to mean anything"

    runs = []
    counts = sample_counts(small, big, bl.Speculative(draft=draft), runs=runs, after=1, **settings)
    assert chi2_pvalue(counts, p_big) > 1e-3          # consistent with the big model
    assert chi2_pvalue(counts, p_small) < 1e-6        # and the test can tell the small one apart
    assert 0.5 * np.abs(counts / RUNS - p_big).sum() < 0.06
    # both branches of the rule ran: drafts kept, drafts rejected
    accepted, rejected = sum(r.stats.accepted for r in runs), sum(r.stats.rollbacks for r in runs)
    assert accepted > RUNS // 10 and rejected > RUNS // 10


def test_big_only_sampling_matches_big_distribution(vocab_pair):
    small, big = vocab_pair
    sampler = Sampler(temperature=1.0)
    counts = sample_counts(None, big, bl.BigOnly(), temperature=1.0)
    assert chi2_pvalue(counts, joint(big, sampler)) > 1e-3


def test_same_seed_same_sample(vocab_pair):
    small, big = vocab_pair
    kw = dict(max_new_tokens=12, temperature=1.0, seed=7)
    a = bl.generate(small, big, PROMPT, policy=bl.Speculative(draft=3), **kw)
    b = bl.generate(small, big, PROMPT, policy=bl.Speculative(draft=3), **kw)
    assert a.token_ids == b.token_ids


@pytest.mark.parametrize("settings", [dict(temperature=1.0), dict(temperature=0.7, top_k=3)], ids=["t1", "t0.7-topk3"])
def test_lookup_sampling_matches_big_distribution(vocab_pair, settings):
    """Copied drafts are point masses: accept x with probability min(1, p(x)), on a rejection
    sample from p with x removed. Every token of the vocabulary occurs in the prompt, so whatever
    the big model writes first, tokens 2 and 3 are often copies."""
    _, big = vocab_pair
    prompt = [0, 1, 2, 3, 4, 5, 0, 1, 2]
    runs = []
    counts = sample_counts(None, big, bl.Speculative(drafter="lookup", draft=2), prompt=prompt, runs=runs,
                           after=1, **settings)
    p_big = joint(big, Sampler(seed=0, **settings), prompt, after=1)
    assert chi2_pvalue(counts, p_big) > 1e-3
    assert 0.5 * np.abs(counts / RUNS - p_big).sum() < 0.06
    copied = sum(r.stats.copied_tokens for r in runs)
    rejected = sum(r.stats.rollbacks for r in runs)
    assert copied > RUNS // 10 and rejected > RUNS // 10   # both branches of the rule really ran
