"""tune (issue 19): candidates are ranked by the clock, and a candidate meets a quality floor only
when the low end of a paired bootstrap interval over prompts does, so a few lucky prompts cannot
carry a worse policy; the bootstrap itself against a hand computation."""
import math
from dataclasses import dataclass

import numpy as np
import pytest

import biglittle as bl
import biglittle.tune.run as run_module
from biglittle.data.metrics import bleu_chrf
from biglittle.tune import Costs, bootstrap_interval, metric_on_prompts, percentile_interval, resample_indices, tune

COSTS = Costs(small_call_s=0.001, big_call_s=0.05, big_position_s=0.001)
PROMPTS = [[3, 1, 4, 1, 5, 9, 2, 6], [100, 50, 20, 30, 40], [7, 7, 1]]


# ---------------------------------------------------------------- the bootstrap

def by_hand_percentile(values, q):
    """numpy's default ('linear') percentile, written out: position q·(m−1) in the sorted values."""
    s = sorted(values)
    pos = q / 100 * (len(s) - 1)
    lo = math.floor(pos)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (pos - lo)


def test_the_interval_is_the_hand_computed_percentile_bootstrap_with_a_fixed_seed():
    x = np.array([0.2, 0.9, 0.4, 1.0, 0.7, 0.1, 0.8])
    rng = np.random.default_rng(5)  # the documented draw: one row of n indices per resample
    means = []
    for _ in range(400):
        idx = rng.integers(0, len(x), size=(1, len(x)))[0]
        means.append(sum(x[i] for i in idx) / len(x))
    want = [by_hand_percentile(means, 2.5), by_hand_percentile(means, 97.5)]
    got = bootstrap_interval(lambda ix: x[ix].mean(), len(x), resamples=400, seed=5)
    assert got == pytest.approx(want, abs=1e-12)
    assert bootstrap_interval(lambda ix: x[ix].mean(), len(x), resamples=400, seed=6) != got  # the seed matters
    assert percentile_interval(means) == pytest.approx(want, abs=1e-12)


def test_a_small_case_whose_bootstrap_distribution_is_known():
    # three prompts scoring 0, 0, 3: a resample's mean is how many times it drew the 3, Binomial(3, 1/3);
    # P(0) = 8/27 and P(3) = 1/27 both exceed 2.5%, so the 95% interval is exactly [0, 3]
    x = np.array([0.0, 0.0, 3.0])
    assert bootstrap_interval(lambda ix: x[ix].mean(), 3, resamples=4000, seed=1) == [0.0, 3.0]
    # at 90% the upper tail (5%) still holds P(3) = 3.7% and the next value down, 2 (P = 6/27)
    assert bootstrap_interval(lambda ix: x[ix].mean(), 3, resamples=4000, seed=1, confidence=0.90) == [0.0, 2.0]


def test_the_interval_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(0).normal(10, 3, size=40)
    ours = bootstrap_interval(lambda ix: x[ix].mean(), len(x), resamples=5000, seed=3)
    theirs = stats.bootstrap((x,), np.mean, method="percentile", n_resamples=5000, random_state=3).confidence_interval
    spread = theirs.high - theirs.low
    assert ours[0] == pytest.approx(theirs.low, abs=0.05 * spread)
    assert ours[1] == pytest.approx(theirs.high, abs=0.05 * spread)


@dataclass
class Scored:
    """A task-like scorer: `score(outputs, references)` under the name `name`."""
    name: str
    score: object

    @property
    def primary_metric(self):
        return self.name

    def postprocess(self, text):
        return text

    def metric(self, outputs, references):
        return {self.name: self.score(outputs, references)}


def test_corpus_metrics_are_recomputed_on_each_resample_not_averaged():
    outs = ["a b c", "a x", "b b b b", "c"]
    refs = ["a b c", "a b", "b b", "d"]

    def share_of_matching_words(o, r):  # a corpus metric: a ratio of sums, not a mean of ratios
        hits = sum(sum(w1 == w2 for w1, w2 in zip(a.split(), b.split())) for a, b in zip(o, r))
        return 100.0 * hits / sum(len(a.split()) for a in o)

    f = metric_on_prompts(Scored("words", share_of_matching_words), outs, refs)
    for ix in resample_indices(len(outs), 30, seed=2):
        assert f(ix) == pytest.approx(share_of_matching_words([outs[i] for i in ix], [refs[i] for i in ix]))
    mean_metric = Scored("exact", lambda o, r: 100.0 * sum(a == b for a, b in zip(o, r)) / len(o))
    g = metric_on_prompts(mean_metric, outs, refs)
    assert g(np.array([0, 0, 1])) == pytest.approx(200 / 3)


