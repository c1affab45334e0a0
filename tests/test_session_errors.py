"""A session is exactly as it was before a call that raised (issue 27).

A forward pass that fails midway (here: a forward hook on a middle layer that raises once, as an
out-of-memory error or a Ctrl-C would) must not leave some cache layers one block longer than
others; llama.cpp must not keep the cells of the chunks it managed to decode; a remote request
that fails must not move the session's tokens. After the failure the session's next call gives
what a fresh session given the same tokens gives: exactly (fp32 HF), or within llama.cpp's
rounding (its cells lie elsewhere).
"""
from __future__ import annotations

import pytest
import torch

import biglittle as bl
from biglittle.errors import RemoteError
from tiny import make_model
from tiny_seq2seq import make_seq2seq

PROMPT = [3, 1, 4, 1, 5, 9, 2, 6]
MORE = [5, 3, 5, 8, 9, 7]


class Injected(RuntimeError):
    """The failure a test injects."""


class FailOnce:
    """A forward hook that raises `error` the first time `module` has run (its cache update done,
    the layers after it not yet run), then stays quiet; removed when the test ends."""

    def __init__(self, module, error: BaseException):
        self.error, self.fired = error, False
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, args, output):
        if not self.fired:
            self.fired = True
            raise self.error

    def remove(self):
        self.handle.remove()


def decoder_layers(net):
    """The decoder's layer stack of a causal LM (Llama) or an encoder–decoder model (T5, Marian)."""
    dec = net.get_decoder()
    return dec.layers if hasattr(dec, "layers") else dec.block


@pytest.fixture(scope="module")
def three_layers(tmp_path_factory):
    """A tiny fp32 Llama with three layers, so that one sits in the middle."""
    return bl.load_model(f"hf:{make_model(str(tmp_path_factory.mktemp('err') / 'm'), layers=3, seed=5)}")


