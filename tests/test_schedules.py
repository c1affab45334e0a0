"""Draft-length schedules."""
import random

import pytest

import biglittle as bl
from biglittle.decoding.pair_memory import pair_memory
from biglittle.decoding.schedules import AutoSchedule, HeuristicSchedule, RoundState, expected_speedup
from clocked import Clock, Clocked


def test_heuristic_grows_on_full_acceptance_and_shrinks_otherwise():
    s = HeuristicSchedule(4)
    s.update(4, 4)
    assert s.next() == 6
    s.update(6, 2)
    assert s.next() == 5
    for _ in range(10):
        s.update(5, 0)
    assert s.next() == 1


def test_expected_speedup_formula():
    assert expected_speedup(0.0, 3, 0.1) == pytest.approx(1 / 1.3)
    assert expected_speedup(0.8, 4, 0.05) == pytest.approx((1 - 0.8 ** 5) / (0.2 * 1.2))


def feed(s: AutoSchedule, alpha: float, t_small: float, big_cost, rounds=40, gamma=4):
    for _ in range(rounds):
        acc = round(alpha * gamma)
        s.update(gamma, acc, small_s=t_small * gamma, small_steps=gamma, big_s=big_cost(gamma + 1),
                 big_block=gamma + 1)
        s.update(1, 1, small_s=t_small, small_steps=1, big_s=big_cost(2), big_block=2)
        s.update(0, 0, big_s=big_cost(1), big_block=1)


def test_auto_stops_drafting_when_drafting_cannot_pay():
    # a poor drafter whose tokens cost as much as the big model's, on a compute-bound big model
    s = AutoSchedule(draft=4)
    feed(s, alpha=0.1, t_small=0.03, big_cost=lambda n: 0.03 * n)
    s.credit = 0.0
    assert s.next() == 0


def test_auto_drafts_long_when_drafting_is_cheap_and_accurate():
    s = AutoSchedule(draft=2)
    feed(s, alpha=0.95, t_small=0.001, big_cost=lambda n: 0.1)
    assert s.next() >= 6


def test_auto_takes_a_big_step_to_price_blocks_before_it_probes():
    """The prompt read alone prices no block (it is one size, read in bulk): even with a budget
    that would repay a probe, the first choice after it is a big step; then it probes, where the
    tokens still allowed can repay the probe."""
    s = AutoSchedule(draft=8)
    s.update(0, 0, big_s=0.4, big_block=40)     # the prompt read: 10 ms per position
    assert s.next(RoundState(small_behind=41, budget=10_000)) == 0
    s.update(0, 0, big_s=0.05, big_block=1)
    assert s.next(RoundState(small_behind=42, budget=1)) == 0  # a probe would cost more than the budget holds
    assert s.next(RoundState(small_behind=42, budget=10_000)) == AutoSchedule.PROBE


def test_auto_pays_probes_from_its_exploration_budget():
    """Learning never costs more than `explore` × the time spent with the big model alone."""
    s = AutoSchedule(draft=4, explore=0.05)
    s.update(0, 0, big_s=0.1, big_block=100)    # the prompt: 1 ms per position
    behind, big_only_time, spent, probes = 101, 0.1, 0.0, 0
    for _ in range(400):
        gamma = s.next(RoundState(small_behind=behind))
        if gamma == 0:
            s.update(0, 0, big_s=0.05, big_block=1)
            big_only_time += 0.05
            behind += 1
        else:  # a probe: catching up, then one draft step, then a block of 3, on a hopeless pair
            assert gamma == AutoSchedule.PROBE
            probes += 1
            spent += behind * 0.001 + 0.05 + 0.15 - 0.05
            s.update(gamma, 0, small_s=0.05, small_steps=1, feed_s=behind * 0.001, feed_n=behind,
                     big_s=0.15, big_block=3)
            behind = 1
    assert probes >= 2                              # it does look, more than once
    assert spent <= 0.05 * big_only_time + 1e-9     # but only as much as the budget allows
    s.credit = 0.0                                  # (the budget may just afford another probe)
    assert s.next(RoundState(small_behind=1)) == 0  # and it never drafts on such a pair


def test_auto_drafts_only_if_the_tokens_left_repay_catching_the_small_model_up():
    s = AutoSchedule(draft=4)
    feed(s, alpha=0.9, t_small=0.01, big_cost=lambda n: 0.05 + 0.01 * n)   # drafting pays, modestly
    s.credit = 0.0
    assert s.next(RoundState(small_behind=1)) >= 2                        # caught up: draft
    assert s.next(RoundState(small_behind=500, budget=8)) == 0             # 500 positions to read for 8 tokens
    assert s.next(RoundState(small_behind=500, budget=100_000)) >= 2       # a long answer repays it


def test_auto_cost_line_shrugs_off_a_stalled_call():
    s = AutoSchedule(draft=4)
    for _ in range(9):
        s.update(0, 0, big_s=0.05, big_block=1)
        s.update(2, 2, small_s=0.01, small_steps=2, big_s=0.15, big_block=3)
    s.update(0, 0, big_s=5.0, big_block=1)  # the machine stalled once
    assert s.big_cost(1) == pytest.approx(0.05) and s.big_cost(3) == pytest.approx(0.15)