def test_corpus_bleu_on_a_resample_is_sacrebleus_corpus_bleu():
    pytest.importorskip("sacrebleu")
    refs = ["the cat sat on the mat", "a dog ran in the park today", "we went home early", "it is raining again"]
    outs = ["the cat sat on a mat", "a dog runs in the park", "we went home", "it rains again and again"]
    bleu = Scored("bleu", lambda o, r: bleu_chrf(o, r)["bleu"])
    f = metric_on_prompts(bleu, outs, refs)
    for ix in [np.arange(4), np.array([0, 0, 2, 3]), np.array([1, 1, 1, 3])]:
        assert f(ix) == pytest.approx(bleu_chrf([outs[i] for i in ix], [refs[i] for i in ix])["bleu"], abs=1e-9)


# ---------------------------------------------------------------- the floor under noise

class ExactMatch:
    primary_metric = "exact"

    def postprocess(self, text):
        return text

    def metric(self, outputs, references):
        return {"exact": 100.0 * sum(o == r for o, r in zip(outputs, references)) / len(outputs)}


def test_a_worse_candidate_that_looks_better_on_few_prompts_is_not_picked(text_pair):
    """The small model is worse (big-only's answers are the references on most prompts), but on
    three prompts two references happen to be the small model's answers: its point estimate
    beats big-only. Priced calls make it 50× faster, so the point estimate alone would pick it."""
    small, big = text_pair
    pool = ["Hello", "abc", "The cat", "xyz", "Once upon", "zz top", "A B C", "quick fox", "hmm", "42 is"]
    n = 10

    def answers(m):
        return [bl.generate(None, m, p, policy=bl.BigOnly(), max_new_tokens=n).text for p in pool]

    big_out, small_out = answers(big), answers(small)
    differ = [i for i in range(len(pool)) if big_out[i] != small_out[i]]
    assert len(differ) >= 6
    few = differ[:3]
    lucky = {few[0]: small_out[few[0]], few[1]: small_out[few[1]]}  # the small model is right by chance
    refs = [lucky.get(i, big_out[i]) for i in range(len(pool))]
    common = dict(max_metric_loss=0.01, task=ExactMatch(), max_new_tokens=n, policies=[], cascades=False,
                  costs=COSTS, rank_by="estimate", repeats=1)

    r = tune(small, big, [pool[i] for i in few], references=[refs[i] for i in few], **common)
    cand = {c.spec: c for c in r.candidates}
    assert cand["small"].metric > cand["big"].metric  # the trap: on these prompts it looks better
    assert cand["small"].metric_delta_ci[0] < 0 < cand["small"].metric_delta_ci[1]
    assert not cand["small"].meets_floor and r.best.spec == "big"
    assert cand["small"].prompts_needed > 3
    assert not r.decision["decided"] and r.decision["prompts_needed"] == cand["small"].prompts_needed
    assert "no candidate but big-only" in r.decision["note"]
    data = r.to_config()
    assert data["chosen"]["metric_delta"] == 0.0 and data["chosen"]["metric_delta_ci"] == [0.0, 0.0]

    # on all the prompts the truth shows: clearly worse, and that is a decision
    r = tune(small, big, pool, references=refs, **common)
    cand = {c.spec: c for c in r.candidates}
    assert cand["small"].metric < cand["big"].metric and cand["small"].metric_delta_ci[0] < -50
    assert not cand["small"].meets_floor and cand["small"].prompts_needed is None  # no prompt count would help
    assert r.best.spec == "big" and r.decision["decided"]


def test_an_agreement_floor_also_needs_its_interval(small, big):
    # the small model's mean agreement on three prompts, with the floor just under it: the point
    # estimate passes, the interval over three prompts does not (unless it agrees everywhere)
    r = tune(small, big, PROMPTS, max_new_tokens=12, policies=[], cascades=False, costs=COSTS, repeats=1,
             min_agreement=0.0)
    s = {c.spec: c for c in r.candidates}["small"]
    assert s.agreement_delta_ci[0] <= s.agreement_delta <= s.agreement_delta_ci[1]
    assert s.agreement < 1  # the pair disagrees somewhere
    r = tune(small, big, PROMPTS, max_new_tokens=12, policies=[], cascades=False, costs=COSTS, repeats=1,
             min_agreement=s.agreement - 1e-6)
    s = {c.spec: c for c in r.candidates}["small"]
    assert not s.meets_floor and s.prompts_needed is not None and r.best.spec == "big"


# ---------------------------------------------------------------- ranked by the clock

# The clock tune reads (biglittle/tune/timing.py's time.perf_counter) is replaced by a fake one that
# advances only by what each run did, priced at CLOCK (calls nearly as cheap as the small model's:
# a small model drafting for itself, where drafting barely pays), plus PAUSE for every generation of
# Sleepy. Every measured time is then known exactly and no result depends on the machine's speed.
# COSTS, the priced estimate, says a big call costs 50 small ones: it favours the longest draft.
CLOCK = Costs(small_call_s=0.001, big_call_s=0.002, big_position_s=0.0001)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


