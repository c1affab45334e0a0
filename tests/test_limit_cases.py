"""The exact limit cases of DESIGN.md §2, token for token, on tiny fp32 models."""
import math

import pytest

import biglittle as bl
from biglittle.decoding.pair_memory import pair_memory
from biglittle.decoding.schedules import make_schedule
from tiny import naive_greedy

N = 32


@pytest.fixture(scope="module")
def reference(big_path, prompt):
    """Big-model greedy recomputed from scratch each step, without any cache."""
    return naive_greedy(big_path, prompt, N)


def test_big_only_equals_naive_greedy(big, prompt, reference):
    r = bl.generate(None, big, prompt, policy=bl.BigOnly(), max_new_tokens=N)
    assert r.token_ids == reference
    assert r.origins == ["big"] * N


def test_small_only_equals_naive_small_greedy(small, small_path, prompt):
    r = bl.generate(small, None, prompt, policy=bl.SmallOnly(), max_new_tokens=N)
    assert r.token_ids == naive_greedy(small_path, prompt, N)
    assert r.origins == ["small"] * N
    assert r.stats.big_calls == 0


@pytest.mark.parametrize("draft", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("schedule", ["constant", "heuristic", "auto"])
def test_greedy_speculative_equals_big(small, big, prompt, reference, draft, schedule):
    policy = bl.Speculative(draft=draft, schedule=schedule)
    key = (policy, "model")
    memory = pair_memory(small, big)
    if schedule == "auto":  # an unlimited exploration budget: it probes whenever it would stop drafting
        memory[key] = make_schedule("auto", draft)
        memory[key].explore = math.inf
    try:
        r = bl.generate(small, big, prompt, policy=policy, max_new_tokens=N)
    finally:
        memory.pop(key, None)
    assert r.token_ids == reference
    assert r.stats.drafted > 0


def test_greedy_speculative_with_confidence_stop_equals_big(small, big, prompt, reference):
    pol = bl.Speculative(draft=6, confidence_stop=0.9)
    r = bl.generate(small, big, prompt, policy=pol, max_new_tokens=N)
    assert r.token_ids == reference


def test_speculative_accepts_some_and_rejects_some(small, big, prompt):
    """The fixture pair is chosen so both branches of the acceptance rule run."""
    s = bl.generate(small, big, prompt, policy=bl.Speculative(draft=4), max_new_tokens=N).stats
    assert 0 < s.accepted < s.drafted
    assert s.rollbacks > 0


def test_bild_always_fallback_equals_big(small, big, prompt, reference):
    r = bl.generate(small, big, prompt, policy=bl.BiLD(fallback=1.5), max_new_tokens=N)
    assert r.token_ids == reference
    assert r.origins == ["big"] * N
    assert r.stats.fallbacks == N - 1  # every round after the first hands over at once


def test_bild_always_rollback_equals_big(small, big, prompt, reference):
    r = bl.generate(small, big, prompt, policy=bl.BiLD(fallback=0.0, rollback=0.0), max_new_tokens=N)
    assert r.token_ids == reference
    assert r.stats.rollbacks > 0


def test_bild_never_hands_over_is_big_first_token_then_small_greedy(small, big, small_path, big_path, prompt):
    pol = bl.BiLD(fallback=0.0, rollback=math.inf, max_small_steps=None)
    r = bl.generate(small, big, prompt, policy=pol, max_new_tokens=N)
    first = naive_greedy(big_path, prompt, 1)
    assert r.token_ids == first + naive_greedy(small_path, prompt + first, N - 1)
    assert r.origins == ["big"] + ["small"] * (N - 1)
    assert r.stats.big_calls == 1  # the first token; nothing can be rolled back, so no check


def test_bild_defaults_mix_both_models(small, big, prompt):
    r = bl.generate(small, big, prompt, policy=bl.BiLD(), max_new_tokens=N)
    assert {"small", "big"} <= set(r.origins)
    assert r.stats.big_calls < N


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, None, None), (0.7, 20, 0.9)])
def test_bild_always_fallback_samples_like_big(small, big, prompt, temperature, top_k, top_p):
    """With τ_fb > 1 BiLD never keeps a small token and draws nothing from the small model,
    so with the same seed it draws exactly what big-only draws."""
    kw = dict(max_new_tokens=N, temperature=temperature, top_k=top_k, top_p=top_p, seed=123)
    ref = bl.generate(None, big, prompt, policy=bl.BigOnly(), **kw)
    got = bl.generate(small, big, prompt, policy=bl.BiLD(fallback=2.0), **kw)
    assert got.token_ids == ref.token_ids


def test_max_small_steps_bounds_small_runs(small, big, prompt):
    pol = bl.BiLD(fallback=0.0, rollback=math.inf, max_small_steps=3)
    r = bl.generate(small, big, prompt, policy=pol, max_new_tokens=N)
    runs = "".join("s" if o == "small" else "B" for o in r.origins).split("B")
    assert max(len(run) for run in runs) == 3
    assert r.origins[0] == "big"


def test_typical_acceptance_runs_and_keeps_plausible_tokens(small, big, prompt):
    r = bl.generate(small, big, prompt, policy=bl.Speculative(draft=4, acceptance="typical"), max_new_tokens=N)
    assert len(r.token_ids) == N
    assert r.stats.accepted > 0
