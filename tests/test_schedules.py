"""Draft-length schedules."""
import pytest

from biglittle.decoding.schedules import AutoSchedule, HeuristicSchedule, expected_speedup


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
        s.update(gamma, acc, small_s=t_small * gamma, big_s=big_cost(gamma + 1), big_block=gamma + 1)
        s.update(1, 1, small_s=t_small, big_s=big_cost(2), big_block=2)
        s.update(0, 0, big_s=big_cost(1), big_block=1)


def test_auto_stops_drafting_when_drafting_cannot_pay():
    # a poor drafter whose tokens cost as much as the big model's, on a compute-bound big model
    s = AutoSchedule(draft=4)
    feed(s, alpha=0.1, t_small=0.03, big_cost=lambda n: 0.03 * n)
    assert s.next() == 0


def test_auto_drafts_long_when_drafting_is_cheap_and_accurate():
    s = AutoSchedule(draft=2)
    feed(s, alpha=0.95, t_small=0.001, big_cost=lambda n: 0.1)
    assert s.next() >= 6


def test_auto_probes_again_after_stopping():
    s = AutoSchedule(draft=4, probe_every=4)
    feed(s, alpha=0.1, t_small=0.03, big_cost=lambda n: 0.03 * n)
    choices = [s.next() for _ in range(8)]
    assert choices.count(1) == 2 and choices.count(0) == 6


def test_auto_assumes_compute_bound_until_it_has_seen_two_block_sizes():
    s = AutoSchedule(draft=4)
    for _ in range(10):  # only γ = 4 blocks so far, each costing 5 positions' worth
        s.update(4, 3, small_s=4 * 0.04, big_s=0.25, big_block=5)
    assert s.next() == 0  # 1 token per 0.05 s beats ~3 tokens per 0.41 s
    for _ in range(10):  # then big-only calls cost as much as whole blocks: a memory-bound backend
        s.update(0, 0, big_s=0.25, big_block=1)
    assert s.next() >= 2


def test_auto_learns_costs_with_at_most_two_drafted_tokens():
    s = AutoSchedule(draft=8)
    assert s.next() == 1                                        # one token: the draft cost
    s.update(1, 1, small_s=0.03, big_s=0.5, big_block=40)       # (a prompt prefill: not a block sample)
    assert s.next() == 0                                        # a big-only step: a block of 1
    s.update(0, 0, big_s=0.06, big_block=1)
    assert s.next() == 1                                        # a block of 2
    s.update(1, 1, small_s=0.03, big_s=0.09, big_block=2)
    assert s.next() == 0                                        # compute-bound, drafter half as costly: stop
