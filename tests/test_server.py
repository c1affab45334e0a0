"""`biglittle serve` as a real uvicorn server on loopback with the tiny pair: the official openai
client, streaming, overrides, scoring, bad input, a bounded load test, cancellation, timeouts and
shutdown. The tests of what happens while the model thread is busy hold it with events (`Gate`,
or a blocking job on the pool) rather than sleeps, so their outcome does not depend on how fast
the machine is; their time bounds (HANG) only end a test that would otherwise hang."""
import dataclasses
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from openai import OpenAI

import biglittle as bl
from biglittle.server import Engine, create_app
from biglittle.server.engine import Job
from live import LiveServer

MODEL = "tiny-pair"
HANG = 120  # seconds: a bound on blocking waits that only a hang reaches
# streamed with origins, every chunk is an event, even one whose token has no text yet (a part of
# a character): a test waiting for the first chunk's event gets it before the model thread is held
EVERY_CHUNK = {"biglittle": {"return_origins": True}}


class Gate:
    """A policy whose generations are held on the model thread at a known point: the first
    commit goes out, then the thread waits inside the next round (its commit computed, not yet
    handed over) until the test sets `opened`. `steps` counts the commits handed over; `closed`
    is set once a generation's steps are closed (it finished, or the worker stopped it)."""

    def __init__(self, base: bl.Policy | None = None):
        self.reached, self.opened, self.closed = threading.Event(), threading.Event(), threading.Event()
        self.steps = 0
        gate, base = self, base or bl.BigOnly()

        class Gated(type(base)):
            def run(self, *args, **kwargs):
                return gate.held(super().run(*args, **kwargs))

        self.policy = Gated(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})

    def held(self, steps):
        try:
            for i, step in enumerate(steps):
                if i == 1:
                    self.reached.set()
                    if not self.opened.wait(HANG):
                        raise RuntimeError("the test never opened the gate")
                self.steps += 1
                yield step
        finally:
            steps.close()
            self.closed.set()


def signal_on(obj, method: str, when=lambda *args, **kwargs: True) -> threading.Event:
    """An event set each time a call of obj.<method>(...) has returned and when(...) holds
    for its arguments."""
    event, original = threading.Event(), getattr(obj, method)

    def wrapped(*args, **kwargs):
        out = original(*args, **kwargs)
        if when(*args, **kwargs):
            event.set()
        return out
    setattr(obj, method, wrapped)
    return event


def until_refused(url: str) -> None:
    """Wait until the server at url refuses new connections (it has begun to shut down): the
    connection is refused, or the kernel accepted it into the closing socket's backlog and it is
    closed without an answer (seen on a fresh clone: "Server disconnected without sending a
    response"). Either way no new request is served."""
    give_up = time.monotonic() + HANG
    while time.monotonic() < give_up:
        try:
            httpx.get(url + "/health", timeout=5)
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
            return
        time.sleep(0.05)
    raise AssertionError(f"{url} still accepts connections")



@pytest.fixture(scope="module")
def server(text_pair):
    small, big = text_pair
    live = LiveServer(create_app(Engine(small, big, bl.BiLD(), max_queue=64), model_name=MODEL))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def solo(text_pair, prompt, policy=None, chat=False, max_new_tokens=16):
    small, big = text_pair
    return bl.generate(small, big, prompt, policy=policy or bl.BiLD(), max_new_tokens=max_new_tokens, chat=chat)


def test_completion(client, text_pair):
    r = client.completions.create(model=MODEL, prompt="Hello", max_tokens=16)
    ref = solo(text_pair, "Hello")
    assert r.choices[0].text == ref.text
    assert r.usage.completion_tokens == 16 and r.usage.prompt_tokens == len(ref.prompt_ids)
    assert r.choices[0].finish_reason == "length"
    stats = r.model_extra["biglittle"]["stats"]
    assert stats["new_tokens"] == 16 and stats["big_calls"] == ref.stats.big_calls


