"""Ctrl-C through the real command line (issue 21, item 1): SIGINT at several moments, imports and
model loading included, ends every command with one line and exit 130, and leaves no half-written
file. `serve` while serving stops gracefully with exit 0 (test_server_cli.py)."""
import signal
import time

import pytest

from cli_run import start


def handler_installed(proc) -> None:
    """Wait until the program has its own handler (it catches SIGTERM, which Python leaves alone):
    what comes before that is the interpreter's own start, which no program can take over."""
    while proc.poll() is None:
        with open(f"/proc/{proc.pid}/status") as f:
            caught = int(next(line for line in f if line.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.01)


def interrupt(proc, after_s: float, sig=signal.SIGINT):
    """Send `sig` after_s seconds after the program installed its handler; its exit status and output."""
    handler_installed(proc)
    time.sleep(after_s)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def mapped(proc, suffix: str) -> None:
    """Wait until the program has a file ending in `suffix` mapped into memory: llama.cpp is loading it.
    A fixed delay would race a fast machine, which loads the small model and answers before it fires."""
    while proc.poll() is None:
        with open(f"/proc/{proc.pid}/maps") as f:
            if any(line.rstrip().endswith(suffix) for line in f):
                return
        time.sleep(0.005)


def assert_one_line(rc, err, word="interrupted", code=130):
    assert rc == code, err
    assert err.strip().splitlines()[-1] == word, err
    assert "Traceback" not in err and "Aborted" not in err, err


@pytest.mark.parametrize("after_s", [0.0, 1.5, 4.0])  # imports (torch), model loading
def test_generate_ends_at_once_with_130_and_one_line(text_pair, after_s):
    small, big = text_pair
    t0 = time.monotonic()
    proc = start("generate", "--small", small.spec, "--big", big.spec, "--policy", "speculative:draft=2",
                 "--max-new-tokens", "500", "Hello")
    rc, out, err = interrupt(proc, after_s)
    assert_one_line(rc, err)
    assert time.monotonic() - t0 < after_s + 30


def test_generate_while_writing(text_pair):
    small, big = text_pair
    proc = start("generate", "--small", small.spec, "--big", big.spec, "--max-new-tokens", "500", "Hello")
    assert proc.stdout.read(1)  # the first text has come
    rc, out, err = interrupt(proc, 0.0)
    assert_one_line(rc, err)


@pytest.mark.slow
def test_generate_during_gguf_model_load():
    """llama.cpp loads in C code (a vocab probe, then the weights) that calls back into Python for
    its log lines, so the handler's exception is often raised inside that callback, where Python
    only logs it: the command still ends as interrupted (at the latest GRACE_S later, or at its end)."""
    proc = start("generate", "--small", "gguf:smollm2-135m", "--big", "gguf:smollm2-135m", "--max-new-tokens", "200",
                 "Hi")
    handler_installed(proc)
    mapped(proc, ".gguf")
    rc, out, err = interrupt(proc, 0.0)
    assert_one_line(rc, err)


def test_sigterm_is_one_line_and_143(text_pair):
    small, big = text_pair
    proc = start("generate", "--small", small.spec, "--big", big.spec, "--max-new-tokens", "500", "Hello")
    rc, out, err = interrupt(proc, 3.0, signal.SIGTERM)
    assert_one_line(rc, err, "terminated", 143)


@pytest.mark.parametrize("after_s", [1.0, 6.0])
def test_tune_and_bench_leave_no_half_written_file(text_pair, tmp_path, after_s):
    small, big = text_pair
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Hello"}\n{"prompt": "abc"}\n')
    (tmp_path / "t").mkdir()
    tune = start("tune", "--small", small.spec, "--big", big.spec, "--prompts", str(prompts), "--no-chat",
                 "--max-new-tokens", "300", "--out", str(tmp_path / "t" / "tune.json"))
    rc, out, err = interrupt(tune, after_s)
    assert_one_line(rc, err)
    assert list((tmp_path / "t").iterdir()) == []
    bench = start("bench", "--small", small.spec, "--big", big.spec, "--n", "2", "--max-new-tokens", "60",
                  "--no-chat", "--methods", "speculative:draft=2", "--out", str(tmp_path / "b"))
    rc, out, err = interrupt(bench, after_s)
    assert_one_line(rc, err)
    assert not (tmp_path / "b").exists() or list((tmp_path / "b").iterdir()) == []


def test_serve_while_loading_is_130_like_the_others(text_pair):
    small, big = text_pair
    proc = start("serve", "--small", small.spec, "--big", big.spec, "--port", "0")
    rc, out, err = interrupt(proc, 2.0)
    assert_one_line(rc, err)
    assert "serving" not in err
