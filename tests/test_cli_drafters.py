"""The command line's drafter options: `generate --drafter/--compare`, `bench --prompts`."""
import json

import pytest
from typer.testing import CliRunner

import biglittle as bl
from biglittle.cli import app
from biglittle.data import DataError
from biglittle.data.prompt_file import PromptFileTask

runner = CliRunner()
REPEAT = "abc abc abc abc abc abc"


@pytest.fixture(scope="module")
def specs(text_pair):
    small, big = text_pair
    return ["--small", small.spec, "--big", big.spec]


def test_generate_with_the_lookup_drafter_equals_big_only(specs, text_pair):
    _, big = text_pair
    res = runner.invoke(app, ["generate", *specs, "--policy", "speculative", "--drafter", "lookup", "--draft", "8",
                              "--max-new-tokens", "24", "--json", REPEAT])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    ref = bl.generate(None, big, REPEAT, policy=bl.BigOnly(), max_new_tokens=24)
    assert data["token_ids"] == ref.token_ids
    assert data["stats"]["policy"].startswith("speculative:") and "drafter=lookup" in data["stats"]["policy"]
    assert data["stats"]["small_calls"] == 0


def test_drafter_flag_on_a_policy_without_drafts_is_refused(specs):
    res = runner.invoke(app, ["generate", *specs, "--policy", "bild", "--drafter", "lookup", "Hello"])
    assert res.exit_code == 2
    assert "takes" in res.output and "drafter" in res.output


def test_compare_reports_speedup_and_agreement(specs):
    res = runner.invoke(app, ["generate", *specs, "--policy", "speculative:drafter=hybrid,draft=4", "--compare",
                              "--max-new-tokens", "16", "--json", REPEAT])
    assert res.exit_code == 0, res.output
    c = json.loads(res.stdout)["compare"]
    assert c["agreement"] == 1.0 and c["exact"] is True          # lossless: the same answer as big-only
    assert c["speedup"] == pytest.approx(c["big_only_s"] / c["policy_s"])
    res = runner.invoke(app, ["generate", *specs, "--policy", "small", "--compare", "--max-new-tokens", "16", REPEAT])
    assert res.exit_code == 0, res.output
    assert "big model alone:" in res.output and "agreement with big-only" in res.output


def write_jsonl(path, lines):
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


def test_prompt_file_task_reads_prompts_messages_and_references(tmp_path):
    f = write_jsonl(tmp_path / "mine.jsonl", [{"prompt": "Say hi.", "reference": "hi"},
                                               {"messages": [{"role": "user", "content": "Say yo."}], "reference": "yo"}])
    task = PromptFileTask(f)
    assert task.name == "prompts-mine" and task.primary_metric == "bleu"
    a, b = task.load()
    assert task.build_prompt(a, chat=False) == "Say hi."
    assert task.build_prompt(b, chat=True) == [{"role": "user", "content": "Say yo."}]
    with pytest.raises(DataError, match="--chat"):
        task.build_prompt(b, chat=False)
    assert set(task.metric(["hi", "yo"], ["hi", "yo"])) >= {"bleu", "chrf", "rougeL"}
    no_refs = PromptFileTask(write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "x"}]))
    assert no_refs.primary_metric is None


@pytest.mark.parametrize("content, message", [
    (b'{"prompt": "ok"}\n{"nope": 1}\n', "bad.jsonl:2: expected"),
    (b'{"prompt": "ok"}\nnot json\n', "bad.jsonl:2: not JSON"),
    (b'{"prompt": "ok"}\n{"prompt": "\xff"}\n', "bad.jsonl:2: not UTF-8"),
    (b"\n\n", "holds no prompts"),
])
def test_bad_prompt_files_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        PromptFileTask(path)


def test_bench_on_your_own_prompts(specs, tmp_path):
    f = write_jsonl(tmp_path / "mine.jsonl", [{"prompt": REPEAT}, {"prompt": "xyz xyz xyz"}])
    out = tmp_path / "out"
    res = runner.invoke(app, ["bench", *specs, "--prompts", str(f), "--n", "2", "--no-chat", "--max-new-tokens", "12",
                              "--methods", "big,speculative:drafter=lookup,draft=8", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "bench.json").read_text())
    rows = {r["method"]: r for r in report["results"]}
    assert rows["speculative:drafter=lookup,draft=8"]["exact_match"] == 1.0
    assert all(r["task"] == "prompts-mine" for r in rows.values())
