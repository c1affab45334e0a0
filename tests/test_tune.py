"""Auto-tuning picks the obviously best option on constructed cases; its cascade predictions are
what the cascade really does; its config file drives generate. Ranking by the clock, the quality
floor with bootstrap intervals, and the bootstrap itself: tests/test_tune_measured.py."""
import json
import math
import re

import pytest
from typer.testing import CliRunner

import biglittle as bl
from biglittle.cli import app
from biglittle.tune import Costs, grid, measure_costs, tune
from tiny import make_model

N = 12
PROMPTS = [[3, 1, 4, 1, 5, 9, 2, 6], [100, 50, 20, 30, 40], [7, 7, 1]]
# a big call costs 50× a small one: drafting pays whenever drafts are accepted
COSTS = Costs(small_call_s=0.001, big_call_s=0.05, big_position_s=0.001)
SMALL_GRID = grid(drafts=(1, 4, 8), fallbacks=(0.5, 0.9), rollbacks=(2.0, float("inf")), lookups=())


@pytest.fixture(scope="module")
def stranger(tiny_dir):
    """A small model unrelated to the big one: its drafts are almost never right."""
    return bl.load_model(f"hf:{make_model(str(tiny_dir / 'stranger'), seed=99, sharpen=50.0)}")


def test_a_small_model_identical_to_the_big_one_is_picked_alone(big):
    r = tune(big, big, PROMPTS, max_new_tokens=N, policies=SMALL_GRID, costs=COSTS, rank_by="estimate", repeats=1)
    assert r.best.spec == "small"
    assert r.best.agreement == 1.0 and r.best.big_calls == 0 and r.best.agreement_delta_ci == [0.0, 0.0]
    base = r.candidates[-1]
    assert base.spec == "big" and base.est_s / r.best.est_s == pytest.approx(50, rel=0.2)  # one small step per big one


def test_with_only_draft_lengths_the_longest_draft_wins_when_every_draft_is_accepted(big):
    # 72 new tokens: draft 8 needs 8 big calls per prompt (blocks of 9), every shorter draft more
    r = tune(big, big, PROMPTS[:2], max_new_tokens=72,
             policies=grid(drafts=range(1, 9), fallbacks=(), rollbacks=(), lookups=()),
             cascades=False, include_small=False, costs=COSTS, rank_by="estimate", repeats=1)
    assert r.best.spec.startswith("speculative:draft=8,")
    assert r.pair["alpha"] == 1.0
    assert all(c.meets_floor for c in r.candidates)  # greedy speculative is lossless


def test_a_useless_drafter_leaves_the_big_model_alone(stranger, big):
    r = tune(stranger, big, PROMPTS, max_new_tokens=N, policies=SMALL_GRID, costs=COSTS, rank_by="estimate",
             repeats=1)
    assert r.best.spec == "big" and r.best.speedup == 1.0
    spec = {c.spec: c for c in r.candidates}
    assert spec["small"].agreement < 0.5 and not spec["small"].meets_floor
    assert spec["speculative:draft=1,schedule=constant,confidence_stop=None,acceptance=exact,drafter=model,ngram=3"
                ].est_s > spec["big"].est_s
    # without the floor, the cheapest thing there is would win: the small model alone
    assert min(r.candidates, key=lambda c: c.est_s).spec == "small"


def test_cascade_predictions_are_what_the_cascade_does(small, big):
    """Tune evaluates cascades from the small-only and big-only runs; running the chosen
    thresholds for real gives the same answers, agreement and calls."""
    from biglittle.data import agreement

    r = tune(small, big, PROMPTS, max_new_tokens=N, policies=[], costs=COSTS, min_agreement=0.0, repeats=1)
    cascades = [c for c in r.candidates if c.spec.startswith("cascade:")]
    assert {c.spec.split(",")[0] for c in cascades} == {"cascade:scorer=small-confidence", "cascade:scorer=big-score"}
    assert any(0 < c.escalated < 1 for c in cascades)
    refs = [bl.generate(None, big, p, policy=bl.BigOnly(), max_new_tokens=N).token_ids for p in PROMPTS]
    for c in cascades:
        runs = [bl.generate(small, big, p, policy=bl.parse_policy(c.spec), max_new_tokens=N) for p in PROMPTS]
        escalated = sum(x.stats.extra["answered_by"] == "big" for x in runs) / len(runs)
        assert escalated == c.escalated, c.spec
        assert sum(agreement(x.token_ids, ref)["agreement"] for x, ref in zip(runs, refs)) / len(runs) \
            == pytest.approx(c.agreement)
        assert sum(x.stats.big_calls for x in runs) == c.big_calls
        assert sum(x.stats.small_calls for x in runs) == c.small_calls
        assert sum(x.stats.big_positions for x in runs) == c.big_positions


