"""The `biglittle generate` command, run in-process with typer's runner."""
import json

import pytest
from typer.testing import CliRunner

import biglittle as bl
from biglittle.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def specs(text_pair):
    small, big = text_pair
    return ["--small", small.spec, "--big", big.spec]


def test_generate_json_matches_the_api(specs, text_pair):
    small, big = text_pair
    res = runner.invoke(app, ["generate", *specs, "--policy", "speculative", "--draft", "3",
                              "--max-new-tokens", "20", "--json", "Hello"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    ref = bl.generate(small, big, "Hello", policy=bl.Speculative(draft=3), max_new_tokens=20)
    assert data["token_ids"] == ref.token_ids
    assert data["text"] == ref.text
    assert data["stats"]["new_tokens"] == 20
    assert len(data["origins"]) == 20


def test_generate_bild_flags_reach_the_policy(specs):
    res = runner.invoke(app, ["generate", *specs, "--fallback", "2", "--rollback", "inf",
                              "--max-new-tokens", "10", "--json", "Hello"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["origins"] == ["big"] * 10
    assert data["stats"]["policy"].startswith("bild:fallback=2.0,rollback=inf")


def test_generate_plain_and_show_origin(specs):
    plain = runner.invoke(app, ["generate", *specs, "--max-new-tokens", "10", "Hello"])
    assert plain.exit_code == 0, plain.output
    assert "big calls" in plain.stderr
    # not a terminal here: no colours to show, and it says so (test_cli_output runs it on one)
    coloured = runner.invoke(app, ["generate", *specs, "--max-new-tokens", "10", "--show-origin", "Hello"])
    assert coloured.exit_code == 0
    assert "--show-origin has no effect when the output is not a terminal" in coloured.stderr
    assert coloured.stdout == plain.stdout


def test_big_policy_needs_no_small_model(text_pair):
    small, big = text_pair
    res = runner.invoke(app, ["generate", "--big", big.spec, "--policy", "big", "--max-new-tokens", "5", "--json", "Hi"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["stats"]["small_calls"] == 0


@pytest.mark.parametrize("args, message", [
    (["--fallback", "-1"], "fallback must be"),
    (["--policy", "speculative", "--draft", "0"], "draft must be"),
    (["--policy", "speculative", "--schedule", "fast"], "schedule must be"),
    (["--temperature", "-2"], "temperature"),
])
def test_bad_settings_exit_with_a_clear_message(specs, args, message):
    res = runner.invoke(app, ["generate", *specs, *args, "Hello"])
    assert res.exit_code == 2
    assert message in res.stderr


def test_bad_spec_and_empty_prompt(specs):
    res = runner.invoke(app, ["generate", "--small", "nope", "--big", "hf:/x", "Hello"])
    assert res.exit_code == 2 and "accepted forms" in res.stderr
    res = runner.invoke(app, ["generate", *specs, ""])
    assert res.exit_code == 2 and "empty" in res.stderr


def test_help_explains_the_flags():
    res = runner.invoke(app, ["generate", "--help"])
    assert res.exit_code == 0
    for flag in ("--small", "--big", "--policy", "--fallback", "--rollback", "--draft", "--temperature",
                 "--max-new-tokens", "--chat", "--json", "--show-origin"):
        assert flag in res.output
