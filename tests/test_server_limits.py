"""Server hardening (issue 15) against a real server on loopback with the tiny pair: body and
key limits before the body is read, --max-logprobs, refused OpenAI fields, 400s for validation
and chat-template errors, 500s that show no internals, route-template metric labels,
stream_options.include_usage, max_completion_tokens, fairness (a short score call during a long
stream) and 64 concurrent streaming clients with nothing lost."""
import json
import os
import shutil
import socket
import sys
import threading

import httpx
import pytest
from openai import OpenAI

import biglittle as bl
from biglittle.server import Engine, Limits, create_app
from biglittle.server.engine import Job
from live import LiveServer
from test_server import EVERY_CHUNK, HANG, Gate, signal_on

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
from load_bench import run_load  # noqa: E402

MODEL = "tiny-pair"


@pytest.fixture(scope="module")
def live(text_pair):
    small, big = text_pair
    server = LiveServer(create_app(Engine(small, big, bl.BiLD(), max_queue=128), model_name=MODEL,
                                   limits=Limits(max_body_bytes=4096, max_tokenize_chars=200)))
    yield server
    server.stop()


def post(live, path, body, **kw):
    return httpx.post(live.url + path, json=body, timeout=60, **kw)


def raw_request(url: str, head: str, body: bytes = b"") -> bytes:
    """Send a request by hand (headers, then maybe part of a body) and return what comes back."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head.encode() + body)
        s.shutdown(socket.SHUT_WR) if body else None
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


# ---------------------------------------------------------------- limits before the body

def test_a_declared_oversized_body_gets_413_without_being_sent(live):
    # only the headers go out: the 413 must come back though the body never does
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10 << 20}\r\nConnection: close\r\n\r\n")
    reply = raw_request(live.url, head)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:80]
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_too_large"


def test_a_chunked_oversized_body_gets_413(live):
    def chunks():
        yield b'{"model": "tiny-pair", "prompt": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    r = httpx.post(live.url + "/v1/completions", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"


def test_api_key_checked_before_the_body_from_the_header_only(text_pair):
    small, big = text_pair
    with pytest.raises(bl.ConfigError, match="empty"):
        create_app(Engine(small, big, bl.BiLD()), api_key="")
    server = LiveServer(create_app(Engine(small, big, bl.BiLD()), model_name=MODEL, api_key="s3cret"))
    try:
        head = (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {10 << 20}\r\n"
                "Connection: close\r\n\r\n")
        assert raw_request(server.url, head).startswith(b"HTTP/1.1 401")  # the key, before the size or body
        for path in ("/docs", "/openapi.json", "/v1/models", "/metrics"):
            assert httpx.get(server.url + path).status_code == 401, path
            assert httpx.get(server.url + path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        # the key travels in the Authorization header only, never in a URL or another header
        assert httpx.get(server.url + "/v1/models?api_key=s3cret").status_code == 401
        assert httpx.get(server.url + "/v1/models", headers={"x-api-key": "s3cret"}).status_code == 401
        page = httpx.get(server.url + "/")  # the page holds no secret: it asks for the key itself
        assert page.status_code == 200 and "sessionStorage" in page.text and "location.search" not in page.text
    finally:
        server.stop()


# ---------------------------------------------------------------- caps and refusals

def test_score_top_k_is_capped_at_max_logprobs(live, text_pair):
    ids = text_pair[1].tokenizer.encode("Hello there")
    r = post(live, "/v1/score", {"model": MODEL, "token_ids": ids, "top_k": 21})
    assert r.status_code == 400 and r.json()["error"]["param"] == "top_k" and "--max-logprobs" in r.text
    r = post(live, "/v1/score", {"model": MODEL, "token_ids": ids, "start": len(ids) - 2, "top_k": 20})
    assert r.status_code == 200
    assert len(r.json()["rows"]) == 2 and all(len(row["top"]) == 20 for row in r.json()["rows"])


def test_tokenize_is_size_limited(live):
    assert post(live, "/v1/tokenize", {"model": MODEL, "text": "hi"}).json()["tokens"]
    r = post(live, "/v1/tokenize", {"model": MODEL, "text": "x" * 201})
    assert r.status_code == 400 and r.json()["error"]["param"] == "text"


@pytest.mark.parametrize("field, value", [
    ("tools", [{"type": "function", "function": {"name": "f"}}]), ("tool_choice", "auto"),
    ("functions", [{"name": "f"}]), ("logit_bias", {"1": 5}), ("presence_penalty", 0.5),
    ("frequency_penalty", -1.0), ("n", 2), ("best_of", 3), ("echo", True), ("suffix", "end"),
])
def test_unsupported_fields_are_refused_by_name(live, field, value):
    r = post(live, "/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 2, field: value})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == field and field in r.json()["error"]["message"]


def test_response_format_other_than_text_is_refused_and_neutral_values_pass(live):
    msgs = [{"role": "user", "content": "hi"}]
    r = post(live, "/v1/chat/completions", {"model": MODEL, "messages": msgs, "response_format": {"type": "json_object"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format"
    ok = post(live, "/v1/chat/completions", {"model": MODEL, "messages": msgs, "max_tokens": 2, "n": 1,
                                              "presence_penalty": 0, "response_format": {"type": "text"}})
    assert ok.status_code == 200, ok.text


def test_stop_strings_at_most_four_and_validation_is_400(live):
    r = post(live, "/v1/completions", {"model": MODEL, "prompt": "hi", "stop": list("abcde")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stop"
    assert post(live, "/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 2,
                                          "stop": list("abcd")}).status_code == 200
    r = post(live, "/v1/completions", {"model": MODEL})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"


def test_chat_template_error_is_400(tmp_path, text_pair):
    path = tmp_path / "strict"
    shutil.copytree(text_pair[1].spec.removeprefix("hf:"), path)
    (path / "chat_template.jinja").write_text(
        "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('roles must alternate user/assistant') }}{% endif %}{{ m['content'] }}{% endfor %}")
    strict = bl.load_model(f"hf:{path}")
    server = LiveServer(create_app(Engine(strict, strict, bl.BigOnly()), model_name=MODEL))
    try:
        two_users = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
        r = post(server, "/v1/chat/completions", {"model": MODEL, "messages": two_users, "max_tokens": 2})
        assert r.status_code == 400 and "alternate" in r.json()["error"]["message"]
    finally:
        server.stop()


def test_a_500_shows_no_internals(text_pair):
    small, big = text_pair
    app = create_app(Engine(small, big, bl.BiLD()), model_name=MODEL)

    async def broken():
        raise RuntimeError("secret internals at /home/x")

    app.add_api_route("/broken", broken)
    server = LiveServer(app)
    try:
        r = httpx.get(server.url + "/broken")
        assert r.status_code == 500 and "secret" not in r.text and r.json()["error"]["type"] == "server_error"
    finally:
        server.stop()


def test_metrics_label_routes_not_raw_paths(live):
    for i in range(10):
        assert httpx.get(f"{live.url}/nope-{i}").status_code == 404
        post(live, f"/v1/models/x{i}", {})
    post(live, "/v1/completions", {"model": MODEL})
    text = httpx.get(live.url + "/metrics").text
    assert "nope-" not in text and "/v1/models/x" not in text
    assert 'endpoint="/v1/completions",status="400"' in text


# ---------------------------------------------------------------- OpenAI fidelity

def test_max_completion_tokens_and_stream_options_include_usage(live):
    client = OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                       max_completion_tokens=5)
    assert r.usage.completion_tokens == 5
    chunks = list(client.completions.create(model=MODEL, prompt="Hello", max_tokens=6, stream=True,
                                            stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    plain = list(client.completions.create(model=MODEL, prompt="Hello", max_tokens=6, stream=True))
    assert plain[-1].choices  # without the option, no usage-only chunk


def test_drafter_override_and_copy_tokens_are_counted(live, text_pair):
    prompt = "abc abc abc abc abc abc"
    extra = {"biglittle": {"policy": "speculative", "drafter": "lookup", "return_origins": True}}
    r = post(live, "/v1/completions", {"model": MODEL, "prompt": prompt, "max_tokens": 24, **extra}).json()
    ref = bl.generate(None, text_pair[1], prompt, policy=bl.BigOnly(), max_new_tokens=24)
    assert r["choices"][0]["text"] == ref.text  # lossless
    block = r["biglittle"]
    assert "drafter=lookup" in block["policy"] and set(block["origins"]) <= {"copy", "big"}
    assert block["origins"].count("copy") == block["stats"]["copied_tokens"]
    text = httpx.get(live.url + "/metrics").text
    copied = [line for line in text.splitlines() if line.startswith('biglittle_tokens_total{origin="copy"}')]
    assert copied and float(copied[0].split()[-1]) >= block["stats"]["copied_tokens"]
    assert 'biglittle_token_reasons_total{reason="copy"}' in text


# ---------------------------------------------------------------- fairness and load

def test_a_short_score_call_during_a_long_stream_waits_for_one_round_not_the_stream(text_pair):
    """Fairness: a score call that arrives while a long stream is running runs after the
    stream's current round. The stream is held on the model thread inside its second round
    while the score call is queued, so the order does not depend on the machine's speed."""
    small, big = text_pair
    gate = Gate()
    engine = Engine(small, big, gate.policy)
    queued = signal_on(engine.pool, "submit", lambda fn, *_: fn == engine.score_job)
    rounds_before_score = []
    score = engine.score

    def recorded(*args):
        rounds_before_score.append(gate.steps)
        return score(*args)
    engine.score = recorded
    server = LiveServer(create_app(engine, model_name=MODEL))
    ids = big.tokenizer.encode("Hello there")
    result = {}
    try:
        body = {"model": MODEL, "prompt": "Once upon", "max_tokens": 400, "stream": True, **EVERY_CHUNK}
        with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=HANG) as r:
            lines = r.iter_lines()
            next(line for line in lines if line.startswith("data: {"))  # the stream is running
            assert gate.reached.wait(HANG)  # ... and held inside its second round

            def score_call():
                result["r"] = post(server, "/v1/score", {"model": MODEL, "token_ids": ids})
            worker = threading.Thread(target=score_call)
            worker.start()
            assert queued.wait(HANG)  # the score job is queued behind the held round
            gate.opened.set()
            worker.join(HANG)
            rest = [line for line in lines if line]
    finally:
        gate.opened.set()
        server.stop()
    assert result["r"].status_code == 200
    assert rounds_before_score == [2]  # it ran right after the held round, before the other 398
    assert rest[-1] == "data: [DONE]" and gate.steps == 400


