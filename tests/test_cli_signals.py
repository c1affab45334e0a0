"""Ctrl-C through the real command line (issue 21, item 1; issue 27, item 1): SIGINT at several
moments, imports and model loading included, ends every command with one line and exit 130, and
leaves no half-written file. `serve` while serving stops gracefully with exit 0 (test_server_cli.py).

Each signal arrives at a known point: the program waits at a named pause point
(biglittle/signal_points.py) and the test signals it there, so no outcome depends on how fast the
machine is."""
import signal

import pytest

from cli_run import paused, start


def interrupt(proc, sig=signal.SIGINT):
    """Send `sig` once the program waits at its pause point; its exit status and output."""
    paused(proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def assert_one_line(rc, err, word="interrupted", code=130):
    assert rc == code, err
    assert err.strip().splitlines()[-1] == word, err
    assert "Traceback" not in err and "Aborted" not in err and "Exception ignored" not in err, err


@pytest.mark.parametrize("point", ["imports", "model-load", "generate-chunk"])
def test_generate_ends_with_130_and_one_line(text_pair, point):
    """During the imports (torch: before the command runs), while the models load, and while it writes."""
    small, big = text_pair
    proc = start("generate", "--small", small.spec, "--big", big.spec, "--policy", "speculative:draft=2",
                 "--max-new-tokens", "500", "Hello", pause_at=point)
    rc, out, err = interrupt(proc)
    assert_one_line(rc, err)
    if point == "generate-chunk":
        assert out  # the text written before the signal reached the user
    else:
        assert out == ""  # it ended at once: nothing was generated


@pytest.mark.slow
def test_generate_during_gguf_model_load():
    """llama.cpp loads in C code that calls back into Python for its log lines (a ctypes callback);
    the program waits inside that callback, so the handler runs there, where an exception it
    raised would only be logged ("Exception ignored on calling ctypes callback function" and a
    traceback, and the command ran on). It must end at once, with the one line, having written nothing."""
    proc = start("generate", "--small", "gguf:smollm2-135m", "--big", "gguf:smollm2-135m", "--max-new-tokens", "200",
                 "Hi", pause_at="llama-log", env={"BIGLITTLE_GRACE_S": "600"})
    rc, out, err = interrupt(proc)
    assert_one_line(rc, err)
    assert out == "" and "tokens (" not in err, (out, err)  # no generation ran after the signal


def test_sigterm_is_one_line_and_143(text_pair):
    small, big = text_pair
    proc = start("generate", "--small", small.spec, "--big", big.spec, "--max-new-tokens", "500", "Hello",
                 pause_at="generate-chunk")
    rc, out, err = interrupt(proc, signal.SIGTERM)
    assert_one_line(rc, err, "terminated", 143)


@pytest.mark.parametrize("point", ["model-load", "tune-run", "write-partial"])
def test_tune_leaves_no_half_written_file(text_pair, tmp_path, point):
    """Before it measures, between two measured runs, and with its file written but not yet renamed."""
    small, big = text_pair
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Hello"}\n{"prompt": "abc"}\n')
    (tmp_path / "t").mkdir()
    tune = start("tune", "--small", small.spec, "--big", big.spec, "--prompts", str(prompts), "--no-chat",
                 "--max-new-tokens", "8", "--drafts", "2", "--fallbacks", "0.5", "--rollbacks", "2",
                 "--out", str(tmp_path / "t" / "tune.json"), pause_at=point)
    rc, out, err = interrupt(tune)
    assert_one_line(rc, err)
    assert list((tmp_path / "t").iterdir()) == []


@pytest.mark.parametrize("point", ["model-load", "write-partial"])
def test_bench_leaves_no_half_written_file(text_pair, tmp_path, point):
    small, big = text_pair
    bench = start("bench", "--small", small.spec, "--big", big.spec, "--n", "2", "--max-new-tokens", "8",
                  "--no-chat", "--methods", "speculative:draft=2", "--out", str(tmp_path / "b"), pause_at=point)
    rc, out, err = interrupt(bench)
    assert_one_line(rc, err)
    assert not (tmp_path / "b").exists() or list((tmp_path / "b").iterdir()) == []


def test_serve_while_loading_is_130_like_the_others(text_pair):
    small, big = text_pair
    proc = start("serve", "--small", small.spec, "--big", big.spec, "--port", "0", pause_at="model-load")
    rc, out, err = interrupt(proc)
    assert_one_line(rc, err)
    assert "serving" not in err