def test_auto_assumes_compute_bound_until_it_has_seen_two_block_sizes():
    s = AutoSchedule(draft=4)
    for _ in range(10):  # only γ = 4 blocks so far, each costing 5 positions' worth
        s.update(4, 3, small_s=4 * 0.04, small_steps=4, big_s=0.25, big_block=5)
    assert s.rate(0) > s.rate(4)  # 1 token per 0.05 s beats ~3 tokens per 0.41 s
    for _ in range(10):  # then big-only calls cost as much as whole blocks: a memory-bound backend
        s.update(0, 0, big_s=0.25, big_block=1)
    assert s.next() >= 2


def test_auto_keeps_drafting_once_a_probe_shows_it_pays():
    s = AutoSchedule(draft=4)
    s.update(0, 0, big_s=0.2, big_block=20)
    s.update(0, 0, big_s=0.1, big_block=1)
    s.credit = 10.0                                 # enough budget for one probe
    assert s.next(RoundState(small_behind=21)) == AutoSchedule.PROBE
    # memory-bound big model, a cheap accurate drafter
    s.update(2, 2, small_s=0.01, small_steps=1, feed_s=0.05, feed_n=21, big_s=0.1, big_block=3)
    s.credit = 0.0
    assert s.next() >= 2


@pytest.fixture
def clocked_pair(small, big, monkeypatch):
    """The tiny pair on a virtual clock (tests/clocked.py): a big call costs 0.1 s, a small one
    1 ms. Fresh wrappers, so the pair's memory starts empty and is this test's alone."""
    clock = Clock(monkeypatch)
    return Clocked(small, clock, lambda n: 0.001), Clocked(big, clock, lambda n: 0.1)


def test_auto_remembers_the_pair_between_generations(clocked_pair, prompt):
    small, big = clocked_pair
    policy = bl.Speculative(draft=3, schedule="auto")
    memory = pair_memory(small, big)
    learned = policy.start(memory).schedule.learned
    bl.generate(small, big, prompt, policy=policy, max_new_tokens=8)
    seen = learned.big_calls_seen
    assert seen > 0
    bl.generate(small, big, prompt, policy=policy, max_new_tokens=8)
    assert policy.start(memory).schedule.learned is learned and learned.big_calls_seen > seen
    assert pair_memory(small, big) is memory and pair_memory(None, big) is not memory


def test_a_request_reads_the_prompt_alone_even_where_the_pair_says_draft(clocked_pair, prompt):
    """Once the pair has taught the schedule that drafting pays, a new request drafts in its first
    round after the prompt read; the prompt read itself is still the big model alone (the loop's
    rule for every method), and the request's exploration budget is its own, starting at zero."""
    small, big = clocked_pair
    policy = bl.Speculative(draft=3, schedule="auto")
    teacher = policy.start(pair_memory(small, big))
    feed(teacher.schedule, alpha=0.95, t_small=0.001, big_cost=lambda n: 0.1)
    teacher.schedule.credit = 100.0
    r = bl.generate(small, big, prompt, policy=policy, max_new_tokens=8)
    assert big.calls[0][0] == prompt and r.reasons[0] == "big"   # the prompt, alone
    assert len(big.calls[1][0]) > 1 and r.stats.drafted >= 6     # then drafts at once
    assert policy.start(pair_memory(small, big)).schedule.credit == 0.0
    assert teacher.schedule.credit == 100.0


# One big-model call scoring k positions, Qwen2.5-Coder-1.5B on llama.cpp, 2 threads
# (docs/architecture.md, "the cost of a block")
BF16 = {1: .113, 2: .137, 3: .142, 4: .163, 6: .180, 8: .186, 10: .210, 12: .234, 16: .255, 24: .327, 32: .397,
        48: .544}
Q4 = {1: .041, 2: .067, 3: .089, 4: .114, 6: .174, 8: .247, 10: .298, 12: .331, 16: .318, 24: .420, 32: .463,
      48: .660}


def curve_cost(curve: dict[int, float], n: int) -> float:
    """The measured cost of a block of n, on the straight line between measured sizes (and past the
    last one, along the last segment's slope)."""
    ks = sorted(curve)
    lo = max([k for k in ks if k <= n], default=ks[0])
    hi = min([k for k in ks if k > lo], default=None) or ks[-1]
    if hi == lo:
        lo = ks[-2]
    return curve[lo] + (curve[hi] - curve[lo]) * (n - lo) / (hi - lo)


