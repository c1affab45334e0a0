"""Statistics add up, for every policy."""
import math

import pytest

import biglittle as bl
from tiny import make_model, naive_greedy

N = 30
POLICIES = {
    "big": bl.BigOnly(),
    "small": bl.SmallOnly(),
    "spec4": bl.Speculative(draft=4),
    "spec-heur": bl.Speculative(draft=2, schedule="heuristic"),
    "spec-auto": bl.Speculative(draft=3, schedule="auto"),
    "bild": bl.BiLD(),
    "bild-collab": bl.BiLD(rollback=math.inf),
}


@pytest.mark.parametrize("name", POLICIES)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_stats_add_up(small, big, prompt, name, temperature):
    r = bl.generate(small, big, prompt, policy=POLICIES[name], max_new_tokens=N, temperature=temperature)
    s = r.stats
    assert len(r.token_ids) == len(r.origins) == s.new_tokens == N
    assert s.small_tokens == r.origins.count("small")
    assert s.big_tokens == r.origins.count("big")
    assert s.small_tokens + s.big_tokens == s.new_tokens
    assert s.accepted <= s.drafted
    assert s.small_tokens == s.accepted          # every kept draft is a small token
    assert s.prompt_tokens == len(prompt)
    assert s.finish_reason == "length"
    assert s.wall_s > 0 and s.big_s + s.small_s <= s.wall_s
    d = s.to_dict()
    for key in ("new_tokens", "big_calls", "small_calls", "drafted", "accepted", "rollbacks", "fallbacks", "wall_s"):
        assert key in d


def test_big_calls_counted(small, big, prompt):
    big_only = bl.generate(None, big, prompt, policy=bl.BigOnly(), max_new_tokens=N).stats
    assert big_only.big_calls == N and big_only.small_calls == 0
    assert big_only.big_positions == len(prompt) + N - 1  # the last token is never fed back
    spec = bl.generate(small, big, prompt, policy=bl.Speculative(draft=4), max_new_tokens=N).stats
    assert spec.big_calls == spec.rounds          # one verification per round
    assert spec.big_calls < N


def test_bild_counts_fallbacks_and_rollbacks(small, big, prompt):
    s = bl.generate(small, big, prompt, policy=bl.BiLD(fallback=0.5, rollback=1.0), max_new_tokens=N).stats
    assert s.fallbacks > 0 and s.rollbacks > 0
    # every big call after the first is caused by a fallback, the step limit or the budget
    assert s.big_calls <= s.rounds


def test_eos_stops_generation(tiny_dir, prompt):
    path = make_model(str(tiny_dir / "eos_probe"), layers=2, hidden=64, seed=1, sharpen=50.0)
    greedy = naive_greedy(path, prompt, 12)
    eos = greedy[5]
    stop_at = greedy.index(eos)
    path = make_model(str(tiny_dir / "eos_big"), layers=2, hidden=64, seed=1, sharpen=50.0, eos_token_id=eos)
    big = bl.load_model(f"hf:{path}")
    for policy in (bl.BigOnly(), bl.Speculative(draft=3), bl.BiLD(fallback=2.0)):
        small = big if policy.uses_small else None  # a model drafting for itself agrees always
        r = bl.generate(small, big, prompt, policy=policy, max_new_tokens=12)
        assert r.token_ids == greedy[: stop_at + 1]
        assert r.stats.finish_reason == "eos"


def test_reasons_say_why_each_token_is_there(small, big, prompt):
    r = bl.generate(small, big, prompt, policy=bl.BiLD(fallback=0.5, rollback=1.0), max_new_tokens=N)
    assert len(r.reasons) == N
    assert [o == "small" for o in r.origins] == [w == "small" for w in r.reasons]
    assert r.reasons.count("correction") == r.stats.rollbacks
    assert "fallback" in r.reasons
    assert r.reasons[0] == "big"  # BiLD's first token: the big model, no draft before it
    spec = bl.generate(small, big, prompt, policy=bl.Speculative(draft=4), max_new_tokens=N)
    assert "fallback" not in spec.reasons and spec.reasons.count("correction") == spec.stats.rollbacks


@pytest.mark.parametrize("name", POLICIES)
def test_stats_after_a_stop_string_cut(text_pair, name):
    """Output counters describe the returned tokens; work counters keep the work past the cut."""
    small, big = text_pair
    policy = POLICIES[name]
    full = bl.generate(small, big, "Hello", policy=policy, max_new_tokens=N)
    stop = next(full.text[i:i + 2] for i in range(N // 2, len(full.text) - 2) if "\ufffd" not in full.text[i:i + 2])
    r = bl.generate(small, big, "Hello", policy=policy, max_new_tokens=N, stop=stop)
    s = r.stats
    assert s.finish_reason == "stop" and len(r.token_ids) < N
    assert s.new_tokens == len(r.token_ids) == len(r.origins)
    assert s.small_tokens == r.origins.count("small") and s.big_tokens == r.origins.count("big")
    assert s.small_tokens <= s.accepted <= s.drafted
    assert s.tokens_per_big_call == (s.new_tokens / s.big_calls if s.big_calls else s.new_tokens)
    assert s.acceptance_rate == (s.accepted / s.drafted if s.drafted else 0.0)