def test_completion_stream(client, text_pair):
    chunks = list(client.completions.create(model=MODEL, prompt="Hello", max_tokens=16, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == solo(text_pair, "Hello").text
    assert chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].model_extra["biglittle"]["stats"]["new_tokens"] == 16


def test_chat(client, text_pair):
    msgs = [{"role": "user", "content": "Say hi"}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12)
    ref = solo(text_pair, msgs, chat=True, max_new_tokens=12)
    assert r.choices[0].message.content == ref.text and r.choices[0].message.role == "assistant"
    streamed = list(client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12, stream=True))
    assert streamed[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == ref.text


def test_policy_override_and_origins(client, text_pair):
    extra = {"biglittle": {"policy": "speculative", "draft": 3, "return_origins": True}}
    r = client.completions.create(model=MODEL, prompt="Hello", max_tokens=16, extra_body=extra)
    big_only = solo(text_pair, "Hello", bl.BigOnly())
    assert r.choices[0].text == big_only.text  # speculative decoding is lossless
    block = r.model_extra["biglittle"]
    assert block["policy"].startswith("speculative:draft=3")
    assert len(block["origins"]) == len(block["reasons"]) == 16
    assert block["origins"].count("small") == block["stats"]["small_tokens"]
    never = client.completions.create(model=MODEL, prompt="Hello", max_tokens=8,
                                      extra_body={"biglittle": {"fallback": 2.0, "return_origins": True}})
    assert never.model_extra["biglittle"]["origins"] == ["big"] * 8


def test_policy_spec_strings_and_parameters_that_adjust_the_servers_policy(client, text_pair):
    spec = {"biglittle": {"policy": "speculative:draft=2", "return_origins": True}}
    r = client.completions.create(model=MODEL, prompt="def f(x):", max_tokens=12, extra_body=spec)
    assert r.model_extra["biglittle"]["policy"].startswith("speculative:draft=2")
    assert r.choices[0].text == solo(text_pair, "def f(x):", bl.BigOnly(), max_new_tokens=12).text
    spec_and_param = {"biglittle": {"policy": "bild:fallback=0.3", "rollback": 1.0}}
    r = client.completions.create(model=MODEL, prompt="Hello", max_tokens=12, extra_body=spec_and_param)
    assert r.model_extra["biglittle"]["policy"].startswith("bild:fallback=0.3,rollback=1.0")
    assert r.choices[0].text == solo(text_pair, "Hello", bl.BiLD(fallback=0.3, rollback=1.0), max_new_tokens=12).text
    # no policy named: the parameters adjust the server's own policy (BiLD with its defaults here)
    r = client.completions.create(model=MODEL, prompt="Hello", max_tokens=12, extra_body={"biglittle": {"rollback": 1.0}})
    assert r.model_extra["biglittle"]["policy"] == bl.BiLD(rollback=1.0).describe()


def test_chat_content_parts(client, text_pair):
    parts = [{"role": "user", "content": [{"type": "text", "text": "Say "}, {"type": "text", "text": "hi"}]}]
    r = client.chat.completions.create(model=MODEL, messages=parts, max_tokens=8)
    ref = solo(text_pair, [{"role": "user", "content": "Say hi"}], chat=True, max_new_tokens=8)
    assert r.choices[0].message.content == ref.text
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]
    with pytest.raises(Exception, match="400"):
        client.chat.completions.create(model=MODEL, messages=image, max_tokens=8)


def test_stream_with_origins_carries_token_pieces(server, text_pair):
    body = {"model": MODEL, "prompt": "Hello", "max_tokens": 12, "stream": True,
            "biglittle": {"return_origins": True}}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=30) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    pieces = sum((e["biglittle"].get("pieces", []) for e in events if "biglittle" in e), [])
    pieces += [e["biglittle"].get("pieces_tail", "") for e in events if "stats" in e.get("biglittle", {})]
    reasons = sum((e["biglittle"].get("reasons", []) for e in events if "pieces" in e.get("biglittle", {})), [])
    assert "".join(pieces) == solo(text_pair, "Hello", max_new_tokens=12).text
    assert len(reasons) == 12 and set(reasons) <= {"small", "correction", "fallback", "big"}


