"""Prompt lookup and hybrid drafting: the index, the schedule's decisions, and lossless greedy
output on the tiny models (token for token equal to the big model alone)."""
import math

import pytest

import biglittle as bl
from biglittle.decoding.block_costs import BlockCosts
from biglittle.decoding.lookup import PromptLookup
from biglittle.decoding.schedules import CopySchedule, RoundState
from clocked import Clock, Clocked

N = 48
REPEATING = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4] * 3


def test_lookup_finds_the_latest_longest_match():
    seq = [1, 2, 3, 4, 9, 2, 3, 5, 7, 1, 2, 3]
    lk = PromptLookup(ngram=3)
    lk.catch_up(seq)
    assert lk.propose(3) == ([4, 9, 2], 3)        # [1, 2, 3] occurred once, followed by 4, 9, 2
    lk.catch_up(seq + [4, 6])                     # the sequence grew: [.., 4, 6] never seen, 1-gram [6] neither
    assert lk.propose(5) == ([], 0)
    lk2 = PromptLookup(ngram=2)
    lk2.catch_up([5, 6, 7, 5, 6, 8, 5, 6])
    assert lk2.propose(2) == ([8, 5], 2)          # the most recent [5, 6] was followed by 8
    assert lk2.propose(0) == ([], 0)


def test_lookup_never_matches_its_own_suffix():
    lk = PromptLookup(ngram=3)
    lk.catch_up([1, 2, 3])
    assert lk.propose(4) == ([], 0)
    lk.catch_up([1, 2, 3, 1])   # the earlier [1] was followed by 2
    assert lk.propose(4) == ([2, 3, 1], 1)


def test_lookup_falls_back_to_shorter_ngrams():
    lk = PromptLookup(ngram=3)
    lk.catch_up([7, 8, 9, 4, 4, 8])
    assert lk.propose(2) == ([9, 4], 1)           # only the 1-gram [8] matches


def test_block_costs_interpolate_and_extend():
    c = BlockCosts()
    c.add(1, 0.04)
    c.add_prompt_read(100, 1.0)                    # 10 ms per position read in bulk
    assert c.estimate(5) == pytest.approx(0.04 + 4 * 0.01)
    c.add(9, 0.20)
    c.add(9, 0.24)
    c.add(9, 5.0)                                  # one stall: the median ignores it
    assert c.estimate(9) == pytest.approx(0.24)
    assert c.estimate(5) == pytest.approx(0.04 + (0.24 - 0.04) * 4 / 8)
    assert c.estimate(17) == pytest.approx(0.24 + 0.025 * 8)


def measured(costs_ms: dict[int, float], prompt_ms_per_position: float | None = None) -> CopySchedule:
    s = CopySchedule(max_draft=16, auto=True, ngram=3)
    if prompt_ms_per_position is not None:
        s.costs.add_prompt_read(100, prompt_ms_per_position * 100 / 1000)
    for size, ms in costs_ms.items():
        s.costs.add(size, ms / 1000)
    return s


# docs/architecture.md ("the cost of a block"): the 1.5B on llama.cpp, Q4_K_M and BF16 (ms per call of k positions)
Q4 = {1: 41, 2: 67, 3: 89, 4: 114, 6: 174, 8: 247, 10: 298, 12: 331, 16: 318, 24: 420}
BF16 = {1: 113, 2: 137, 3: 142, 4: 163, 6: 180, 8: 186, 10: 210, 12: 234, 16: 255, 24: 327}


def state(copy_len: int, copy_n: int = 3) -> RoundState:
    return RoundState(small_behind=0, budget=64, copy_len=copy_len, copy_n=copy_n)


def test_copy_schedule_prices_one_position_before_it_copies():
    """The prompt read (which the loop runs before asking) times positions in bulk, not a step:
    a fresh schedule takes one plain big step before it verifies copies."""
    s = CopySchedule(max_draft=16, auto=True, ngram=3)
    s.update(0, 0, source="small", big_s=0.4, big_block=40)
    assert s.limit(state(10)) == 0
    s.update(0, 0, source="small", big_s=0.04, big_block=1)
    assert s.limit(state(10)) > 0


def test_copy_schedule_verifies_nothing_when_copies_fail():
    s = measured(Q4)
    for _ in range(30):   # copies of every n-gram length keep being rejected at once
        for n in (1, 2, 3):
            s.update(8, 0, source="copy", copy_n=n, big_s=0.247, big_block=9)
    assert all(s.limit(state(16, n)) == 0 for n in (1, 2, 3))


def test_copy_schedule_verifies_long_runs_that_are_kept():
    s = measured(Q4)
    for _ in range(30):
        s.update(16, 16, source="copy", copy_n=3, big_s=0.318, big_block=17)
    k = s.limit(state(16))
    assert k >= 12                                 # a block of 16 yields ~16 tokens for 318 ms
    assert s.limit(state(3)) == 3                  # never more than the match offers
    assert s.limit(state(0)) == 0


