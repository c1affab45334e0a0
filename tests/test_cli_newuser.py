"""The command line as a new user meets it (issue 21, items 2–7), through the real program:
policy specs, errors that say where, catalog checks before downloads, --context, output for
pipes, and honest labels."""
import json
import re

import pytest

from typer.testing import CliRunner

import biglittle as bl
from biglittle.cli import app
from biglittle.errors import ConfigError
from biglittle.policies import apply_overrides
from cli_run import run
from test_cli import specs  # noqa: F401  (the fixture: --small/--big of the tiny text pair)

invoke = CliRunner().invoke


def test_policy_takes_any_spec_and_flags_set_its_settings(specs, text_pair):
    small, big = text_pair
    r = run("generate", *specs, "--policy", "speculative:draft=2", "--confidence-stop", "0.3",
            "--max-new-tokens", "12", "--json", "Hello")
    assert r.returncode == 0, r.stderr
    want = bl.generate(small, big, "Hello", policy=bl.Speculative(draft=2, confidence_stop=0.3), max_new_tokens=12)
    data = json.loads(r.stdout)
    assert data["token_ids"] == want.token_ids and data["stats"]["policy"] == want.stats.policy


def test_a_flag_the_policy_does_not_use_is_refused_as_the_server_refuses_it(specs):
    with pytest.raises(ConfigError) as server_says:
        apply_overrides(bl.BiLD(), {"draft": 0})
    r = run("generate", *specs, "--policy", "bild", "--draft", "0", "Hello")
    assert r.returncode == 2 and str(server_says.value) in r.stderr, r.stderr
    r = invoke(app, ["generate", *specs, "--top-k", "5", "Hello"])  # the same checks, in-process
    assert r.exit_code == 2 and "--top-k apply only when sampling" in r.stderr, r.stderr


def test_errors_say_where(specs, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_bytes(b'{"prompt": "fine"}\n{"prompt": "caf\xe9"}\n')
    r = run("tune", *specs, "--prompts", str(prompts))
    assert r.returncode == 2 and f"--prompts {prompts}:2: not UTF-8" in r.stderr, r.stderr
    data = tmp_path / "d.jsonl"
    data.write_bytes(b'{"prompt": "caf\xe9", "label": "small"}\n')
    r = invoke(app, ["router", "train", *specs, "--data", str(data), "--out", str(tmp_path / "r.json")])
    assert r.exit_code == 2 and f"--data {data}:1: not UTF-8" in r.stderr, r.stderr
    r = invoke(app, ["generate", *specs, "--rollback", "abc", "Hello"])
    assert r.exit_code == 2 and "--rollback must be a number (inf allowed), got 'abc'" in r.stderr, r.stderr
    r = invoke(app, ["generate", "--small", "x.gguf", "--big", "gguf:x.gguf", "Hello"])
    assert r.exit_code == 2 and "did you mean gguf:x.gguf?" in r.stderr and "accepted forms" not in r.stderr
    r = invoke(app, ["generate", "--small", str(tmp_path), "--big", "gguf:x.gguf", "Hello"])
    assert r.exit_code == 2 and f"did you mean hf:{tmp_path}?" in r.stderr


def test_a_catalog_pair_is_checked_before_any_download(tmp_path, monkeypatch):
    r = run("generate", "--small", "gemma3-270m", "--big", "qwen2.5-coder-1.5b", "Hi",
            env={"BIGLITTLE_CACHE": str(tmp_path)})
    assert r.returncode == 2 and "do not share a tokenizer" in r.stderr and "nothing was downloaded" in r.stderr
    assert list(tmp_path.iterdir()) == []
    # only --small: the message says which model was defaulted (and the mismatch, before fetching it)
    monkeypatch.setenv("BIGLITTLE_CACHE", str(tmp_path))
    r = invoke(app, ["generate", "--small", "gguf:smollm2-135m", "Hi"])
    assert "no --big given: using --big gguf:qwen2.5-coder-1.5b" in r.stderr and "default pair" in r.stderr
    assert "using the default pair" not in r.stderr
    assert r.exit_code == 2 and "smollm2 tokenizer" in r.stderr and list(tmp_path.iterdir()) == []


def test_context_option_and_its_default_in_help(specs):
    r = run("generate", "--help", env={"COLUMNS": "300"})
    assert "--context" in r.stdout and "32,768 for the default pair" in r.stdout
    r = invoke(app, ["generate", *specs, "--context", "40", "--max-new-tokens", "30", "Hello there, how are you?"])
    assert r.exit_code == 2 and "beyond the context window of 40" in r.stderr, r.stderr
    r = invoke(app, ["generate", *specs, "--context", "10000000", "Hello"])
    assert r.exit_code == 2 and "--context 10000000 is beyond" in r.stderr, r.stderr


def test_output_in_pipes_is_whole_lines_and_ignored_flags_are_named(specs):
    r = run("generate", *specs, "--max-new-tokens", "8", "--show-origin", "--json", "Hello")
    assert r.returncode == 0 and json.loads(r.stdout)["origins"]
    assert "--show-origin has no effect with --json" in r.stderr
    r = run("generate", *specs, "--max-new-tokens", "8", "--show-origin", "Hello")
    assert "--show-origin has no effect when the output is not a terminal" in r.stderr
    stats = [line for line in r.stderr.splitlines() if "tok/s" in line]
    assert len(stats) == 1 and re.match(r"8 tokens \(\d+ small, \d+ big\) · \d+ big calls .* tok/s$", stats[0])
    # on a terminal (forced here) the origins are coloured and the legend is there
    r = run("generate", *specs, "--max-new-tokens", "8", "--show-origin", "Hello", env={"FORCE_COLOR": "1"})
    assert "\x1b[" in r.stdout and "■ small" in r.stderr


def test_models_list_in_a_pipe_is_tab_separated_and_whole():
    r = run("models", "list", env={"COLUMNS": "40"})
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split("\t") == ["name", "model", "size", "source", "pulled"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:] if "\t" in line}
    assert rows["qwen2.5-coder-0.5b"][1] == "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (vocab 151,936)"
    assert "qwen-coder" in rows


@pytest.mark.slow
def test_llama_cpp_logs_only_with_verbose():
    # gemma3's sliding-window cache made llama.cpp print a line of its own (issue 21, item 4)
    r = run("generate", "--big", "gguf:gemma3-270m", "--policy", "big", "--context", "256", "--max-new-tokens", "2",
            "Hi", timeout=600)
    assert r.returncode == 0, r.stderr
    assert "llama_" not in r.stderr and "using full-size SWA cache" not in r.stderr
    r = run("generate", "--big", "gguf:smollm2-135m", "--policy", "big", "--context", "256", "--max-new-tokens", "2",
            "--verbose", "Hi", timeout=600)
    assert r.returncode == 0 and "llama_" in r.stderr