def fail_in_middle(model, error):
    layers = decoder_layers(model.net)
    assert len(layers) >= 3
    return FailOnce(layers[len(layers) // 2], error)


# ---------------------------------------------------------------- HF decoder-only

@pytest.mark.parametrize("error", [Injected("boom"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
@pytest.mark.parametrize("cached", [0, len(PROMPT)], ids=["first-extend", "later-extend"])
def test_hf_failed_extend_leaves_the_session_as_it_was(three_layers, error, cached):
    """`twin` makes the same successful calls as `s`, without the failed one: every later answer
    of `s` equals the twin's bit for bit (fp32, the same blocks)."""
    m = three_layers
    s, twin = m.session(), m.session()
    if cached:
        s.extend(PROMPT)
        twin.extend(PROMPT)
    hook = fail_in_middle(m, error)
    try:
        with pytest.raises(type(error)):
            s.extend(MORE, keep=2)
    finally:
        hook.remove()
    assert hook.fired and len(s) == cached
    assert torch.equal(s.extend(MORE), twin.extend(MORE))
    assert len(s) == cached + len(MORE)
    s.truncate(cached + 2)  # the rollback bookkeeping agrees with the cache
    twin.truncate(cached + 2)
    assert torch.equal(s.extend(PROMPT[:3]), twin.extend(PROMPT[:3]))


def test_hf_failed_extend_then_truncate(three_layers):
    m = three_layers
    s, twin = m.session(), m.session()
    s.extend(PROMPT)
    twin.extend(PROMPT)
    hook = fail_in_middle(m, Injected("boom"))
    try:
        with pytest.raises(Injected):
            s.extend(MORE)
    finally:
        hook.remove()
    s.truncate(4)
    twin.truncate(4)
    assert len(s) == 4
    assert torch.equal(s.extend(MORE), twin.extend(MORE))


# ---------------------------------------------------------------- HF encoder–decoder

SOURCE = [5, 17, 3, 42, 8, 23, 11, 1]


@pytest.fixture(scope="module", params=["t5", "marian"])
def seq2seq(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"err_{request.param}")
    return bl.load_model(f"hf-seq2seq:{make_seq2seq(str(d / 'm'), arch=request.param, layers=3, seed=3)}")


@pytest.mark.parametrize("cached", [0, 3], ids=["first-extend", "later-extend"])
def test_seq2seq_failed_extend_leaves_the_session_as_it_was(seq2seq, cached):
    """The first extend also fills the cross-attention half of the cache: a failure midway leaves
    it filled for some layers only; the decoder side must still come out right."""
    m = seq2seq
    seq = list(m.decoder_start_ids) + [7, 9, 4, 12, 6]
    s, twin = m.session(source_ids=SOURCE), m.session(source_ids=SOURCE)
    if cached:
        s.extend(seq[:cached])
        twin.extend(seq[:cached])
    hook = fail_in_middle(m, Injected("boom"))
    try:
        with pytest.raises(Injected):
            s.extend(seq[cached:])
    finally:
        hook.remove()
    assert hook.fired and len(s) == cached
    assert torch.equal(s.extend(seq[cached:]), twin.extend(seq[cached:]))
    s.truncate(cached + 1)
    twin.truncate(cached + 1)
    assert torch.equal(s.extend([20, 21]), twin.extend([20, 21]))


# ---------------------------------------------------------------- llama.cpp (real SmolLM2)

TEXT = "def add(a, b):\n    return a + b\n\nprint(add(2, 3))"


@pytest.fixture(scope="module")
def chunked(smol):
    """SmolLM2 decoding in chunks of 8 tokens, one sequence: a block of 20 tokens is three
    llama_decode calls, and a second session takes the first one's sequence."""
    return bl.load_model(smol.spec, n_ctx=256, n_batch=8, n_seq=1)


def cells(model, seq: int) -> int:
    """Positions llama.cpp holds for sequence `seq` (its highest position + 1)."""
    import llama_cpp

    return int(llama_cpp.llama_memory_seq_pos_max(model.llm._ctx.memory, seq)) + 1


def fail_second_chunk(model, monkeypatch):
    """From now on, the second llama_decode call raises (once)."""
    real, calls = model._decode_batch, []

    def decode_batch(seq):
        calls.append(seq)
        if len(calls) == 2:
            raise Injected("llama_decode failed")
        return real(seq)

    monkeypatch.setattr(model, "_decode_batch", decode_batch)
    return calls


def same_distribution(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a.argmax(-1) == b.argmax(-1)).all()) and (a.exp() - b.exp()).abs().max().item() < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("cached", [0, 5], ids=["first-extend", "later-extend"])
def test_llamacpp_decode_failing_in_its_second_chunk(chunked, monkeypatch, cached):
    m = chunked
    ids = m.tokenizer.encode(TEXT)
    assert len(ids) - cached > 2 * m.n_batch
    ref = m.session().extend(ids)
    s = m.session()
    if cached:
        s.extend(ids[:cached])
    calls = fail_second_chunk(m, monkeypatch)
    with pytest.raises(Injected):
        s.extend(ids[cached:])
    assert len(calls) == 2
    assert len(s) == cached and s.tokens == ids[:cached]
    assert m._slots[s.seq].tokens == ids[:cached], "the slot's tokens are the session's"
    assert cells(m, s.seq) == cached, "the first chunk's cells are gone"
    monkeypatch.undo()
    assert same_distribution(s.extend(ids[cached:]), ref[cached:])
    assert cells(m, s.seq) == len(ids)


@pytest.mark.slow
def test_llamacpp_refeed_failing_in_its_second_chunk(chunked, monkeypatch):
    """A session that lost its sequence re-feeds its tokens first; a failure there leaves the
    sequence holding exactly what the slot says it holds."""
    m = chunked
    ids = m.tokenizer.encode(TEXT)
    a, b = m.session(), m.session()
    a.extend(ids[:20])
    b.extend(ids[:3])  # takes the only sequence
    assert a.seq is None
    fail_second_chunk(m, monkeypatch)
    with pytest.raises(Injected):
        a.extend(ids[20:22])
    assert len(a) == 20
    assert cells(m, a.seq) == len(m._slots[a.seq].tokens) <= 8
    monkeypatch.undo()
    assert same_distribution(a.extend(ids[20:]), m.session().extend(ids)[20:])


# ---------------------------------------------------------------- remote

def test_remote_failed_request_leaves_the_tokens(fake_score):
    """A request that fails (a malformed answer, after the scoring call itself) leaves the session's
    tokens as they were, so the next request sends the right sequence."""
    server, model = fake_score
    s = model.session()
    s.extend([1, 2, 3])
    server.rows = [{"top": [[1, -0.1]], "next_logprob": "not a number"}, {"top": [[2, -0.2]], "next_logprob": None}]
    with pytest.raises(RemoteError, match="malformed"):
        s.extend([4, 5])
    assert len(s) == 3 and s.tokens == [1, 2, 3]
    server.rows = None  # well-formed again
    s.extend([4, 5])
    assert server.sent[-1] == [1, 2, 3, 4, 5]
    assert len(s) == 5


@pytest.fixture
def fake_score():
    """A biglittle-dialect fake server that records the sequences it is sent."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from live import send_json

    class State:
        rows = None
        sent: list = []

    state = State()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            if self.path == "/v1/models":
                out = {"data": [{"id": "m"}]}
            elif self.path == "/openapi.json":
                out = {"paths": {"/v1/score": {}}}
            else:
                ids, start = body["token_ids"], body["start"]
                state.sent.append(ids)
                n = len(ids) - start
                out = {"vocab_size": 16, "rows": state.rows or [
                    {"top": [[1, -0.5]], "next_logprob": -1.0 if i < n - 1 else None} for i in range(n)]}
            send_json(self, 200, out)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    model = bl.load_model(f"remote:http://127.0.0.1:{server.server_address[1]}#m", eos_token_ids=[0])
    try:
        yield state, model
    finally:
        server.shutdown()
        server.server_close()
