"""The OpenVINO backend on a real IR: Qwen2.5-Coder-0.5B, the catalog's GGUF requantized to pure
Q4_0 and read by openvino_genai into a stateful IR once per module (~20 s, in pytest's tmp dir).

Most tests use the exact settings (exact=True: no dynamic quantization, f32 KV cache and
inference), where a block's logits do not depend on how its tokens were chunked, so block scoring,
masked rollback and every lossless policy can be held to big-only token for token. The fast
default settings promise no such thing (up to ~0.9 in a logit between chunkings,
../shared/OPENVINO.md); they are only loaded where a test needs the IR's own numbers.
"""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import torch

import biglittle as bl
from biglittle.errors import ModelSpecError, PromptError

pytestmark = pytest.mark.slow
pytest.importorskip("openvino")
pytest.importorskip("openvino_genai")

IM_END = 151645
CODE = ("def total(items):\n    result = 0\n    for item in items:\n        result += item.price * item.count\n"
        "    return result\n")
PROMPT = f"Rename `result` to `acc` in this function and return the whole function:\n\n{CODE}"

# Block vs one-at-a-time in the exact settings: f32 sums in another order. Measured here: max
# |Δlogp| 7e-5 over a 30-token block (logits of magnitude ~20, 24 layers); 1e-3 leaves room for
# another summation order and is still far below any tie that could move an argmax in the tests.
EXACT_ATOL = 1e-3

BUILD = """
import ctypes, sys
import llama_cpp
from biglittle.models.llamacpp import quiet_logs
quiet_logs(True)
p = llama_cpp.llama_model_quantize_default_params()
p.nthread, p.allow_requantize, p.pure = 2, True, True
p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p))
assert rc == 0, rc
import openvino_genai
openvino_genai.LLMPipeline(sys.argv[2], "CPU", enable_save_ov_model=True)
"""


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    """openvino_model.xml of the 0.5B, made as the catalog makes it: pure Q4_0, then openvino_genai's
    GGUF reader (in a child process, so that its pipeline and llama.cpp's logs stay out of ours)."""
    from biglittle import catalog

    gguf = catalog.ensure("qwen2.5-coder-0.5b")
    out = tmp_path_factory.mktemp("ov") / "qwen05-q4_0.gguf"
    subprocess.run([sys.executable, "-c", BUILD, str(gguf), str(out)], check=True, capture_output=True)
    xml = out.parent / "openvino_model.xml"
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    return str(xml)


@pytest.fixture(scope="module")
def tok(ir):
    """The GGUF's own tokenizer (vocab only), as the catalog side hands it over."""
    from llama_cpp import Llama

    from biglittle.models.llamacpp import LlamaCppTokenizer, quiet_logs

    quiet_logs(True)
    gguf = ir.replace("openvino_model.xml", "qwen05-q4_0.gguf")
    llm = Llama(model_path=gguf, vocab_only=True, verbose=False)
    return LlamaCppTokenizer(llm, (llm.metadata or {}).get("tokenizer.chat_template"))


def load(ir, tok, **kw):
    from biglittle.models.openvino import load_openvino_ir

    return load_openvino_ir("ov:qwen2.5-coder-0.5b", ir, tok, [IM_END], 1024, threads=2, **kw)


@pytest.fixture(scope="module")
def ov(ir, tok):
    return load(ir, tok, exact=True)


@pytest.fixture(scope="module")
def ids(tok):
    return tok.encode(CODE)


def fresh(model, ids):
    return model.session().extend(ids)


def test_model_facts(ov, tok):
    assert ov.backend == "openvino" and ov.vocab_size == 151936 and ov.context_length == 1024
    assert ov.eos_token_ids == frozenset({IM_END}) and ov.tokenizer is tok
    assert ov.config["INFERENCE_PRECISION_HINT"] == "f32" and ov.config["INFERENCE_NUM_THREADS"] == 2


def test_block_equals_one_at_a_time_and_keep(ov, ids):
    s = ov.session()
    block = s.extend(ids)
    assert block.shape == (len(ids), ov.vocab_size) and block.dtype == torch.float32
    assert torch.allclose(block.exp().sum(-1), torch.ones(len(ids)), atol=1e-4)
    one = ov.session()
    steps = torch.cat([one.extend([t]) for t in ids])
    assert (block - steps).abs().max().item() < EXACT_ATOL
    assert (block.argmax(-1) == steps.argmax(-1)).all()
    last = ov.session().extend(ids, keep=3)
    assert last.shape == (3, ov.vocab_size) and torch.allclose(last, block[-3:], atol=EXACT_ATOL)


def test_truncate_then_extend_equals_a_fresh_session(ov, ids):
    s = ov.session()
    s.extend(ids)
    s.truncate(7)
    assert len(s) == 7
    again = s.extend(ids[7:])
    assert (again - fresh(ov, ids)[7:]).abs().max().item() < EXACT_ATOL
    s.truncate(0)
    assert len(s) == 0 and (s.extend(ids) - fresh(ov, ids)).abs().max().item() < EXACT_ATOL
    with pytest.raises(ValueError):
        s.truncate(len(s) + 1)


