"""Contrastive decoding against a direct computation with the raw models (no caches, no library code)."""
import pytest
import torch

import biglittle as bl
from tiny import _net, naive_greedy

N = 24


@torch.no_grad()
def direct_contrastive(small_path, big_path, prompt, n, alpha, tau):
    """Li et al.'s rule recomputed from scratch each step: among tokens with p_big ≥ α·max p_big,
    the argmax of log p_big − log softmax(small logits / τ)."""
    big_net, small_net = _net(big_path), _net(small_path)
    seq = list(prompt)
    for _ in range(n):
        ids = torch.tensor([seq])
        big_logits = big_net(input_ids=ids, use_cache=False).logits[0, -1].float()
        small_logits = small_net(input_ids=ids, use_cache=False).logits[0, -1].float()
        p_big = torch.softmax(big_logits, -1)
        score = torch.log_softmax(big_logits, -1) - torch.log_softmax(small_logits / tau, -1)
        score[p_big < alpha * p_big.max()] = -float("inf")
        seq.append(int(score.argmax()))
    return seq[len(prompt):]


@pytest.mark.parametrize("alpha,tau", [(0.1, 1.0), (0.3, 0.5), (0.01, 2.0)])
def test_contrastive_equals_direct_computation(small, big, small_path, big_path, prompt, alpha, tau):
    r = bl.generate(small, big, prompt, policy=bl.Contrastive(alpha=alpha, small_temperature=tau), max_new_tokens=N)
    assert r.token_ids == direct_contrastive(small_path, big_path, prompt, N, alpha, tau)
    assert r.origins == ["big"] * N
    s = r.stats
    assert s.big_calls == s.small_calls == N  # both models step together, one pass per token each
    assert s.new_tokens == N and s.big_tokens == N and s.finish_reason == "length"
    assert s.extra["alpha"] == alpha and s.extra["small_temperature"] == tau


def test_contrast_changes_tokens_and_alpha_one_is_big_greedy(small, big, big_path, prompt):
    """α = 0.1 on this pair picks tokens big greedy would not; α = 1 leaves only big's argmax."""
    cd = bl.generate(small, big, prompt, policy=bl.Contrastive(), max_new_tokens=N)
    assert cd.stats.extra["changed_from_big_greedy"] > 0
    greedy = naive_greedy(big_path, prompt, N)
    assert cd.token_ids != greedy
    one = bl.generate(small, big, prompt, policy=bl.Contrastive(alpha=1.0), max_new_tokens=N)
    assert one.token_ids == greedy
    assert one.stats.extra["changed_from_big_greedy"] == 0


def test_contrastive_streams_token_by_token_and_stops_at_eos(tmp_path, prompt):
    from tiny import make_draft_of, make_model

    b = make_model(str(tmp_path / "b"), seed=1, sharpen=50.0, eos_token_id=60)
    s = make_draft_of(b, str(tmp_path / "s"), keep_layers=2, noise=0.2, seed=2)
    big_m, small_m = bl.load_model(f"hf:{b}"), bl.load_model(f"hf:{s}")
    chunks = list(bl.stream(small_m, big_m, prompt, policy=bl.Contrastive(), max_new_tokens=N))
    final = chunks[-1].final
    assert [len(c.token_ids) for c in chunks[:-1]] == [1] * len(final.token_ids)
    assert final.token_ids[-1] == 60 and final.stats.finish_reason == "eos"  # 60 is this pair's first CD token


def test_parse_policy_and_describe_round_trip():
    p = bl.parse_policy("contrastive:alpha=0.2,small_temperature=0.5")
    assert p == bl.Contrastive(alpha=0.2, small_temperature=0.5)
    assert bl.parse_policy(p.describe()) == p


@pytest.mark.parametrize("kwargs,message", [
    ({"alpha": 0.0}, "alpha must be in"), ({"alpha": 1.5}, "alpha must be in"),
    ({"alpha": "x"}, "alpha must be a number"), ({"small_temperature": 0}, "small_temperature must be"),
    ({"small_temperature": float("inf")}, "small_temperature must be"),
])
def test_bad_parameters_are_config_errors(kwargs, message):
    with pytest.raises(bl.ConfigError, match=message):
        bl.Contrastive(**kwargs)


def test_sampling_is_refused(small, big, prompt):
    with pytest.raises(bl.ConfigError, match="greedy"):
        bl.generate(small, big, prompt, policy=bl.Contrastive(), max_new_tokens=4, temperature=0.7)


def test_needs_both_models(big, prompt):
    with pytest.raises(bl.ConfigError, match="needs a small model"):
        bl.generate(None, big, prompt, policy=bl.Contrastive(), max_new_tokens=4)
