"""`biglittle serve` as a user starts it: a real process on loopback with the tiny pair, its
options, the API key, and a clean exit on SIGTERM / SIGINT with a request still streaming."""
import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest
from openai import OpenAI

import biglittle as bl
from live import free_port, wait_ready

CLI = [sys.executable, "-c", "from biglittle.cli import app; app()", "serve"]
HANG = 120  # seconds: bounds on blocking waits that only a hang reaches


def start(text_pair, *args):
    small, big = text_pair
    port = free_port()
    # one torch thread: on a 2-core machine shared with other jobs, two spin-waiting threads make
    # these tiny models tens of times slower
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*CLI, "--small", small.spec, "--big", big.spec, "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, timeout=90, path="/health")
    except BaseException:
        proc.kill()
        print(proc.communicate(timeout=10))
        raise
    return proc, url


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_command_end_to_end_and_graceful_exit(text_pair, sig):
    small, big = text_pair
    proc, url = start(text_pair, "--policy", "speculative:draft=3", "--api-key", "k3y", "--name", "pair",
                      "--max-queue", "4", "--timeout", "60")
    try:
        assert httpx.get(url + "/health").json()["status"] == "ok"
        assert httpx.get(url + "/v1/models").status_code == 401
        client = OpenAI(base_url=url + "/v1", api_key="k3y", max_retries=0, timeout=60)
        card = client.models.retrieve("pair").model_extra["biglittle"]
        assert card["policy"].startswith("speculative:draft=3") and card["big"] == big.spec
        r = client.completions.create(model="pair", prompt="Hello", max_tokens=12)
        ref = bl.generate(small, big, "Hello", policy=bl.Speculative(draft=3), max_new_tokens=12)
        assert r.choices[0].text == ref.text and r.model_extra["biglittle"]["stats"]["policy"] == ref.stats.policy

        # a stream in flight when the signal comes: it runs to its end within the grace period
        # (10 s) or is cut when that ends, whichever comes first on this machine; either way the
        # process then exits cleanly (the bounds only catch a hang)
        body = {"model": "pair", "prompt": "Hello", "max_tokens": 480, "stream": True}
        rest = []
        with httpx.stream("POST", url + "/v1/completions", json=body, headers={"Authorization": "Bearer k3y"},
                          timeout=HANG) as resp:
            lines = resp.iter_lines()
            assert next(lines).startswith("data: {")
            proc.send_signal(sig)
            try:
                rest.extend(line for line in lines if line)
                cut = False
            except httpx.RemoteProtocolError:  # the body ended unfinished: cut at the end of the grace period
                cut = True
        assert cut or rest[-1] == "data: [DONE]"
        assert not any('"error"' in line for line in rest)
        assert proc.wait(timeout=HANG) == 0
        assert "stopped" in proc.stderr.read()
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


@pytest.mark.parametrize("args, word", [
    (["--policy", "warp"], "unknown policy"),
    (["--policy", "bild:fallback=-1"], "fallback must be"),
    (["--max-queue", "0"], "--max-queue"),
])
def test_serve_command_refuses_bad_options(text_pair, args, word):
    small, big = text_pair
    r = subprocess.run([*CLI, "--small", small.spec, "--big", big.spec, "--port", str(free_port()), *args],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 2 and word in r.stderr, r.stderr


def test_serve_command_on_a_taken_port_says_so(text_pair):
    small, big = text_pair
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        r = subprocess.run([*CLI, "--small", small.spec, "--big", big.spec, "--port", str(port)],
                           capture_output=True, text=True, timeout=90)
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr, r.stderr
    assert "serving" not in r.stderr