def test_token_pieces_of_a_long_chunk_cost_a_short_decode_each(text_pair):
    """A cascade's kept answer reaches the stream as ONE chunk: its pieces (decoded on the event
    loop) must cost a bounded decode per token, not a decode of the whole chunk so far per token."""
    from biglittle.server.streaming import PIECE_WINDOW, pieces

    tok = text_pair[1].tokenizer
    decoded = []

    class Counting:
        def decode(self, ids, *args, **kwargs):
            decoded.append(len(ids))
            return tok.decode(ids, *args, **kwargs)

    ids = tok.encode("héllo wörld, 你好: def f(x): return x ** 2 🎉 " * 20)
    got = pieces(Counting(), [], ids)
    assert "".join(got) == tok.decode(ids)
    assert got == [p for i in range(len(ids)) for p in pieces(tok, ids[:i], ids[i:i + 1])]  # as one token a chunk
    assert max(decoded) <= 2 * PIECE_WINDOW and len(decoded) <= len(ids) + len(ids) // PIECE_WINDOW + 1


def test_small_only_stream_pieces_use_the_small_models_tokenizer(text_pair, tiny_dir):
    """With a small model of another tokenizer, the small-only policy's tokens are the small
    model's ids: their streamed pieces are its text, not those ids read by the big model."""
    from tiny import make_other_tokenizer_draft

    big = text_pair[1]
    other = bl.load_model(f"hf:{make_other_tokenizer_draft(big.spec.partition(':')[2], str(tiny_dir / 'xv_serve'))}")
    ref = bl.generate(other, None, "Hello", policy=bl.SmallOnly(), max_new_tokens=12)
    assert big.tokenizer.decode(ref.token_ids) != ref.text  # the big model's tokenizer reads them wrong
    live = LiveServer(create_app(Engine(other, big, bl.SmallOnly()), model_name=MODEL))
    try:
        body = {"model": MODEL, "prompt": "Hello", "max_tokens": 12, "stream": True,
                "biglittle": {"return_origins": True}}
        with httpx.stream("POST", live.url + "/v1/completions", json=body, timeout=HANG) as r:
            events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    finally:
        live.stop()
    blocks = [e["biglittle"] for e in events if "pieces" in e.get("biglittle", {})]
    tail = "".join(e["biglittle"].get("pieces_tail", "") for e in events if "stats" in e.get("biglittle", {}))
    assert sum((b["token_ids"] for b in blocks), []) == ref.token_ids
    assert "".join(e["choices"][0]["text"] for e in events) == ref.text
    assert "".join(p for b in blocks for p in b["pieces"]) + tail == ref.text


def test_models_health_metrics(server, client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    r = httpx.get(server.url + "/v1/models/gpt-9")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    client.completions.create(model=MODEL, prompt="Hello", max_tokens=4)
    text = httpx.get(server.url + "/metrics").text
    for name in ("biglittle_requests_total", "biglittle_tokens_total{origin=\"small\"}", "biglittle_big_calls_total",
                 "biglittle_rollbacks_total", "biglittle_acceptance_rate", "biglittle_request_latency_seconds_bucket",
                 "biglittle_token_reasons_total{reason=\"correction\"}", "biglittle_time_to_first_token_seconds"):
        assert name in text, name
    served = sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("biglittle_tokens_total{"))
    assert served >= 4
    by_reason = sum(float(line.split()[-1]) for line in text.splitlines()
                    if line.startswith("biglittle_token_reasons_total{"))
    assert by_reason == served  # every token has exactly one reason


def test_score_endpoint_matches_the_big_model(server, text_pair):
    small, big = text_pair
    ids = big.tokenizer.encode("Hello there")
    r = httpx.post(server.url + "/v1/score", json={"model": MODEL, "token_ids": ids, "start": 2, "top_k": 5}).json()
    ref = big.session().extend(ids)
    assert r["vocab_size"] == big.vocab_size and [row["position"] for row in r["rows"]] == list(range(2, len(ids)))
    for row in r["rows"]:
        p = row["position"]
        assert row["top"][0][0] == int(ref[p].argmax())
        assert math.isclose(row["top"][0][1], float(ref[p].max()), abs_tol=1e-4)
        if p + 1 < len(ids):
            assert math.isclose(row["next_logprob"], float(ref[p, ids[p + 1]]), abs_tol=1e-4)
    assert r["rows"][-1]["next_token"] is None


