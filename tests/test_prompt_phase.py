"""The prompt phase: every verifying method's first round is the big model reading the prompt
alone, and stats.prompt_s is stamped the moment that call returns. So prompt_s is the same work
for every method, and the decode phase (wall_s − prompt_s, which the benchmark compares) holds
all of each method's own work. Timed on a virtual clock (tests/clocked.py): exact, not noisy."""
import math

import pytest

import biglittle as bl
from biglittle.bench.runner import Sample, _decode_speedup
from biglittle.decoding.schedules import HeuristicSchedule
from clocked import Clock, Clocked

REPEATING = [3, 1, 4, 1, 5, 9, 2, 6] * 3   # prompt lookup finds matches in the prompt itself

VERIFYING = [
    bl.BigOnly(),
    bl.Speculative(draft=4),
    bl.Speculative(draft=2, schedule="heuristic"),
    bl.Speculative(draft=3, schedule="auto"),
    bl.Speculative(draft=4, acceptance="typical"),
    bl.Speculative(draft=4, confidence_stop=0.5),
    bl.Speculative(drafter="lookup", draft=8),
    bl.Speculative(drafter="lookup", draft=8, schedule="auto"),
    bl.Speculative(drafter="hybrid", draft=4),
    bl.BiLD(),
    bl.BiLD(rollback=math.inf),
]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("policy", VERIFYING, ids=lambda p: p.describe())
def test_the_big_model_reads_the_prompt_alone_first(small, big, policy, temperature, monkeypatch):
    clock = Clock(monkeypatch)
    big_c, small_c = Clocked(big, clock, lambda n: 1.0), Clocked(small, clock, lambda n: 0.25)
    r = bl.generate(small_c if policy.uses_small else None, big_c, REPEATING, policy=policy,
                    max_new_tokens=16, temperature=temperature)
    first_ids, first_returned = big_c.calls[0]
    assert first_ids == REPEATING                    # the first big call reads exactly the prompt
    assert first_returned == 1.0                     # and nothing ran before it (the small model reads lazily)
    assert r.stats.prompt_s == first_returned        # prompt_s: the moment that call returned
    assert r.origins[0] == "big" and r.reasons[0] == "big"
    assert len(r.token_ids) == 16


def test_decode_speedup_of_a_method_doing_big_onlys_work_is_not_above_one(big, prompt, monkeypatch):
    """A drafter that is always right and costs nothing, and a compute-bound big model (1 s per
    position scored): speculative decoding then pays per token exactly what the big model alone
    pays (a block of γ + 1 yields γ + 1 tokens). Had its first round (prompt + γ drafts, γ + 1
    tokens) counted as the prompt, its decode phase would come out 31/27 = 1.15× at 32 tokens."""
    clock = Clock(monkeypatch)
    big_c, free_drafter = Clocked(big, clock, lambda n: float(n)), Clocked(big, clock, lambda n: 0.0)
    samples = {}
    for name, small, policy in (("big", None, bl.BigOnly()), ("spec", free_drafter, bl.Speculative(draft=4))):
        r = bl.generate(small, big_c, prompt, policy=policy, max_new_tokens=32)
        samples[name] = [Sample("t", name, "0", r.token_ids, None, r.stats.wall_s, [r.stats.wall_s],
                                r.stats.to_dict())]
    spec = samples["spec"][0]
    assert spec.token_ids == samples["big"][0].token_ids and spec.stats["small_tokens"] >= 24
    assert _decode_speedup(samples["big"], samples["spec"]) <= 1.0
    assert spec.stats["prompt_s"] == samples["big"][0].stats["prompt_s"] == len(prompt)  # the same work


def test_a_small_model_never_woken_never_reads_the_prompt(small, big, prompt, monkeypatch):
    """Where drafting cannot pay (a compute-bound big model, a drafter as slow as it), the auto
    schedule never drafts, and the small model is never fed the prompt: it reads it only when it
    first drafts."""
    clock = Clock(monkeypatch)
    big_c, small_c = Clocked(big, clock, lambda n: 0.04 * n), Clocked(small, clock, lambda n: 0.04 * n)
    r = bl.generate(small_c, big_c, prompt, policy=bl.Speculative(schedule="auto"), max_new_tokens=8)
    assert r.stats.drafted == 0 and small_c.calls == [] and r.stats.small_calls == 0


def test_the_prompt_read_is_not_a_fully_accepted_block(small, big, prompt, monkeypatch):
    """The heuristic schedule grows γ by 2 after a block it kept whole; the prompt read drafts
    nothing, so it must not count as one: the first drafting round drafts γ as configured."""
    s = HeuristicSchedule(2)
    s.update(0, 0)
    assert s.next() == 2
    clock = Clock(monkeypatch)
    big_c, small_c = Clocked(big, clock, lambda n: 1.0), Clocked(small, clock, lambda n: 0.25)
    bl.generate(small_c, big_c, prompt, policy=bl.Speculative(draft=2, schedule="heuristic"), max_new_tokens=8)
    assert len(big_c.calls[1][0]) == 1 + 2   # the token the prompt read wrote, and 2 drafts
