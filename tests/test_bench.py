"""The benchmark harness end to end on tiny models and a tiny task (fast, no downloads), and its
summary figures on hand-made samples whose numbers are known."""
import json
import math
from dataclasses import dataclass

import jsonschema
import pytest

import biglittle as bl
from biglittle.bench.methods import parse_method, split_specs
from biglittle.bench.report import build_report, markdown, pareto_front, validate, write_outputs
from biglittle.bench.runner import BenchConfig, _loop_figures, run_bench, summarize
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


def test_loop_figures_of_the_run(bench_run):
    """The run's own figures where they are known without the formulas (those are checked on
    hand-made samples below): each big model reads the prompt inside its wall time, and the
    figures a method cannot have are null."""
    _, _, rows, samples = bench_run
    base = [s for s in samples if s.method == "big"]
    group = [s for s in samples if s.method == "speculative:draft=3"]
    assert all(0 < s.stats["prompt_s"] <= s.stats["wall_s"] for s in base + group)
    assert rows["big"]["decode_speedup"] == 1.0 and rows["big"]["alpha"] is None  # big-only drafts nothing
    assert 0 < rows["speculative:draft=3"]["alpha"] <= 1
    assert rows["small"]["decode_speedup"] is None  # no big model: no moment the prompt was read by it
    assert rows["hf-assisted"]["decode_speedup"] is None  # a peer reports no loop statistics
    assert rows["hf-assisted"]["alpha"] is None


# ---------------------------------------------------------------- the summary on known numbers

def by_hand_samples():
    """Two examples, three methods, every number chosen so the figures are simple fractions.

    big:   walls 1.0, 2.0 s (prompt read in 0.2, 0.5 s); 10 and 6 tokens, all its own
    spec:  walls 0.5, 1.5 s (prompt read in 0.1, 0.3 s); the same tokens but one (ex 0, position 7);
           drafted 9 + 3, accepted 6 + 3, rounds 3 + 1, big calls 4 + 2, small calls 9 + 3,
           small_s 0.09 + 0.03, big_s 0.4 + 0.2, small tokens 6 + 3, big tokens 4 + 3
    small: walls 0.25, 0.25 s; 5 tokens (the first 5 of big's) and 6 (big's); no big model
    """
    from biglittle.bench.runner import Sample

    def st(drafted, accepted, rounds, big_calls, small_calls, small_s, big_s, small_tokens, big_tokens, prompt_s):
        return dict(drafted=drafted, accepted=accepted, rounds=rounds, big_calls=big_calls, small_calls=small_calls,
                    small_s=small_s, big_s=big_s, small_tokens=small_tokens, big_tokens=big_tokens,
                    rollbacks=0, fallbacks=0, prompt_s=prompt_s)

    t0, t1 = list(range(1, 11)), [20, 21, 22, 23, 24, 25]
    t0_spec = t0[:7] + [99] + t0[8:]
    return [
        Sample("tiny", "big", "0", t0, "a", 1.0, [1.0], st(0, 0, 10, 10, 0, 0.0, 1.0, 0, 10, 0.2)),
        Sample("tiny", "big", "1", t1, "b", 2.0, [2.0], st(0, 0, 6, 6, 0, 0.0, 2.0, 0, 6, 0.5)),
        Sample("tiny", "spec", "0", t0_spec, "a?", 0.5, [0.5], st(9, 6, 3, 4, 9, 0.09, 0.4, 6, 4, 0.1)),
        Sample("tiny", "spec", "1", t1, "b", 1.5, [1.5], st(3, 3, 1, 2, 3, 0.03, 0.2, 3, 3, 0.3)),
        Sample("tiny", "small", "0", t0[:5], "x", 0.25, [0.25], st(0, 0, 0, 0, 5, 0.2, 0.0, 5, 0, None)),
        Sample("tiny", "small", "1", t1, "b", 0.25, [0.25], st(0, 0, 0, 0, 6, 0.2, 0.0, 6, 0, None)),
    ]


HAND_EXAMPLES = [Example("0", "p0", "a"), Example("1", "p1", "b")]


