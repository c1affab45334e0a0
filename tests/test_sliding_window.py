"""Rollback on models with sliding-window attention (Gemma-3, Mistral, Qwen2 with a window).

transformers caches a sliding layer's last `window` positions only, and refuses to crop it once it
has seen more; the HF session gives those layers full caches and lets the model's mask slide.
Checked against a fresh forward pass without any cache, and through speculative decoding whose
rejections fall far past the window.
"""
import pytest
import torch

import biglittle as bl
from tiny import make_draft_of, make_sliding_model, naive_greedy

WINDOW = 8
N = 64
ARCHS = ["qwen2", "mistral", "gemma3"]


@pytest.fixture(scope="module", params=ARCHS)
def pair_paths(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"sliding-{request.param}")
    big = make_sliding_model(str(d / "big"), arch=request.param, window=WINDOW, seed=1, sharpen=50.0)
    small = make_draft_of(big, str(d / "small"), keep_layers=2, noise=0.2, seed=2, tokenizer=True)
    return small, big


def fresh_logp(net, seq: list[int]) -> torch.Tensor:
    """Log-probs after every token of seq, from one forward pass with no cache at all."""
    with torch.no_grad():
        return torch.log_softmax(net(input_ids=torch.tensor([seq]), use_cache=False).logits[0].float(), -1)


def test_the_tiny_models_really_slide(pair_paths):
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicSlidingWindowLayer

    net = bl.load_model(f"hf:{pair_paths[1]}").net
    kinds = [type(layer) for layer in DynamicCache(config=net.config).layers]
    assert DynamicSlidingWindowLayer in kinds  # what transformers would give: uncroppable past the window
    # and the window changes the output, so matching a windowed reference means something
    seq = list(range(3, 3 + 4 * WINDOW))
    wide = type(net)(net.config.__class__(**{**net.config.to_dict(), "sliding_window": 10_000}))
    wide.load_state_dict(net.state_dict())
    assert not torch.allclose(fresh_logp(net, seq)[-1], fresh_logp(wide.eval(), seq)[-1], atol=1e-3)


def test_rollback_past_the_window_matches_a_fresh_forward(pair_paths):
    model = bl.load_model(f"hf:{pair_paths[1]}")
    seq = [(7 * i + 3) % 256 for i in range(5 * WINDOW)]
    other = [(11 * i + 5) % 256 for i in range(3 * WINDOW)]
    s = model.session()
    s.extend(seq[:3 * WINDOW] + other)         # well past the window, then roll most of it back
    s.truncate(2 * WINDOW + 1)                 # back across more than a whole window
    got = s.extend(seq[2 * WINDOW + 1:])
    s.truncate(3 * WINDOW)
    again = s.extend(seq[3 * WINDOW:], keep=1)
    ref = fresh_logp(model.net, seq)
    torch.testing.assert_close(got, ref[2 * WINDOW + 1:], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(again, ref[-1:], atol=1e-4, rtol=1e-4)
    assert len(s) == len(seq)


@pytest.mark.parametrize("draft", [3, 5])
def test_greedy_speculative_equals_big_only_past_the_window(pair_paths, draft):
    small_path, big_path = pair_paths
    small, big = bl.load_model(f"hf:{small_path}"), bl.load_model(f"hf:{big_path}")
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]
    r = bl.generate(small, big, prompt, policy=bl.Speculative(draft=draft), max_new_tokens=N)
    assert r.token_ids == naive_greedy(big_path, prompt, N)
    assert bl.generate(None, big, prompt, policy=bl.BigOnly(), max_new_tokens=N).token_ids == r.token_ids
    # rejections happened, and some of them long after the window was full
    late_rejections = [i for i, (o, why) in enumerate(zip(r.origins, r.reasons))
                       if why == "correction" and len(prompt) + i > 2 * WINDOW]
    assert r.stats.rollbacks > 0 and late_rejections


def make_conv_model(path: str) -> str:
    """A tiny LFM2: a short-convolution layer (a state that cannot be rewound) plus attention."""
    import transformers

    torch.manual_seed(0)
    cfg = transformers.Lfm2Config(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                  layer_types=["conv", "full_attention"], bos_token_id=None, eos_token_id=None,
                                  pad_token_id=None)
    transformers.Lfm2ForCausalLM(cfg).eval().save_pretrained(path)
    return path


def test_a_layer_that_cannot_roll_back_is_refused_clearly(tmp_path):
    model = bl.load_model(f"hf:{make_conv_model(str(tmp_path / 'lfm2'))}")
    s = model.session()
    s.extend([1, 2, 3, 4])
    s.truncate(4)  # nothing to undo: fine
    with pytest.raises(bl.ModelSpecError, match=r"hf:.*lfm2.*LinearAttentionLayer.*cannot be rolled back"):
        s.truncate(2)
    # alone it still works: big-only never rolls back
    r = bl.generate(None, model, [1, 2, 3], policy=bl.BigOnly(), max_new_tokens=6)
    assert r.token_ids == naive_greedy(model.net, [1, 2, 3], 6)


# ---------------------------------------------------------------- the real Gemma-3 (window 512)

GEMMA_TOKENS = 16


def fresh_next(net, seq: list[int]) -> int:
    """The greedy next token from one forward pass over seq with no cache."""
    with torch.no_grad():
        return int(net(input_ids=torch.tensor([seq]), use_cache=False, logits_to_keep=1).logits[0, -1].argmax())


@pytest.mark.slow
def test_gemma3_ari_pair_past_the_window_equals_big_only():
    """Gemma-3-270M as an ARI-style pair: llama.cpp Q4 drafts, the same GGUF dequantized to fp32
    verifies, on a prompt longer than the 512-position window. The two backends disagree now and
    then, and BiLD with rollback=0 rolls back every round, so the HF cache is cut back again and
    again past the window."""
    import os

    from transformers import DynamicCache
    from transformers.cache_utils import DynamicSlidingWindowLayer

    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        small = bl.load_model("gguf:gemma3-270m")
        big = bl.load_model("hf-gguf:gemma3-270m", dtype="float32")
        assert DynamicSlidingWindowLayer in {type(x) for x in DynamicCache(config=big.net.config).layers}
        text = " ".join(f"Step {i}: add {i} to the running total, then write the total down." for i in range(34))
        prompt = big.tokenizer.encode(text + " After the last step the total is")
        assert len(prompt) > 600 > big.net.config.sliding_window
        assert small.tokenizer.encode(text) == big.tokenizer.encode(text)
        ref = bl.generate(None, big, prompt, policy=bl.BigOnly(), max_new_tokens=GEMMA_TOKENS).token_ids
        # the reference itself against fresh forward passes without a cache (first and last token)
        assert ref[0] == fresh_next(big.net, prompt) and ref[-1] == fresh_next(big.net, prompt + ref[:-1])
        rollbacks = 0
        for policy in (bl.Speculative(draft=4), bl.BiLD(rollback=0.0)):
            r = bl.generate(small, big, prompt, policy=policy, max_new_tokens=GEMMA_TOKENS)
            assert r.token_ids == ref, policy
            rollbacks += r.stats.rollbacks
        assert rollbacks > 0
    finally:
        torch.set_num_threads(threads)
