"""Bad input gets a clear error that names the problem."""
import math

import pytest

import biglittle as bl
from tiny import make_model


@pytest.mark.parametrize("make", [
    lambda: bl.BiLD(fallback=-0.1),
    lambda: bl.BiLD(fallback=math.nan),
    lambda: bl.BiLD(fallback=math.inf),
    lambda: bl.BiLD(rollback=-1),
    lambda: bl.BiLD(max_small_steps=0),
    lambda: bl.BiLD(max_small_steps=2.5),
    lambda: bl.Speculative(draft=0),
    lambda: bl.Speculative(draft=True),
    lambda: bl.Speculative(schedule="fast"),
    lambda: bl.Speculative(acceptance="greedy"),
    lambda: bl.Speculative(confidence_stop=1.5),
], ids=lambda f: "")
def test_invalid_policy_settings(make):
    with pytest.raises(bl.ConfigError):
        make()


def test_valid_extremes_are_accepted():
    bl.BiLD(fallback=5.0, rollback=math.inf, max_small_steps=None)
    bl.BiLD(fallback=0.0, rollback=0.0)


@pytest.mark.parametrize("kw, word", [
    (dict(temperature=-1), "temperature"),
    (dict(top_k=0), "top_k"),
    (dict(top_p=0.0), "top_p"),
    (dict(max_new_tokens=0), "max_new_tokens"),
])
def test_invalid_sampling_settings(small, big, prompt, kw, word):
    with pytest.raises(bl.ConfigError, match=word):
        bl.generate(small, big, prompt, **kw)


def test_vocab_mismatch_names_both_sizes(tiny_dir, big, prompt):
    other = bl.load_model(f"hf:{make_model(str(tiny_dir / 'v300'), layers=1, hidden=32, vocab=300)}")
    with pytest.raises(bl.VocabMismatchError, match=r"small: 300 tokens.*big: 256 tokens"):
        bl.generate(other, big, prompt, policy=bl.Speculative())


def test_tokenizer_mismatch_same_size(tiny_dir, text_pair):
    small, big = text_pair
    path = make_model(str(tiny_dir / "perm"), layers=1, hidden=32, tokenizer=True, permute_tokenizer=True)
    permuted = bl.load_model(f"hf:{path}")
    # token-level policies draft across tokenizers (tests/test_vocab_bridge.py); contrastive
    # decoding compares the two models' tokens directly, so it needs one tokenizer
    with pytest.raises(bl.VocabMismatchError, match="split text differently"):
        bl.generate(permuted, big, "hello", policy=bl.Contrastive())


@pytest.mark.parametrize("bad", ["", "   ", []])
def test_empty_prompt(text_pair, bad):
    small, big = text_pair
    with pytest.raises(bl.PromptError, match="empty"):
        bl.generate(small, big, bad)


def test_prompt_of_wrong_type_or_range(big):
    with pytest.raises(bl.PromptError, match="token ids"):
        bl.generate(None, big, [1, 2, 999], policy=bl.BigOnly())
    with pytest.raises(bl.PromptError):
        bl.generate(None, big, 42, policy=bl.BigOnly())


def test_text_prompt_without_tokenizer(big):
    with pytest.raises(bl.PromptError, match="no tokenizer"):
        bl.generate(None, big, "hello", policy=bl.BigOnly())


def test_over_long_prompt_names_the_numbers(big):
    with pytest.raises(bl.PromptError, match=r"500 tokens.*max_new_tokens \(64\).*context window of 512"):
        bl.generate(None, big, [1] * 500, policy=bl.BigOnly(), max_new_tokens=64)


def test_missing_models_for_policy(small, big, prompt):
    with pytest.raises(bl.ConfigError, match="needs a small model"):
        bl.generate(None, big, prompt, policy=bl.BiLD())
    with pytest.raises(bl.ConfigError, match="needs a big model"):
        bl.generate(small, None, prompt, policy=bl.Speculative())


@pytest.mark.parametrize("spec, word", [
    ("qwen", "accepted forms"),
    ("nope:thing", "accepted forms"),
    ("hf:", "accepted forms"),
    ("", "accepted forms"),
    ("hf:/no/such/folder", "no such model folder"),
])
def test_bad_model_specs(spec, word):
    with pytest.raises(bl.ModelSpecError, match=word):
        bl.load_model(spec)


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(bl.ModelSpecError, match="could not load"):
        bl.load_model(f"hf:{tmp_path}")


def test_stop_strings_need_a_tokenizer(big, prompt):
    with pytest.raises(bl.ConfigError, match="tokenizer"):
        bl.generate(None, big, prompt, policy=bl.BigOnly(), stop="x")


def test_parse_policy():
    assert bl.parse_policy("bild:fallback=0.5,rollback=inf") == bl.BiLD(fallback=0.5, rollback=math.inf)
    assert bl.parse_policy("speculative:draft=3,schedule=heuristic") == bl.Speculative(draft=3, schedule="heuristic")
    assert bl.parse_policy("bild:max_small_steps=none") == bl.BiLD(max_small_steps=None)
    assert bl.parse_policy("big") == bl.BigOnly()
    with pytest.raises(bl.ConfigError, match="unknown policy"):
        bl.parse_policy("fast")
    with pytest.raises(bl.ConfigError, match="takes"):
        bl.parse_policy("bild:draft=3")
