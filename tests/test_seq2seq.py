"""The encoder–decoder backend (hf-seq2seq) meets the session protocol: the source is encoded once
per session, extend/truncate work on the decoder side, and a speculative loop over its sessions
gives exactly the big model's greedy output."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

import biglittle as bl
from biglittle.errors import ModelSpecError, PromptError
from tiny_seq2seq import make_seq2seq, make_seq2seq_draft_of, naive_logprobs

SOURCE = [5, 17, 3, 42, 8, 23, 11, 1]


@pytest.fixture(scope="module", params=["t5", "marian"])
def pair(request, tmp_path_factory):
    """(small, big) of one architecture: the big model and a noisy copy of it."""
    arch = request.param
    d = tmp_path_factory.mktemp(f"s2s_{arch}")
    b = make_seq2seq(str(d / "big"), arch=arch, seed=1, sharpen=10.0 if arch == "t5" else 20.0)
    s = make_seq2seq_draft_of(b, str(d / "small"), noise=0.03 if arch == "t5" else 0.1, seed=2)
    return bl.load_model(f"hf-seq2seq:{s}"), bl.load_model(f"hf-seq2seq:{b}")


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("s2s_text")
    return bl.load_model(f"hf:{make_seq2seq(str(d / 'm'), tokenizer=True, eos_token_id=1)}")


@contextmanager
def encoder_calls(model):
    """Counts the forward passes of the model's encoder while the block runs."""
    calls = [0]
    hook = model.net.get_encoder().register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        yield calls
    finally:
        hook.remove()


def greedy(model, source, n):
    s = model.session(source_ids=source)
    seq = list(model.decoder_start_ids)
    logp = s.extend(seq)[-1]
    for _ in range(n):
        seq.append(int(logp.argmax()))
        logp = s.extend([seq[-1]])[-1]
    return seq[len(model.decoder_start_ids):]


def speculative_greedy(small, big, source, n, gamma):
    """Draft γ tokens with small, verify them with big in one pass, keep the agreeing prefix plus
    big's token, truncate both sessions to it. Returns (tokens, rejections)."""
    ss, bs = small.session(source_ids=source), big.session(source_ids=source)
    seq = list(big.decoder_start_ids)
    s_next, b_next = ss.extend(seq)[-1], bs.extend(seq)[-1]
    rejections = 0
    while len(seq) - 1 < n:
        drafts = []
        for _ in range(gamma):
            drafts.append(int(s_next.argmax()))
            s_next = ss.extend([drafts[-1]])[-1]
        rows = torch.cat([b_next[None], bs.extend(drafts)])  # rows[i]: big's view of drafts[i]; rows[γ]: bonus
        k = 0
        while k < gamma and int(rows[k].argmax()) == drafts[k]:
            k += 1
        rejections += k < gamma
        kept = len(seq) + k
        ss.truncate(kept)
        bs.truncate(kept)
        seq += drafts[:k] + [int(rows[k].argmax())]
        s_next, b_next = ss.extend(seq[-1:])[-1], bs.extend(seq[-1:])[-1]
    return seq[1:n + 1], rejections


def test_hf_prefix_detects_an_encoder_decoder_config(pair, tmp_path):
    path = make_seq2seq(str(tmp_path / "m"), vocab=32)
    m = bl.load_model(f"hf:{path}")
    assert m.backend == "hf-seq2seq" and m.encoder_decoder
    assert m.decoder_start_ids == [0]
    assert m.vocab_size == 32


def test_extend_rows_are_normalised_and_equal_a_full_forward(pair):
    small, big = pair
    dec = big.decoder_start_ids + [7, 30, 2, 2, 61]
    s = big.session(source_ids=SOURCE)
    logp = s.extend(dec[:3])
    logp = torch.cat([logp, s.extend(dec[3:4]), s.extend(dec[4:])])
    assert logp.shape == (len(dec), big.vocab_size) and logp.dtype == torch.float32
    assert len(s) == len(dec)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(len(dec)), atol=1e-4)
    assert torch.allclose(logp, naive_logprobs(big.net, SOURCE, dec), atol=1e-5)