def test_remote_backend_through_our_server_equals_local(server, text_pair):
    small, big = text_pair
    remote = bl.load_model(f"remote:{server.url}#{MODEL}", tokenizer_from=small)
    assert remote.dialect.name == "biglittle"
    for prompt in ("Hello", "def f(x):"):
        ref = bl.generate(None, big, prompt, policy=bl.BigOnly(), max_new_tokens=20)
        for policy in (bl.BigOnly(), bl.Speculative(draft=3), bl.BiLD(rollback=0.0)):
            got = bl.generate(small, remote, prompt, policy=policy, max_new_tokens=20)
            assert got.token_ids == ref.token_ids, (prompt, policy)
        local_bild = bl.generate(small, big, prompt, policy=bl.BiLD(), max_new_tokens=20)
        assert bl.generate(small, remote, prompt, policy=bl.BiLD(), max_new_tokens=20).token_ids == local_bild.token_ids


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("body, status, word", [
    ('{"model": "tiny-pair", "prompt": ', 400, "not valid JSON"),
    ({"model": "gpt-9", "prompt": "hi"}, 404, "does not exist"),
    ({"model": MODEL, "prompt": ""}, 400, "empty"),
    ({"model": MODEL, "prompt": "   "}, 400, "empty"),
    ({"model": MODEL, "prompt": "x" * 600, "max_tokens": 8}, 400, "context window"),
    ({"model": MODEL, "prompt": "hi", "biglittle": {"policy": "bild", "fallback": -1}}, 400, "fallback must be"),
    ({"model": MODEL, "prompt": "hi", "biglittle": {"policy": "speculative", "draft": 0}}, 400, "draft must be"),
    ({"model": MODEL, "prompt": "hi", "biglittle": {"policy": "warp"}}, 400, "unknown policy"),
    ({"model": MODEL, "prompt": "hi", "biglittle": {"policy": "bild", "draft": 3}}, 400, "takes"),
    ({"model": MODEL, "prompt": "hi", "n": 2}, 400, "n=2"),
    ({"model": MODEL, "prompt": "hi", "biglittle": {"policy": "/etc/passwd.json"}}, 400, "policy file"),
    ({"model": MODEL, "prompt": "hi", "biglittle": {"policy": "router:path=/etc/x"}}, 400, "policy file"),
    ({"model": MODEL, "prompt": "hi", "temperature": -1}, 400, "temperature"),
    ({"model": MODEL, "prompt": "hi", "max_tokens": 0}, 400, "max_tokens"),
    ({"model": MODEL}, 400, "prompt"),
    ({"model": MODEL, "prompt": "hi", "max_tokens": "many"}, 400, "max_tokens"),
    ({"model": MODEL, "prompt": "hi", "seed": 2 ** 70}, 400, "seed"),
    ({"model": MODEL, "prompt": [-1]}, 400, "token ids must be in"),
    ({"model": MODEL, "prompt": "hi", "top_p": 5, "temperature": 1}, 400, "top_p"),
    ({"model": MODEL, "prompt": "hi", "biglittle": {"policy": "bild:fallback=x"}}, 400, "fallback must be"),
])
def test_bad_input_gets_openai_errors(server, body, status, word):
    kw = {"content": body} if isinstance(body, str) else {"json": body}
    r = httpx.post(server.url + "/v1/completions", headers={"content-type": "application/json"}, timeout=30, **kw)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert word in err["message"] and set(err) == {"message", "type", "param", "code"}


def test_bad_chat_and_score_input(server):
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": MODEL, "messages": []})
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/v1/score", json={"model": MODEL, "token_ids": [1, 99999]})
    assert r.status_code == 400
    r = httpx.post(server.url + "/v1/score", json={"model": MODEL, "token_ids": [1, 2], "start": 5})
    assert r.status_code == 400 and "start" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/v1/score", json={"model": MODEL, "token_ids": [True, 2]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "token_ids.0"
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user"}]})
    assert r.status_code == 400 and r.json()["error"]["param"].startswith("messages.0.content")