def test_masked_rollback_over_rounds_equals_a_fresh_session(ov, ids):
    """Rounds of draft, verify, reject a few: the dead entries pile up (masked, then compacted once
    they outnumber the live ones); the live sequence's numbers stay a fresh session's."""
    s = ov.session()
    s.extend(ids[:10])
    junk = [11, 22, 33, 44, 55]
    fed = 10
    for i in range(10, len(ids), 3):
        s.extend(junk + ids[i:i + 3])      # a block whose first drafts are wrong
        s.truncate(i)                      # rejected: all of it
        s.extend(ids[i:i + 3])             # the right tokens
        fed += len(junk) + 2 * len(ids[i:i + 3])
    assert len(s) == len(ids) and s._mask.count(1) == len(ids)
    assert len(s._mask) < fed, "the state was compacted on the way"
    tail = s.extend([IM_END])
    assert (tail - fresh(ov, ids + [IM_END])[-1:]).abs().max().item() < EXACT_ATOL


@pytest.fixture(scope="module")
def big_only(ov):
    return bl.generate(None, ov, PROMPT, policy=bl.BigOnly(), max_new_tokens=24, chat=True).token_ids


def test_lookup_speculative_is_lossless(ov, big_only):
    got = bl.generate(None, ov, PROMPT, policy=bl.Speculative(drafter="lookup", draft=8), max_new_tokens=24, chat=True)
    assert len(big_only) == 24 and got.token_ids == big_only
    assert got.stats.accepted > 0 and got.stats.rollbacks > 0  # blocks kept and blocks rolled back


def test_speculative_with_a_llamacpp_drafter_is_lossless(ov, big_only, qwen_small):
    got = bl.generate(qwen_small, ov, PROMPT, policy=bl.Speculative(draft=4), max_new_tokens=24, chat=True)
    assert got.token_ids == big_only
    assert got.stats.accepted > 0 and got.stats.rollbacks > 0


def test_bild_without_fallback_is_lossless(ov, big_only, qwen_small):
    got = bl.generate(qwen_small, ov, PROMPT, policy=bl.BiLD(fallback=1.1), max_new_tokens=24, chat=True)
    assert got.token_ids == big_only


class Injected(RuntimeError):
    """The failure a test injects."""


def fail_once(monkeypatch, model, after: bool):
    """Make the model's next infer raise once: before the runtime ran (the state untouched) or after
    it (the block already in the state, as a Ctrl-C landing just after infer() returns)."""
    real = model._infer

    def infer(*args):
        monkeypatch.setattr(model, "_infer", real)
        if after:
            real(*args)
        raise Injected("injected")

    monkeypatch.setattr(model, "_infer", infer)


@pytest.mark.parametrize("after", [False, True], ids=["before-infer", "after-infer"])
def test_a_call_that_raised_leaves_the_session_as_before(ov, ids, monkeypatch, after):
    s = ov.session()
    s.extend(ids[:12])
    fail_once(monkeypatch, ov, after)
    with pytest.raises(Injected):
        s.extend(ids[12:])
    assert len(s) == 12 and s._mask.count(1) == 12
    assert (s.extend(ids[12:]) - fresh(ov, ids)[12:]).abs().max().item() < EXACT_ATOL


def test_two_threads_on_one_model_get_what_they_get_alone(ov, tok):
    prompts = ["def add(a, b):", "class Stack:"]
    alone = [bl.generate(None, ov, p, policy=bl.BigOnly(), max_new_tokens=12).token_ids for p in prompts]
    results, errors = [None, None], []
    start = threading.Barrier(2)

    def run(i):
        try:
            start.wait()
            results[i] = bl.generate(None, ov, prompts[i], policy=bl.Speculative(drafter="lookup", draft=4),
                                     max_new_tokens=12).token_ids
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == alone


def test_bad_input(ov, ir, tok, ids, monkeypatch, tmp_path):
    from biglittle.models.openvino import load_openvino_ir

    s = ov.session()
    with pytest.raises(ValueError, match="at least one token"):
        s.extend([])
    monkeypatch.setattr(ov, "context_length", 16)
    with pytest.raises(PromptError, match="context of 16"):
        s.extend(ids[:17])
    assert len(s) == 0
    with pytest.raises(ModelSpecError, match="no such OpenVINO IR"):
        load_openvino_ir("ov:x", str(tmp_path / "openvino_model.xml"), tok, [IM_END], 64)
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    with pytest.raises(ModelSpecError, match=r"pip install 'biglittle\[openvino\]'"):
        load_openvino_ir("ov:x", ir, tok, [IM_END], 64)


def test_a_state_it_cannot_trust_is_re_fed_from_the_tokens(ov, ids):
    """When a failed call leaves the state at a length the session cannot explain (or cannot read),
    it marks itself stale; the next call resets the state and re-feeds the live tokens first."""
    s = ov.session()
    s.extend(ids[:12])
    s._stale = True
    assert (s.extend(ids[12:]) - fresh(ov, ids)[12:]).abs().max().item() < EXACT_ATOL
    assert len(s) == len(ids) and len(s._mask) == len(ids) and not s._stale
