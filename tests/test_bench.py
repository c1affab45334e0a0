"""The benchmark harness end to end on tiny models and a tiny task (fast, no downloads)."""
import math
from dataclasses import dataclass

import jsonschema
import pytest

import biglittle as bl
from biglittle.bench.methods import parse_method, split_specs
from biglittle.bench.report import build_report, markdown, pareto_front, validate, write_outputs
from biglittle.bench.runner import BenchConfig, _loop_figures, run_bench
from biglittle.data.metrics import agreement
from biglittle.decoding.schedules import expected_speedup

PROMPTS = ["Hello", "def f(x):", "Once upon"]


@dataclass
class Example:
    id: str
    text: str
    reference: str


class TinyTask:
    """Prompts with the big model's own greedy answers as references, so the metric's value is known:
    100 for big-only and any lossless method."""
    name = "tiny"
    max_new_tokens = 12
    primary_metric = "exact"

    def __init__(self, references):
        self.references = references

    def load(self, n, seed=0):
        return [Example(str(i), p, r) for i, (p, r) in enumerate(zip(PROMPTS, self.references))][:n]

    def build_prompt(self, example, chat):
        return example.text

    def metric(self, outputs, references):
        return {"exact": 100.0 * sum(o == r for o, r in zip(outputs, references)) / len(outputs)}


METHODS = ["big", "small", "speculative:draft=3", "bild:fallback=0.5,rollback=1", "hf-assisted", "prompt-lookup"]


@pytest.fixture(scope="module")
def bench_run(text_pair):
    small, big = text_pair
    refs = [bl.generate(None, big, p, policy=bl.BigOnly(), max_new_tokens=12).text for p in PROMPTS]
    task = TinyTask(refs)
    config = BenchConfig(small.spec, big.spec, ["tiny"], METHODS, n=3, repeats=2, chat=False)
    rows, samples = run_bench(config, small, big, [task], [parse_method(m) for m in METHODS], show_progress=False)
    return config, task, {r["method"]: r for r in rows}, samples


def test_every_method_has_a_row_and_samples(bench_run):
    config, task, rows, samples = bench_run
    assert list(rows) == METHODS
    assert len(samples) == 3 * len(METHODS)
    assert all(len(s.walls) == 2 for s in samples)


def test_baseline_and_lossless_methods(bench_run):
    _, _, rows, _ = bench_run
    assert rows["big"]["speedup"] == pytest.approx(1.0)
    assert rows["big"]["quality"] == {"exact": 100.0}
    assert rows["big"]["big_calls_per_token"] == 1.0 and rows["big"]["small_share"] == 0.0
    for lossless in ("speculative:draft=3", "hf-assisted", "prompt-lookup"):
        assert rows[lossless]["exact_match"] == 1.0, lossless
        assert rows[lossless]["quality_delta"] == {"exact": 0.0}
    assert rows["small"]["small_share"] == 1.0 and rows["small"]["big_calls_per_token"] == 0.0


def test_loop_figures_are_consistent(bench_run):
    _, _, rows, samples = bench_run
    spec = rows["speculative:draft=3"]
    group = [s for s in samples if s.method == "speculative:draft=3"]
    accepted = sum(s.stats["accepted"] for s in group)
    assert spec["alpha"] == pytest.approx(accepted / sum(s.stats["drafted"] for s in group))
    assert spec["accepted_per_big_call"] == pytest.approx(accepted / sum(s.stats["big_calls"] for s in group))
    assert spec["efficiency"] == pytest.approx(spec["speedup"] / spec["bound"])
    assert rows["hf-assisted"]["alpha"] is None  # a peer reports no loop statistics


def test_decode_phase_speedup_leaves_out_each_prompt_read(bench_run):
    _, _, rows, samples = bench_run
    base = [s for s in samples if s.method == "big"]
    group = [s for s in samples if s.method == "speculative:draft=3"]
    assert all(0 < s.stats["prompt_s"] <= s.stats["wall_s"] for s in base + group)
    decode = lambda ss: sum(s.wall_s - s.stats["prompt_s"] for s in ss)  # noqa: E731
    assert rows["speculative:draft=3"]["decode_speedup"] == pytest.approx(decode(base) / decode(group))
    assert rows["big"]["decode_speedup"] == pytest.approx(1.0)
    assert rows["small"]["decode_speedup"] is None  # no big model: no moment the prompt was read by it
    assert rows["hf-assisted"]["decode_speedup"] is None  # a peer reports no loop statistics