def test_page_config_is_escaped(text_pair):
    small, big = text_pair
    name = 'x"</script><img src=x onerror=alert(1)>'
    live = LiveServer(create_app(Engine(small, big, bl.BiLD()), model_name=name))
    try:
        html = httpx.get(live.url + "/").text
    finally:
        live.stop()
    assert "</script><img" not in html and "<img src=x" not in html
    assert "const CONFIG = " + json.dumps({"model": name, "policy": "bild"}).replace("<", "\\u003c") in html


def test_api_key(text_pair):
    small, big = text_pair
    live = LiveServer(create_app(Engine(small, big, bl.BiLD()), model_name=MODEL, api_key="s3cret"))
    try:
        assert httpx.get(live.url + "/health").status_code == 200
        for path in ("/v1/models", "/metrics"):
            r = httpx.get(live.url + path)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(live.url + "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = OpenAI(base_url=live.url + "/v1", api_key="s3cret", max_retries=0)
        assert ok.completions.create(model=MODEL, prompt="Hi", max_tokens=3).usage.completion_tokens == 3
        bad = OpenAI(base_url=live.url + "/v1", api_key="nope", max_retries=0)
        with pytest.raises(Exception, match="401"):
            bad.completions.create(model=MODEL, prompt="Hi", max_tokens=3)
        assert httpx.get(live.url + "/").status_code == 200  # the page asks for the key itself
    finally:
        live.stop()


# ---------------------------------------------------------------- load, queue, cancel, timeout

def test_bounded_load_every_answer_complete_and_equal_to_solo(server, text_pair):
    prompts = ["Hello", "def f(x):", "Once upon"]
    expected = {p: solo(text_pair, p, max_new_tokens=8).text for p in prompts}

    def one(i):
        p = prompts[i % 3]
        r = httpx.post(server.url + "/v1/completions", json={"model": MODEL, "prompt": p, "max_tokens": 8},
                       timeout=120)
        return p, r.status_code, r.json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(200)))
    assert all(status == 200 for _, status, _ in results)
    assert all(body["choices"][0]["text"] == expected[p] for p, _, body in results)
    assert all(body["usage"]["completion_tokens"] == 8 for _, _, body in results)


def test_burst_past_the_queue_gets_429s_and_the_rest_complete(text_pair):
    small, big = text_pair
    engine = Engine(small, big, bl.BiLD(), max_queue=3)
    full = signal_on(engine, "admit", lambda *_: engine.in_flight == 3)
    live = LiveServer(create_app(engine, model_name=MODEL))
    expected = solo(text_pair, "Hello", max_new_tokens=48).text
    held = threading.Event()
    engine.pool.submit(held.wait, HANG)  # the model thread is busy until the test says so

    def one(_):
        r = httpx.post(live.url + "/v1/completions", json={"model": MODEL, "prompt": "Hello", "max_tokens": 48},
                       timeout=HANG)
        return r.status_code, r.json()

    try:
        with ThreadPoolExecutor(3) as pool:
            first = [pool.submit(one, i) for i in range(3)]
            assert full.wait(HANG)  # three requests wait: the queue is full
            late = [one(i) for i in range(13)]
            assert engine.in_flight == 3 and not any(f.done() for f in first)
            held.set()
            results = [f.result(timeout=HANG) for f in first]
    finally:
        held.set()
        live.stop()
    assert [status for status, _ in late] == [429] * 13
    assert all(body["error"]["type"] == "rate_limit_error" and body["error"]["code"] == "queue_full"
               for _, body in late)
    assert [status for status, _ in results] == [200] * 3
    assert all(body["choices"][0]["text"] == expected for _, body in results)


