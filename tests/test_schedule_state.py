"""What an adaptive schedule learns belongs to the pair of models; what it decides belongs to the
request. Concurrent requests of one pair share the learned statistics (acceptance, costs) without
resetting each other's exploration budget or draft length, per-request policy overrides keep the
pair's memory bounded, and a later request starts from what earlier ones learned.
Timed on a virtual clock (tests/clocked.py), so the schedules' choices are exact."""
import pytest

import biglittle as bl
from biglittle.decoding.loop import decode
from biglittle.decoding.pair_memory import pair_memory
from biglittle.decoding.result import Stats
from biglittle.decoding.sampling import Sampler
from biglittle.decoding.schedules import AutoSchedule
from clocked import Clock, Clocked

AUTO = bl.Speculative(draft=3, schedule="auto")


@pytest.fixture
def pair(small, big, monkeypatch):
    """A pair on which drafting pays: each big call costs 1 s whatever its size (a GPU's flat
    blocks), each small call 10 ms. Fresh wrappers, so a fresh pair memory for each test."""
    clock = Clock(monkeypatch)
    return Clocked(small, clock, lambda n: 0.01), Clocked(big, clock, lambda n: 1.0)


def start(pair, prompt, policy=AUTO, max_new_tokens=64):
    """A request's controller and its decode generator, to be driven by hand."""
    small, big = pair
    ctl = policy.start(pair_memory(small, big))
    return ctl, decode(small, big, prompt, ctl, Sampler(), max_new_tokens, Stats())


def test_a_request_starting_leaves_another_requests_budget_and_draft_alone(pair, prompt):
    a_ctl, a = start(pair, prompt)
    for _ in range(3):  # the prompt read, a big step, a probe
        next(a)
    assert a_ctl.schedule.credit > 0  # its big-only rounds earned exploration budget
    b_ctl, b = start(pair, prompt)
    for _ in range(12):  # interleaved, as a server runs them: B's rounds never touch A's own state
        mine = (a_ctl.schedule.credit, a_ctl.schedule.draft)
        next(b, None)
        assert (a_ctl.schedule.credit, a_ctl.schedule.draft) == mine
        next(a, None)
    assert b_ctl.schedule is not a_ctl.schedule and b_ctl.schedule.learned is a_ctl.schedule.learned


def test_per_request_overrides_keep_the_pair_memory_bounded(pair, prompt):
    small, big = pair
    for i in range(100):  # a server builds one policy per request from its overrides
        policy = bl.Speculative(draft=1 + i % 8, schedule="auto", drafter="hybrid", ngram=1 + i % 5,
                                confidence_stop=i / 100)
        bl.generate(small, big, prompt, policy=policy, max_new_tokens=1)
        bl.generate(None, big, prompt, policy=bl.Speculative(drafter="lookup", schedule="auto", ngram=1 + i),
                    max_new_tokens=1)
    assert len(pair_memory(small, big)) <= 8 and len(pair_memory(None, big)) <= 8


@pytest.mark.parametrize("second", [AUTO, bl.Speculative(draft=5, schedule="auto")], ids=["same", "another-draft"])
def test_a_second_request_drafts_from_what_the_first_learned(pair, prompt, second):
    small, big = pair
    bl.generate(small, big, prompt, policy=AUTO, max_new_tokens=24)
    first = [len(ids) for ids, _ in big.calls]
    big.calls.clear()
    bl.generate(small, big, prompt, policy=second, max_new_tokens=24)
    again = [len(ids) for ids, _ in big.calls]
    # the first request had to find out: the prompt read, a big step (it prices blocks), a probe
    assert first[:3] == [len(prompt), 1, 1 + AutoSchedule.PROBE]
    # the second drafts from its first round after the prompt read, whatever its initial draft length
    assert again[0] == len(prompt) and again[1] > 1 + AutoSchedule.PROBE