def test_a_score_job_past_its_deadline_never_runs(text_pair):
    small, big = text_pair
    engine = Engine(small, big, bl.BiLD(), timeout_s=0.5)
    scored = signal_on(engine, "score")
    server = LiveServer(create_app(engine, model_name=MODEL))
    held = threading.Event()
    try:
        busy = engine.pool.submit(held.wait, HANG)  # the model thread is taken until the test says so
        r = post(server, "/v1/score", {"model": MODEL, "token_ids": [1, 2, 3]})
        assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error"
        assert not busy.done()  # answered at the deadline, while the worker was still busy
        held.set()
        engine.pool.submit(lambda: None).result(timeout=HANG)  # the expired job has had its turn
        assert not scored.is_set()                             # and did not score
        with pytest.raises(TimeoutError):
            engine.score_job(Job([1, 2, 3], timeout_s=-1.0), 0, 5)
        assert not scored.is_set() and engine.in_flight == 0
    finally:
        held.set()
        server.stop()


def test_64_concurrent_streaming_clients_lose_nothing(live, text_pair):
    prompts = ["Hello", "def f(x):", "Once upon", "The cat"]
    small, big = text_pair
    expected = {p: bl.generate(small, big, p, policy=bl.BiLD(), max_new_tokens=8).text for p in prompts}
    report = run_load(live.url, MODEL, prompts, clients=64, requests=64, max_tokens=8)
    assert report["errors"] == 0 and report["done"] == 64 and report["mismatches"] == 0
    assert all(text == expected[p] for p, text in report["answers"])


def test_serve_refuses_an_empty_api_key(text_pair):
    from typer.testing import CliRunner

    from biglittle.cli import app

    small, big = text_pair
    r = CliRunner().invoke(app, ["serve", "--small", small.spec, "--big", big.spec, "--api-key", ""])
    assert r.exit_code != 0 and "empty" in r.output