FAKE = FakeClock()


@pytest.fixture
def fake_clock(monkeypatch):
    """tune's timer reads FAKE, and every generation it times moves FAKE by CLOCK's price of its calls."""
    import biglittle.tune.timing as timing

    real_generate = timing.generate

    def priced_generate(*args, **kwargs):
        r = real_generate(*args, **kwargs)
        FAKE.now += CLOCK.of(r.stats)
        return r

    FAKE.now = 0.0
    monkeypatch.setattr(timing, "time", FAKE)
    monkeypatch.setattr(timing, "generate", priced_generate)
    return FAKE


@dataclass(frozen=True)
class Sleepy(bl.Speculative):
    """Speculative decoding that stalls for `pause` (fake) seconds in every generation, after its
    first commit: slower than its calls say."""
    pause: float = 0.0

    def describe(self):
        return f"sleepy{self.pause}-" + super().describe()

    def run(self, *args, **kwargs):
        for i, step in enumerate(super().run(*args, **kwargs)):
            if i == 0:
                FAKE.now += self.pause
            yield step


def clock_wall(c, pause: float = 0.0) -> float:
    """What the fake clock reads for one round of candidate c (its runs repeat exactly, round to round)."""
    return CLOCK.estimate(c.small_calls, c.big_calls, c.big_positions) + pause * len(PROMPTS)


@pytest.mark.parametrize("pause", [0.0, 0.05])
def test_the_ranking_follows_the_clock_not_the_priced_calls(big, fake_clock, pause):
    """Same model as drafter and verifier: every draft is accepted and every candidate is lossless.
    Priced calls favour the longest draft (Sleepy, draft 8). On the clock, without a pause it wins
    too; pausing 0.05 s a generation makes it slower than big-only, and the clock ranks it last."""
    slow = Sleepy(draft=8, pause=pause)
    fast = bl.Speculative(draft=2)
    common = dict(max_new_tokens=24, policies=[fast, slow], cascades=False, include_small=False, costs=COSTS)
    by_estimate = tune(big, big, PROMPTS, rank_by="estimate", repeats=1, **common)
    assert by_estimate.best.spec == slow.describe()  # what the priced calls alone choose

    r = tune(big, big, PROMPTS, repeats=3, **common)
    c = {c.spec: c for c in r.candidates}
    base, s, f = c["big"], c[slow.describe()], c[fast.describe()]
    assert all(x.meets_floor and x.agreement == 1.0 for x in (s, f))  # lossless: time alone decides
    # each measured time is exactly what the fake clock was moved by
    assert base.wall_s == pytest.approx(clock_wall(base), rel=1e-9)
    assert f.wall_s == pytest.approx(clock_wall(f), rel=1e-9)
    assert s.wall_s == pytest.approx(clock_wall(s, pause), rel=1e-9)
    for x in (base, s, f):
        assert x.speedup == pytest.approx(base.wall_s / x.wall_s, rel=1e-9)
    assert base.speedup == 1.0 and base.rounds == 3 and f.rounds == 3
    # the slowest candidate is timed once only when under PRUNE of the best first round
    assert s.rounds == (1 if s.speedup < run_module.PRUNE * max(x.speedup for x in (base, s, f)) else 3)

    assert r.best.spec == max(r.candidates, key=lambda x: x.speedup).spec
    if pause:
        assert r.best.spec == fast.describe() and s.speedup < 1 < f.speedup
        assert min(r.candidates, key=lambda x: x.speedup).spec == slow.describe()
        est = base.est_s / s.est_s
        assert s.est_error == pytest.approx(est / s.speedup - 1) and s.est_error > 0.15
        assert s.est_speedup is None  # an estimate that far from the clock is not reported
    else:
        assert r.best.spec == slow.describe() and s.speedup > f.speedup > 1
    assert r.settings["repeats"] == 3 and "round-robin" in r.settings["timing"]


def test_progress_counts_every_run(small, big, monkeypatch):
    # a loaded machine can make the candidate look under half big-only's speed after one round,
    # and then it is (rightly) not timed again; this test is about counting, so time everything
    monkeypatch.setattr("biglittle.tune.run.PRUNE", 0.0)
    seen = []
    tune(small, big, PROMPTS, max_new_tokens=6, policies=[bl.Speculative(draft=2)], costs=COSTS, repeats=2,
         progress=lambda done, total, what: seen.append((done, total, what)))
    assert [d for d, _, _ in seen] == list(range(1, len(seen) + 1))
    assert seen[-1][0] == seen[-1][1]  # the bar ends full
    assert any(w.startswith("warm-up") for _, _, w in seen) and any(w.startswith("round 2") for _, _, w in seen)
