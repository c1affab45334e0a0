"""The backend protocol on the HF backend: extend, truncate, keep."""
import pytest
import torch


def test_truncate_then_extend_equals_fresh_session(big, prompt):
    s = big.session()
    s.extend(prompt + [7, 8, 9])
    s.truncate(len(prompt))
    again = s.extend([10, 11])
    fresh = big.session().extend(prompt + [10, 11])
    assert len(s) == len(prompt) + 2
    assert torch.allclose(again, fresh[-2:], atol=1e-5)


def test_block_scoring_equals_one_at_a_time_in_fp32(big, prompt):
    block = big.session().extend(prompt)
    s = big.session()
    rows = [s.extend([t])[0] for t in prompt]
    assert torch.allclose(block, torch.stack(rows), atol=1e-5)


def test_logprobs_are_normalised_float32(big, prompt):
    logp = big.session().extend(prompt)
    assert logp.shape == (len(prompt), big.vocab_size)
    assert logp.dtype == torch.float32
    assert torch.allclose(logp.exp().sum(-1), torch.ones(len(prompt)), atol=1e-4)


def test_keep_returns_the_last_rows(big, prompt):
    full = big.session().extend(prompt)
    last = big.session().extend(prompt, keep=2)
    assert last.shape == (2, big.vocab_size)
    assert torch.allclose(last, full[-2:], atol=1e-5)


def test_truncate_to_zero_and_out_of_range(big, prompt):
    s = big.session()
    first = s.extend(prompt)
    s.truncate(0)
    assert len(s) == 0
    assert torch.allclose(s.extend(prompt), first, atol=1e-5)
    with pytest.raises(ValueError):
        s.truncate(len(prompt) + 1)


def test_bfloat16_loads_and_scores(big_path, prompt):
    import biglittle as bl

    m = bl.load_model(f"hf:{big_path}", dtype="bfloat16")
    logp = m.session().extend(prompt)
    assert logp.dtype == torch.float32 and torch.isfinite(logp).all()