def test_metric_floor_on_a_task_with_references(text_pair):
    """Quality as a task metric: exact match with references that are big-only's own answers,
    at most 1% worse than big-only (which scores 100)."""
    small, big = text_pair
    prompts = ["Hello", "abc", "The cat"]
    refs = [bl.generate(None, big, p, policy=bl.BigOnly(), max_new_tokens=N).text for p in prompts]

    class ExactMatch:
        primary_metric = "exact"

        def postprocess(self, text):
            return text

        def metric(self, outputs, references):
            return {"exact": 100.0 * sum(o == r for o, r in zip(outputs, references)) / len(outputs)}

    r = tune(small, big, prompts, max_metric_loss=0.01, task=ExactMatch(), references=refs, max_new_tokens=N,
             policies=SMALL_GRID, costs=COSTS, repeats=1)
    assert r.quality == {"measure": "exact", "max_loss": 0.01}
    assert r.best.metric == 100.0 and r.best.metric_delta == 0.0 and r.best.metric_delta_ci == [0.0, 0.0]
    assert all(c.meets_floor == (c.metric == 100.0) for c in r.candidates)


def test_config_file_round_trip_and_generate_config(text_pair, tmp_path):
    small, big = text_pair
    r = tune(small, big, ["Hello", "abc"], max_new_tokens=8, policies=SMALL_GRID, costs=COSTS, repeats=1)
    path = tmp_path / "tune.json"
    r.save(path, small=small.spec, big=big.spec, task=None)
    data = json.loads(path.read_text())
    assert data["policy"] == r.best.spec and data["format"] == "biglittle-config/1"
    assert len(data["candidates"]) == len(r.candidates)
    json.dumps(data, allow_nan=False)  # strict JSON
    assert bl.load_policy_config(path) == bl.parse_policy(r.best.spec) == bl.parse_policy(str(path))
    res = CliRunner().invoke(app, ["generate", "--config", str(path), "--max-new-tokens", "6", "--json", "Hello"])
    assert res.exit_code == 0, res.output  # the models come from the file too
    want = bl.generate(small if r.best.spec != "big" else None, big, "Hello", policy=bl.parse_policy(r.best.spec),
                       max_new_tokens=6)
    assert json.loads(res.stdout)["token_ids"] == want.token_ids