def test_report_validates_and_is_written(bench_run, tmp_path):
    config, task, rows, samples = bench_run
    report = build_report(config, list(rows.values()), samples)
    validate(report)
    paths = write_outputs(report, tmp_path, {"tiny": task})
    assert [p.name for p in paths] == ["bench.json", "summary.md", "pareto-tiny.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    md = markdown(report)
    assert "| `bild:fallback=0.5,rollback=1` |" in md and "## tiny" in md
    broken = dict(report)
    del broken["results"]
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    bad_row = dict(report, results=[dict(report["results"][0], speedup="fast")])
    with pytest.raises(jsonschema.ValidationError):
        validate(bad_row)


def test_bench_needs_the_baseline(text_pair):
    small, big = text_pair
    config = BenchConfig(small.spec, big.spec, ["tiny"], ["small"])
    with pytest.raises(ValueError, match="must include 'big'"):
        run_bench(config, small, big, [TinyTask(["x"] * 3)], [parse_method("small")], show_progress=False)


def test_split_specs():
    assert split_specs("big,small,bild:fallback=0.6,rollback=5,speculative:draft=4") == [
        "big", "small", "bild:fallback=0.6,rollback=5", "speculative:draft=4"]
    assert split_specs("big; speculative:draft=2,schedule=auto ;big") == ["big", "speculative:draft=2,schedule=auto"]


def test_bad_method_specs():
    with pytest.raises(bl.ConfigError):
        parse_method("bild:fallback=-1")
    with pytest.raises(bl.ConfigError):
        parse_method("warp-speed")
    with pytest.raises(bl.ConfigError):
        parse_method("hf-assisted:threshold")


def test_pareto_front_by_hand():
    pts = [(1.0, 10.0), (2.0, 9.0), (1.5, 8.0), (3.0, 5.0), (0.5, 10.0)]
    assert pareto_front(pts) == [0, 1, 3]


def test_agreement_and_bound_by_hand():
    assert agreement([1, 2, 3, 4], [1, 2, 0, 4])["agreement"] == 0.75
    assert agreement([1, 2], [1, 2, 3, 4])["agreement"] == 0.5
    st = dict(big_calls=10, small_calls=40, drafted=40, accepted=30, rounds=10, small_tokens=30, big_tokens=10,
              small_s=0.4, big_s=1.0, rollbacks=5, fallbacks=0)
    fig = _loop_figures(st, 40)
    assert fig["alpha"] == 0.75 and fig["c"] == pytest.approx(0.1) and fig["mean_draft"] == 4
    assert fig["bound"] == pytest.approx((1 - 0.75 ** 5) / (0.25 * 1.4))
    assert fig["bound"] == pytest.approx(expected_speedup(0.75, 4, 0.1))
    assert math.isclose(fig["small_share"], 0.75) and fig["big_calls_per_token"] == 0.25


def test_bench_command_end_to_end(text_pair, tmp_path):
    """`biglittle bench` on the built-in code prompts (no download) with the tiny pair."""
    import json

    from typer.testing import CliRunner

    from biglittle.cli import app

    small, big = text_pair
    out = tmp_path / "bench"
    res = CliRunner().invoke(app, ["bench", "--tasks", "code", "--n", "2", "--max-new-tokens", "8",
                                   "--methods", "small,speculative:draft=2,bild:fallback=0.5,rollback=2",
                                   "--small", small.spec, "--big", big.spec, "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "bench.json").read_text())
    validate(report)
    assert [r["method"] for r in report["results"]] == [
        "big", "small", "speculative:draft=2", "bild:fallback=0.5,rollback=2"]  # big added first
    assert (out / "summary.md").read_text().startswith("# biglittle bench")
    assert (out / "pareto-code.png").stat().st_size > 0


def test_bench_command_bad_input(text_pair, tmp_path):
    from typer.testing import CliRunner

    from biglittle.cli import app

    small, big = text_pair
    res = CliRunner().invoke(app, ["bench", "--tasks", "squad", "--small", small.spec, "--big", big.spec])
    assert res.exit_code == 2 and "unknown task 'squad'" in res.stderr
    res = CliRunner().invoke(app, ["bench", "--methods", "bild:fallback=-1", "--small", small.spec, "--big", big.spec])
    assert res.exit_code == 2 and "fallback must be" in res.stderr