def test_keep_returns_the_last_rows(pair):
    _, big = pair
    dec = big.decoder_start_ids + [9, 8, 7]
    full = big.session(source_ids=SOURCE).extend(dec)
    assert torch.allclose(big.session(source_ids=SOURCE).extend(dec, keep=2), full[-2:], atol=1e-6)


def test_truncate_then_extend_equals_a_fresh_session_without_re_encoding(pair):
    _, big = pair
    start = big.decoder_start_ids
    with encoder_calls(big) as calls:
        s = big.session(source_ids=SOURCE)
        s.extend(start + [4, 5, 6, 7])
        s.truncate(3)
        s.extend([40, 41])
        s.truncate(1)
        again = s.extend([50, 51, 52])
        s.truncate(0)
        from_zero = s.extend(start + [50])
    assert calls[0] == 1  # the session encoded its source once; three rollbacks re-encoded nothing
    fresh = big.session(source_ids=SOURCE).extend(start + [50, 51, 52])
    assert torch.allclose(again, fresh[1:], atol=1e-5)
    assert torch.allclose(from_zero, fresh[:2], atol=1e-5)
    assert len(s) == 2
    with pytest.raises(ValueError):
        s.truncate(3)


def test_each_session_encodes_its_own_source(pair):
    _, big = pair
    other = [9, 9, 30, 1]
    dec = big.decoder_start_ids + [3]
    a = big.session(source_ids=SOURCE).extend(dec)
    b = big.session(source_ids=other).extend(dec)
    assert not torch.allclose(a, b, atol=1e-3)
    assert torch.allclose(b, naive_logprobs(big.net, other, dec), atol=1e-5)


@pytest.mark.parametrize("gamma", [1, 2, 3, 4])
def test_greedy_speculative_equals_big_greedy(pair, gamma):
    small, big = pair
    with encoder_calls(big) as calls:
        out, rejections = speculative_greedy(small, big, SOURCE, 24, gamma)
    assert out == greedy(big, SOURCE, 24)
    assert calls[0] == 1  # one big session, however many rollbacks
    if gamma > 1:
        assert rejections > 0  # the pair disagrees sometimes, so rollbacks were exercised


def test_small_and_big_disagree_sometimes_and_agree_often(pair):
    small, big = pair
    s, b = greedy(small, SOURCE, 24), greedy(big, SOURCE, 24)
    same = sum(x == y for x, y in zip(s, b))
    assert 0 < same < len(b)


def test_session_needs_a_source(pair):
    _, big = pair
    with pytest.raises(PromptError, match="source"):
        big.session()
    with pytest.raises(PromptError):
        big.session(source_ids=[])


def test_a_source_longer_than_the_encoder_takes_is_refused(pair):
    _, big = pair
    long = [5] * 300
    if big.context_length is None:  # T5: relative positions, any length
        assert big.session(source_ids=long).extend(big.decoder_start_ids).shape == (1, big.vocab_size)
    else:  # Marian: 256 learned positions
        with pytest.raises(PromptError, match="at most 256"):
            big.session(source_ids=long)


def test_bfloat16_loads_and_scores(pair):
    _, big = pair
    m = bl.load_model(big.spec, dtype="bfloat16")
    logp = m.session(source_ids=SOURCE).extend(m.decoder_start_ids + [4])
    assert logp.dtype == torch.float32 and torch.isfinite(logp).all()


def test_text_source_is_encoded_with_the_models_tokenizer(text_model):
    ids = text_model.encode_source("Hallo Welt")
    assert ids[-1] == 1 and len(ids) == len("Hallo Welt") + 1  # one id per byte, closed by </s>
    assert text_model.tokenizer.decode([b + 3 for b in b"Welt"]) == "Welt"
    assert 1 in text_model.eos_token_ids
    s = text_model.session(source_ids=ids)
    assert s.extend(text_model.decoder_start_ids).shape == (1, text_model.vocab_size)
    with pytest.raises(ModelSpecError, match="chat"):
        text_model.tokenizer.apply_chat([{"role": "user", "content": "hi"}])


def test_bad_specs_are_clear(tmp_path):
    with pytest.raises(ModelSpecError, match="no such model folder"):
        bl.load_model(f"hf-seq2seq:{tmp_path / 'missing'}")
    with pytest.raises(ModelSpecError, match="dtype"):
        bl.load_model(f"hf-seq2seq:{tmp_path}", dtype="int3")