def test_cli_tune_on_the_code_task_and_on_a_prompts_file(text_pair, tmp_path):
    small, big = text_pair
    common = ["tune", "--small", small.spec, "--big", big.spec, "--max-new-tokens", "4", "--drafts", "2",
              "--fallbacks", "0.5", "--rollbacks", "2,inf", "--repeats", "1"]
    out = tmp_path / "code.json"
    res = CliRunner().invoke(app, common + ["--task", "code", "--n", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["task"] == "code" and data["settings"]["prompts"] == 2 and data["settings"]["chat"] is True
    assert {c["spec"].split(":")[0] for c in data["candidates"]} == {"small", "cascade", "bild", "speculative", "big"}
    assert "chosen:" in res.stderr
    # the measured costs (see test_measure_costs for why these are the guarantees), and every
    # candidate that ran is priced at them from its own counts
    costs = data["costs"]
    assert costs["small_call_s"] > 0 and costs["big_call_s"] + costs["big_position_s"] > 0
    for c in data["candidates"]:
        assert c["big_calls"] + c["small_calls"] > 0, c["spec"]
        assert c["est_s"] > 0 and c["est_s"] == pytest.approx(
            c["small_calls"] * costs["small_call_s"] + c["big_calls"] * costs["big_call_s"]
            + c["big_positions"] * costs["big_position_s"]), c["spec"]
    assert re.search(r"^tuning: (\d+)/\1 runs, \d+ s, ", res.stderr, re.M), res.stderr  # progress, not a tty
    assert data["settings"]["repeats"] == 1 and data["chosen"]["speedup"] > 0 and "decided" in data["decision"]
    assert any("drafter=lookup" in c["spec"] for c in data["candidates"])
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Hello"}\n{"prompt": "abc"}\n')
    res = CliRunner().invoke(app, common + ["--prompts", str(prompts), "--no-chat", "--no-cascades", "--out",
                                            str(tmp_path / "p.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "p.json").read_text())["settings"]["prompts"] == 2


def test_measure_costs(small, big):
    """On the real clock only this much is guaranteed: a timed forward pass takes some time, so a
    small step costs > 0, and a one-token big step (big_call_s + big_position_s, the fit's value at
    one position, or the per-position slope when the fit clamps the fixed part at 0) costs > 0.
    The fixed part alone may be 0 (the fit clamps it), and on a busy machine the block may time
    faster than one token (then the slope is clamped to 0): neither sign is guaranteed."""
    c = measure_costs(small, big, PROMPTS[0], repeats=2, block=4)
    assert 0 < c.small_call_s < math.inf and 0 <= c.big_call_s < math.inf and 0 <= c.big_position_s < math.inf
    assert c.big_call_s + c.big_position_s > 0


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class PricedSession:
    """A model session whose every extend moves the fake clock by fixed + per_position × positions."""

    def __init__(self, inner, clock, fixed, per_position):
        self.inner, self.clock, self.fixed, self.per_position = inner, clock, fixed, per_position

    def extend(self, ids, *args, **kwargs):
        self.clock.now += self.fixed + self.per_position * len(ids)
        return self.inner.extend(ids, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_measure_costs_on_a_clock_with_known_prices(small, big, monkeypatch):
    """With the timer replaced by a clock that each forward pass moves by a known price (a small step
    2 ms; a big call 10 ms + 1 ms per position), the measured costs are exactly those prices."""
    import biglittle.tune.costs as costs_module

    clock = FakeClock()
    monkeypatch.setattr(costs_module, "time", clock)
    for model, fixed, per_position in ((small, 0.002, 0.0), (big, 0.010, 0.001)):
        real = model.session
        monkeypatch.setattr(model, "session", lambda *a, real=real, fixed=fixed, per_position=per_position, **k:
                            PricedSession(real(*a, **k), clock, fixed, per_position))
    c = measure_costs(small, big, PROMPTS[0], repeats=3, block=4)
    assert c.small_call_s == pytest.approx(0.002, rel=1e-9)
    assert c.big_call_s == pytest.approx(0.010, rel=1e-9) and c.big_position_s == pytest.approx(0.001, rel=1e-9)
    assert c.ratio == pytest.approx(0.002 / 0.011)
    assert c.estimate(small_calls=3, big_calls=2, big_positions=5) == pytest.approx(3 * 0.002 + 2 * 0.010 + 5 * 0.001)


def test_bad_inputs(small, big, tmp_path):
    with pytest.raises(bl.ConfigError, match="at least one sample prompt"):
        tune(small, big, [], costs=COSTS)
    with pytest.raises(bl.ConfigError, match="min_agreement must be"):
        tune(small, big, PROMPTS, min_agreement=1.5, costs=COSTS)
    with pytest.raises(bl.ConfigError, match="needs a task with a metric"):
        tune(small, big, PROMPTS, max_metric_loss=0.01, costs=COSTS)
    with pytest.raises(bl.ConfigError, match="rank_by"):
        tune(small, big, PROMPTS, rank_by="vibes", costs=COSTS)
    with pytest.raises(bl.ConfigError, match="repeats must be"):
        tune(small, big, PROMPTS, repeats=0, costs=COSTS)
    with pytest.raises(bl.ConfigError, match="cannot read config file"):
        bl.load_policy_config(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"policies": []}')
    with pytest.raises(bl.ConfigError, match="no \"policy\" spec"):
        bl.parse_policy(str(tmp_path / "bad.json"))
    res = CliRunner().invoke(app, ["tune", "--small", small.spec, "--big", big.spec, "--task", "nope"])
    assert res.exit_code == 2 and "unknown task" in res.stderr