def test_copy_schedule_depends_on_the_cost_curve():
    """With α = 0.8 per copied token, a flat (16-bit) curve makes long blocks pay; the Q4 curve,
    where each extra position costs ~26 ms, makes a short block best."""
    def trained(curve):
        s = measured(curve)
        for _ in range(40):
            s.update(4, 3, source="copy", copy_n=3, big_s=curve[4] / 1000, big_block=5)
            s.update(1, 1, source="copy", copy_n=3, big_s=curve[2] / 1000, big_block=2)
        return s
    q4, bf16 = trained(Q4).limit(state(16)), trained(BF16).limit(state(16))
    assert 1 <= q4 < bf16


def test_constant_copy_schedule_takes_the_whole_match():
    s = CopySchedule(max_draft=8, auto=False, ngram=3)
    assert s.limit(state(20)) == 8 and s.limit(state(5)) == 5


def test_spec_strings_and_validation():
    p = bl.parse_policy("speculative:drafter=lookup,draft=16,ngram=2,schedule=auto")
    assert (p.drafter, p.draft, p.ngram, p.schedule) == ("lookup", 16, 2, "auto")
    assert not p.uses_small and p.uses_big
    assert bl.Speculative(drafter="hybrid").uses_small
    with pytest.raises(bl.ConfigError, match="drafter must be one of"):
        bl.Speculative(drafter="psychic")
    with pytest.raises(bl.ConfigError, match="ngram"):
        bl.Speculative(drafter="lookup", ngram=0)


@pytest.fixture(scope="module")
def reference(big):
    return {tuple(p): bl.generate(None, big, p, policy=bl.BigOnly(), max_new_tokens=N).token_ids
            for p in (REPEATING, [3, 1, 4, 1, 5, 9, 2, 6])}


@pytest.mark.parametrize("prompt", [REPEATING, [3, 1, 4, 1, 5, 9, 2, 6]], ids=["repeating", "short"])
@pytest.mark.parametrize("policy", [
    bl.Speculative(drafter="lookup", draft=1),
    bl.Speculative(drafter="lookup", draft=8),
    bl.Speculative(drafter="lookup", draft=16, ngram=1),
    bl.Speculative(drafter="lookup", draft=16, schedule="auto"),
    bl.Speculative(drafter="hybrid", draft=4),
    bl.Speculative(drafter="hybrid", draft=6, schedule="auto"),
    bl.Speculative(drafter="hybrid", draft=3, acceptance="exact", ngram=2),
], ids=lambda p: p.describe().replace("speculative:", ""))
def test_lookup_and_hybrid_greedy_equal_big_greedy(small, big, reference, prompt, policy):
    r = bl.generate(small, big, prompt, policy=policy, max_new_tokens=N)
    assert r.token_ids == reference[tuple(prompt)]
    s = r.stats
    assert s.small_tokens + s.copied_tokens + s.big_tokens == s.new_tokens == N
    assert r.origins.count("copy") == s.copied_tokens
    assert s.copied_tokens + s.small_tokens <= s.accepted <= s.drafted
    if policy.drafter == "lookup":
        assert s.small_calls == 0 and s.small_tokens == 0


def test_lookup_copies_on_repeating_text_and_saves_big_calls(big, reference):
    r = bl.generate(None, big, REPEATING, policy=bl.Speculative(drafter="lookup", draft=8), max_new_tokens=N)
    assert r.token_ids == reference[tuple(REPEATING)]
    assert r.stats.copied_tokens > 0 and r.stats.big_calls < N
    assert "copy" in r.reasons


def test_lookup_needs_no_small_model_and_a_big_one(big):
    with pytest.raises(bl.ConfigError, match="needs a big model"):
        bl.generate(None, None, [1, 2, 3], policy=bl.Speculative(drafter="lookup"))
    r = bl.generate(None, big, [1, 2, 3], policy=bl.Speculative(drafter="lookup"), max_new_tokens=4)
    assert len(r.token_ids) == 4


def test_auto_lookup_learns_across_requests_of_the_same_big_model(big, monkeypatch):
    """The copy schedule's statistics are kept per big model (no small model in the pair): the
    first request must take a plain big step to price blocks before it copies; the next one
    copies right after its prompt read."""
    out = bl.generate(None, big, REPEATING, policy=bl.BigOnly(), max_new_tokens=32).token_ids
    k = next(i for i in range(1, 32) if out[i] in out[:i])  # where the big model's own text repeats
    prompt = REPEATING + out[:k]                            # so right after the prompt read, a match
    clock = Clock(monkeypatch)
    big = Clocked(big, clock, lambda n: 1.0)  # fresh wrapper: a memory of its own; flat blocks: copies pay
    policy = bl.Speculative(drafter="lookup", draft=8, schedule="auto")
    sizes = []
    for _ in range(2):
        big.calls.clear()
        bl.generate(None, big, prompt, policy=policy, max_new_tokens=16)
        sizes.append([len(ids) for ids, _ in big.calls])
    assert sizes[0][:2] == [len(prompt), 1]                # the prompt read, then a plain step
    assert sizes[1][0] == len(prompt) and sizes[1][1] > 1  # the prompt read, then copies at once