def test_summary_figures_equal_hand_computed_constants():
    rows = {r["method"]: r for r in summarize(TinyTask(["a", "b"]), HAND_EXAMPLES, by_hand_samples(),
                                              ["big", "spec", "small"])}
    big, spec, small = rows["big"], rows["spec"], rows["small"]

    assert big["time_s"] == 3.0 and big["new_tokens"] == 16 and big["tokens_per_s"] == pytest.approx(16 / 3)
    assert big["speedup"] == 1.0 and big["speedup_median"] == 1.0 and big["decode_speedup"] == 1.0
    assert big["quality"] == {"exact": 100.0} and big["agreement"] == 1.0 and big["exact_match"] == 1.0
    assert big["alpha"] is None and big["c"] is None and big["bound"] is None and big["efficiency"] is None
    assert big["big_calls_per_token"] == 1.0 and big["small_share"] == 0.0 and big["big_share"] == 1.0

    assert spec["time_s"] == 2.0 and spec["new_tokens"] == 16 and spec["tokens_per_s"] == 8.0
    assert spec["speedup"] == pytest.approx(1.5)             # 3.0 s / 2.0 s
    assert spec["speedup_median"] == pytest.approx(5 / 3)    # median of 1.0/0.5 = 2 and 2.0/1.5 = 4/3
    assert spec["decode_speedup"] == pytest.approx(23 / 16)  # (0.8 + 1.5) / (0.4 + 1.2)
    assert spec["quality"] == {"exact": 50.0} and spec["quality_delta"] == {"exact": -50.0}
    assert spec["agreement"] == pytest.approx(0.95) and spec["exact_match"] == 0.5  # 9/10 and 6/6 positions
    assert spec["alpha"] == 0.75                             # 9 accepted / 12 drafted
    assert spec["c"] == pytest.approx(0.1)                   # (0.12 s / 12 calls) / (0.6 s / 6 calls)
    assert spec["mean_draft"] == 3.0                         # 12 drafted / 4 rounds
    assert spec["bound"] == pytest.approx(875 / 416)         # (1 − 0.75⁴) / (0.25 · 1.3) = (175/256) / (13/40)
    assert spec["efficiency"] == pytest.approx(1.5 * 416 / 875)
    assert spec["accepted_per_big_call"] == 1.5 and spec["big_calls_per_token"] == 0.375  # 9/6, 6/16
    assert spec["small_share"] == 0.5625 and spec["big_share"] == 0.4375                  # 9/16, 7/16

    assert small["speedup"] == 6.0 and small["speedup_median"] == 6.0  # 3.0/0.5; median of 4 and 8
    assert small["decode_speedup"] is None  # it never had a big model read the prompt
    assert small["agreement"] == pytest.approx(0.75)  # 5/10 (it stopped early) and 6/6
    assert small["small_share"] == 1.0 and small["alpha"] is None


def test_written_files_hold_what_was_run(tmp_path):
    """bench.json parses back to the report, summary.md has one row per method with its figures,
    and the plot is a PNG."""
    task, samples = TinyTask(["a", "b"]), by_hand_samples()
    rows = summarize(task, HAND_EXAMPLES, samples, ["big", "spec", "small"])
    config = BenchConfig("s-model", "b-model", ["tiny"], ["big", "spec", "small"], n=2, repeats=1, chat=False)
    paths = write_outputs(build_report(config, rows, samples), tmp_path, {"tiny": task})
    assert [p.name for p in paths] == ["bench.json", "summary.md", "pareto-tiny.png"]

    data = json.loads(paths[0].read_text())
    assert data["schema"] == "biglittle-bench/1" and data["config"] == config.to_dict()
    assert [(r["method"], r["n"], r["new_tokens"]) for r in data["results"]] == [
        ("big", 2, 16), ("spec", 2, 16), ("small", 2, 11)]
    assert data["results"][1]["speedup"] == 1.5 and data["results"][1]["alpha"] == 0.75
    assert [(s["method"], s["example_id"], s["token_ids"], s["wall_s"]) for s in data["samples"]] == [
        (s.method, s.example_id, s.token_ids, s.wall_s) for s in samples]

    md = paths[1].read_text()
    assert md.startswith("# biglittle bench") and "## tiny" in md
    for method in ("big", "spec", "small"):
        assert md.count(f"| `{method}` |") == 1, method
    spec_row = next(line for line in md.splitlines() if line.startswith("| `spec` |"))
    cells = [c.strip() for c in spec_row.strip("|").split("|")]
    # tok/s, speedup, decode, quality ... α, c, bound, efficiency
    assert cells[1:5] == ["8.0", "1.50×", "1.44×", "exact 50.00"] and cells[-4:] == ["0.75", "0.10", "2.10", "71%"]

    png = paths[2].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR" and len(png) > 1000


def test_report_validates_and_is_written(bench_run, tmp_path):
    config, task, rows, samples = bench_run
    report = build_report(config, list(rows.values()), samples)
    validate(report)
    paths = write_outputs(report, tmp_path, {"tiny": task})
    assert [p.name for p in paths] == ["bench.json", "summary.md", "pareto-tiny.png"]
    data = json.loads(paths[0].read_text())
    assert [r["method"] for r in data["results"]] == METHODS and all(r["n"] == 3 for r in data["results"])
    assert data["results"] == json.loads(json.dumps(list(rows.values())))
    assert [(s["method"], s["token_ids"]) for s in data["samples"]] == [(s.method, s.token_ids) for s in samples]
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = markdown(report)
    assert paths[1].read_text() == md and "## tiny" in md
    for method in METHODS:
        assert md.count(f"| `{method}` |") == 1, method
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
    assert all(r["task"] == "code" and r["n"] == 2 and 0 < r["new_tokens"] <= 2 * 8 for r in report["results"])
    assert len(report["samples"]) == 2 * 4 and report["config"]["max_new_tokens"] == 8
    md = (out / "summary.md").read_text()
    assert md.startswith("# biglittle bench") and "## code" in md
    for r in report["results"]:
        assert md.count(f"| `{r['method']}` |") == 1, r["method"]
    assert (out / "pareto-code.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_command_bad_input(text_pair, tmp_path):
    from typer.testing import CliRunner

    from biglittle.cli import app

    small, big = text_pair
    res = CliRunner().invoke(app, ["bench", "--tasks", "squad", "--small", small.spec, "--big", big.spec])
    assert res.exit_code == 2 and "unknown task 'squad'" in res.stderr
    res = CliRunner().invoke(app, ["bench", "--methods", "bild:fallback=-1", "--small", small.spec, "--big", big.spec])
    assert res.exit_code == 2 and "fallback must be" in res.stderr