def test_client_disconnect_cancels_generation(text_pair):
    small, big = text_pair
    gate = Gate()
    engine = Engine(small, big, gate.policy)
    released = signal_on(engine, "release")
    live = LiveServer(create_app(engine, model_name=MODEL))
    try:
        body = {"model": MODEL, "prompt": "Hello", "max_tokens": 400, "stream": True, **EVERY_CHUNK}
        with httpx.stream("POST", live.url + "/v1/completions", json=body, timeout=HANG) as r:
            lines = r.iter_lines()  # kept: an abandoned line iterator, once collected, closes the connection
            next(line for line in lines if line.startswith("data: {"))  # one chunk
            assert gate.reached.wait(HANG)  # the model thread is held inside the next round
        # hung up: the server notices with nothing to send, and frees the job's place
        assert released.wait(HANG) and engine.in_flight == 0
        gate.opened.set()
        assert gate.closed.wait(HANG)  # the worker saw the cancel flag right after the held round
        assert gate.steps == 2         # of 400 tokens (one a round)
    finally:
        gate.opened.set()
        live.stop()


def test_request_timeout(text_pair):
    small, big = text_pair
    gate = Gate()
    engine = Engine(small, big, gate.policy, timeout_s=0.5)
    live = LiveServer(create_app(engine, model_name=MODEL))
    try:  # the model thread is held (after the first round) until after the deadline
        r = httpx.post(live.url + "/v1/completions", json={"model": MODEL, "prompt": "Hello", "max_tokens": 400},
                       timeout=HANG)
        assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error"
        assert engine.in_flight == 0
        gate.opened.set()
        assert gate.closed.wait(HANG) and gate.steps <= 2  # and the generation stops
    finally:
        gate.opened.set()
        live.stop()


def test_time_waiting_in_the_queue_counts_and_an_expired_job_never_runs(text_pair):
    small, big = text_pair
    gate = Gate()  # tells whether a generation ever starts
    engine = Engine(small, big, gate.policy, timeout_s=0.5)
    live = LiveServer(create_app(engine, model_name=MODEL))
    held = threading.Event()
    try:
        busy = engine.pool.submit(held.wait, HANG)  # the model thread is taken until the test says so
        r = httpx.post(live.url + "/v1/completions", json={"model": MODEL, "prompt": "Hello", "max_tokens": 4},
                       timeout=HANG)
        # answered at its deadline while the worker is still busy, not when the worker got free
        assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error"
        assert not busy.done() and engine.in_flight == 0
        held.set()
        engine.pool.submit(lambda: None).result(timeout=HANG)  # the expired job has had its turn
        assert gate.steps == 0 and not gate.closed.is_set()    # and did not start
        # the worker's side: a job whose time ran out while it waited reports that and never starts
        events = []
        engine._work(Job("Hello", gate.policy, {"max_new_tokens": 4}, timeout_s=-1.0), lambda *e: events.append(e))
        assert events == [("timeout", None)] and gate.steps == 0
        engine.timeout_s = 300.0
        gate.opened.set()
        ok = httpx.post(live.url + "/v1/completions", json={"model": MODEL, "prompt": "Hello", "max_tokens": 4},
                        timeout=HANG)
        assert ok.status_code == 200
        assert ok.json()["choices"][0]["text"] == solo(text_pair, "Hello", bl.BigOnly(), max_new_tokens=4).text
    finally:
        held.set()
        gate.opened.set()
        live.stop()


def test_shutdown_refuses_new_connections_and_lets_running_requests_finish(text_pair):
    small, big = text_pair
    gate = Gate()
    engine = Engine(small, big, gate.policy)
    both = signal_on(engine, "admit", lambda *_: engine.in_flight == 2)
    live = LiveServer(create_app(engine, model_name=MODEL))
    live.server.config.timeout_graceful_shutdown = HANG  # running requests get all the time they need
    body = {"model": MODEL, "prompt": "Hello", "max_tokens": 24, "stream": True, **EVERY_CHUNK}
    queued = {}

    def waiting_request():  # admitted before the shutdown, waiting behind the held stream
        queued["r"] = httpx.post(live.url + "/v1/completions", timeout=HANG,
                                 json={"model": MODEL, "prompt": "Once upon", "max_tokens": 8})

    stopper, waiter = threading.Thread(target=live.stop), threading.Thread(target=waiting_request)
    try:
        with httpx.stream("POST", live.url + "/v1/completions", json=body, timeout=HANG) as r:
            lines = r.iter_lines()
            first = next(lines)
            assert gate.reached.wait(HANG)  # the stream is held after its first chunk
            waiter.start()
            assert both.wait(HANG)
            stopper.start()
            until_refused(live.url)         # shutting down: no new connections
            gate.opened.set()
            rest = [line for line in lines if line]  # the stream in flight runs to its end
        waiter.join(HANG)
    finally:
        gate.opened.set()
        if not stopper.ident:
            stopper.start()
        stopper.join(HANG)
    assert not live.thread.is_alive()
    events = [json.loads(line[6:]) for line in [first, *rest] if line.startswith("data: {")]
    assert rest[-1] == "data: [DONE]" and events[-1]["choices"][0]["finish_reason"] == "length"
    assert "".join(e["choices"][0]["text"] for e in events) == \
        solo(text_pair, "Hello", bl.BigOnly(), max_new_tokens=24).text
    assert queued["r"].status_code == 200
    assert queued["r"].json()["choices"][0]["text"] == solo(text_pair, "Once upon", bl.BigOnly(), max_new_tokens=8).text


