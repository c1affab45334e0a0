"""Draft-length schedules."""
import pytest

from biglittle.decoding.schedules import AutoSchedule, HeuristicSchedule, RoundState, expected_speedup


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


def test_auto_starts_with_the_big_model_alone():
    s = AutoSchedule(draft=8)
    assert s.next(RoundState(small_behind=40, big_behind=40)) == 0  # the big model reads the prompt
    s.update(0, 0, big_s=0.4, big_block=40)     # that prefill: 10 ms per position
    assert s.next(RoundState(small_behind=41)) == 0  # a probe would cost more than the budget holds
    s.credit = 100.0
    assert s.next(RoundState(small_behind=41, big_behind=41)) == 0  # never before the big model read the prompt
    assert s.credit == 0.0                      # and a new request starts a budget of its own


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
    assert s.next(RoundState(small_behind=1)) == 0


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


def test_auto_remembers_the_pair_between_generations(small, big, prompt):
    import biglittle as bl
    from biglittle.decoding.pair_memory import pair_memory

    policy = bl.Speculative(draft=3, schedule="auto")
    key = (policy, "model")  # the small model's schedule; a lookup drafter keeps (policy, "copy")
    memory = pair_memory(small, big)
    memory.pop(key, None)
    try:
        bl.generate(small, big, prompt, policy=policy, max_new_tokens=8)
        learned = memory[key]
        seen = len(learned.big_calls)
        bl.generate(small, big, prompt, policy=policy, max_new_tokens=8)
        assert memory[key] is learned and len(learned.big_calls) > seen
        assert pair_memory(small, big) is memory and pair_memory(None, big) is not memory

        # on a pair it has learned drafting pays on, a new request drafts right after the big
        # model has read the prompt (its first round)
        memory[key] = AutoSchedule(draft=3)
        feed(memory[key], alpha=0.95, t_small=0.001, big_cost=lambda n: 0.1)
        memory[key].t_feed = 0.001  # and catching the small model up is cheap
        r = bl.generate(small, big, prompt, policy=policy, max_new_tokens=8)
        assert r.reasons[0] == "big" and r.stats.drafted >= 6 and r.stats.rounds <= 4
    finally:
        memory.pop(key, None)