def request(s: AutoSchedule, curve, prompt: int, new: int = 64, alpha: float = 0.85, t_small: float = 0.019,
            small_per_position: float = 0.005, seed: int = 0) -> tuple[float, list[int]]:
    """One request as the decode loop runs it, with the given costs: the big model reads the prompt
    alone (the schedule is not asked), then each round the schedule picks γ; the small model
    catches up (a feed) before its draft steps, each draft is kept with probability alpha, and the
    big model scores γ + 1 positions. Returns the decode phase's seconds (after the prompt read)
    and the γ of each round after the prompt read."""
    rng = random.Random(seed)
    s.update(0, 0, big_s=curve_cost(curve, prompt), big_block=prompt)
    produced, small_behind = 1, prompt + 1     # the prompt read wrote the first token
    seconds, gammas = 0.0, []
    while produced < new:
        budget = new - produced
        g = min(s.next(RoundState(small_behind, budget)), budget)
        gammas.append(g)
        big_s = curve_cost(curve, 1 + g)
        if g == 0:
            s.update(0, 0, big_s=big_s, big_block=1)
            seconds += big_s
            produced, small_behind = produced + 1, small_behind + 1
            continue
        feed_n = small_behind if small_behind > 1 else 0     # the 1st draft comes out of a feed
        steps = g - (1 if feed_n else 0)
        kept = 0
        while kept < g and rng.random() < alpha:
            kept += 1
        s.update(g, kept, big_s=big_s, big_block=g + 1, small_s=steps * t_small, small_steps=steps,
                 feed_s=feed_n * small_per_position, feed_n=feed_n)
        seconds += feed_n * small_per_position + steps * t_small + big_s
        produced += min(kept + 1, budget)
        small_behind = 2 if kept == g else 1                 # the last draft and the bonus are unread
    return seconds, gammas


@pytest.mark.parametrize("prompt", [24, 48, 100, 200])
@pytest.mark.parametrize("seed", range(4))
def test_auto_finds_a_long_draft_within_one_short_request_on_a_16_bit_big_model(prompt, seed):
    """BF16 big model (113 ms a token, 186 ms a block of 8), the Q4 0.5B drafter (19 ms a token):
    a fresh schedule drafts from its 3rd round, reaches γ ≥ 4 within a 64-token request, and the
    request's decode phase beats the big model alone."""
    s = AutoSchedule(draft=4)
    seconds, gammas = request(s, BF16, prompt, seed=seed)
    assert gammas[:2] == [0, AutoSchedule.PROBE]                     # after the prompt read: a big step, a probe
    assert max(gammas) >= 4
    assert 63 * BF16[1] / seconds > 1.15
    assert s.next(RoundState(small_behind=1)) >= 2                   # and the pair's memory says: draft


@pytest.mark.parametrize("prompt", [24, 48, 100, 200, 400])
@pytest.mark.parametrize("t_small", [0.016, 0.022])
def test_auto_never_wakes_the_drafter_on_a_q4_big_model(prompt, t_small):
    """Q4 big model (41 ms a token, 247 ms a block of 8), the same drafter: a 64-token request stays
    with the big model alone, so it costs exactly what big-only costs."""
    s = AutoSchedule(draft=4)
    seconds, gammas = request(s, Q4, prompt, t_small=t_small)
    assert set(gammas) == {0} and s.t_small is None
    assert seconds == pytest.approx(63 * Q4[1])


def test_auto_q4_long_requests_probe_once_then_stay_big_only():
    """On a long request even the Q4 pair might pay with a cheap enough drafter, so the schedule
    looks once; having measured the drafter, it stays with the big model (probes after that come
    from the exploration budget), and the whole request loses little."""
    s = AutoSchedule(draft=4)
    seconds, gammas = request(s, Q4, prompt=48, new=512)
    assert gammas[1] == AutoSchedule.PROBE and set(gammas) == {0, AutoSchedule.PROBE}   # never a real draft
    assert seconds < 1.02 * 511 * Q4[1]
    s.credit = 0.0
    assert s.next(RoundState(small_behind=1, budget=512)) == 0


def test_block_costs_anchored_by_the_prompt_read_follow_the_measured_curves():
    """From a prompt read (48 positions), one token and one probe block of 3, a BF16 model's block
    costs up to 16 come out within 8% of the measured curve (a slope carried on from blocks of 1
    and 3 would put a block of 16 at 331 ms instead of 255). On Q4, whose mid-size blocks cost more
    than the prompt read suggests, the estimate errs low (optimistic: trying a longer draft is how it
    finds out) and a measured size replaces it."""
    learned = {}
    for name, curve in (("bf16", BF16), ("q4", Q4)):
        s = learned[name] = AutoSchedule(draft=4)
        s.update(0, 0, big_s=curve[48], big_block=48)
        s.update(0, 0, big_s=curve[1], big_block=1)
        s.update(2, 1, big_s=curve[3], big_block=3, small_s=0.02, small_steps=1)
    for k in (2, 4, 6, 8, 10, 12, 16):
        assert learned["bf16"].big_cost(k) == pytest.approx(BF16[k], rel=0.08), k
        assert learned["q4"].big_cost(k) <= Q4[k]
    learned["q4"].update(7, 3, big_s=Q4[8], big_block=8, small_s=0.1, small_steps=6)
    assert learned["q4"].big_cost(8) == Q4[8] and learned["q4"].big_cost(6) > 0.150