def test_shutdown_ends_a_stream_that_outlasts_the_grace_period(text_pair):
    small, big = text_pair
    gate = Gate()
    engine = Engine(small, big, gate.policy)
    live = LiveServer(create_app(engine, model_name=MODEL))
    live.server.config.timeout_graceful_shutdown = 0.5
    body = {"model": MODEL, "prompt": "Hello", "max_tokens": 400, "stream": True, **EVERY_CHUNK}
    stopper = threading.Thread(target=live.stop)
    rest = []
    try:
        with httpx.stream("POST", live.url + "/v1/completions", json=body, timeout=HANG) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: {")
            assert gate.reached.wait(HANG)  # held: the stream cannot end by itself
            stopper.start()
            with pytest.raises(httpx.RemoteProtocolError):  # cut after the grace period: the body ends unfinished
                rest.extend(lines)
        assert not gate.opened.is_set() and "data: [DONE]" not in rest
        assert engine.in_flight == 0   # the job's place is freed
        gate.opened.set()              # the held round ends; the worker stops the generation there
        assert gate.closed.wait(HANG) and gate.steps == 2
        live.thread.join(HANG)
        assert not live.thread.is_alive()
    finally:
        gate.opened.set()
        if not stopper.ident:
            stopper.start()
        stopper.join(HANG)


def test_remote_refuses_a_server_with_another_tokenizer(server, tiny_dir):
    from tiny import make_model

    other = bl.load_model(f"hf:{make_model(str(tiny_dir / 'perm2'), layers=1, hidden=32, tokenizer=True, permute_tokenizer=True)}")
    with pytest.raises(bl.VocabMismatchError, match="tokenizes text differently"):
        bl.load_model(f"remote:{server.url}#{MODEL}", tokenizer_from=other)


def test_sampling_without_a_seed_differs_and_with_one_repeats(client, text_pair):
    """Each answer is one token drawn from the big model's distribution q (temperature 2), so n
    answers drawn with independent randomness are all the same with probability Σ q^n, which is
    computed here: a test that fails by bad luck once in more than 10^8 runs."""
    big = text_pair[1]
    prompt, temperature, n = "def f(x):", 2.0, 16
    q = torch.softmax(big.session().extend(big.tokenizer.encode(prompt))[-1] / temperature, -1)
    assert float((q ** n).sum()) < 1e-8

    def sample(**kw) -> tuple:
        r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=1, temperature=temperature,
                                      extra_body={"biglittle": {"policy": "big", "return_origins": True}}, **kw)
        return tuple(r.model_extra["biglittle"]["token_ids"])  # ids: distinct bytes can read as the same text

    assert len({sample() for _ in range(n)}) > 1          # no seed: fresh randomness for every request
    assert len({sample(seed=s) for s in range(n)}) > 1    # the seed is used
    assert len({sample(seed=5) for _ in range(3)}) == 1   # and the same seed repeats

    def long_sample(seed):  # the server's own policy (BiLD) over 30 tokens repeats too
        return client.completions.create(model=MODEL, prompt="Hello", max_tokens=30, temperature=1.0,
                                         seed=seed).choices[0].text

    assert long_sample(5) == long_sample(5)
