"""Small models with another tokenizer draft through text (universal assisted generation):
greedy output equals the big model's token for token; sampling is refused clearly."""
import pytest

import biglittle as bl
from tiny import make_draft_of, make_other_tokenizer_draft

PROMPTS = ["def add(a, b):\n    return a + b\n\ndef add(a, b):\n", "hello hello hello", "x"]
N = 24


@pytest.fixture(scope="module")
def pairs(tiny_dir, text_pair):
    """(big, same-text drafter, noisy drafter, drafter with a bigger vocabulary), the drafters in
    permuted token ids."""
    _, big = text_pair
    big_path = big.spec.partition(":")[2]
    same = make_other_tokenizer_draft(big_path, str(tiny_dir / "xv_same"))
    noisy_src = make_draft_of(big_path, str(tiny_dir / "xv_noisy_src"), keep_layers=2, noise=0.3, seed=5)
    noisy = make_other_tokenizer_draft(noisy_src, str(tiny_dir / "xv_noisy"))
    wider = make_other_tokenizer_draft(big_path, str(tiny_dir / "xv_wider"), extra_vocab=44)
    return big, *(bl.load_model(f"hf:{p}") for p in (same, noisy, wider))


def test_the_drafters_really_speak_another_tokenizer(pairs):
    big, same, _, wider = pairs
    assert same.tokenizer.encode("ab") != big.tokenizer.encode("ab")
    assert wider.vocab_size == big.vocab_size + 44
    assert same.tokenizer.decode(same.tokenizer.encode("añb")) == "añb"


@pytest.mark.parametrize("prompt", PROMPTS, ids=["code", "repeat", "one-char"])
@pytest.mark.parametrize("policy", [bl.Speculative(draft=1), bl.Speculative(draft=4, schedule="heuristic"),
                                    bl.Speculative(draft=4, drafter="hybrid"), bl.BiLD(fallback=1.5),
                                    bl.BiLD(rollback=0.0)],
                         ids=lambda p: p.describe())
def test_greedy_across_vocabularies_equals_big_greedy(pairs, prompt, policy):
    big, same, noisy, wider = pairs
    ref = bl.generate(None, big, prompt, policy=bl.BigOnly(), max_new_tokens=N)
    for small in (same, noisy, wider):
        r = bl.generate(small, big, prompt, policy=policy, max_new_tokens=N)
        assert r.token_ids == ref.token_ids, small.spec
        assert r.text == ref.text


def test_drafts_through_text_are_accepted_and_rejected(pairs):
    """The tiny models write random bytes, often invalid UTF-8, which no text round trip keeps;
    where the bytes are valid text the same-text drafter's drafts come through and are kept."""
    big, same, noisy, _ = pairs
    good = bl.generate(same, big, PROMPTS[0], policy=bl.Speculative(draft=4), max_new_tokens=N)
    bad = bl.generate(noisy, big, PROMPTS[0], policy=bl.Speculative(draft=4), max_new_tokens=N)
    assert good.stats.drafted > 0 and good.stats.small_tokens > 0
    assert bad.stats.rollbacks > 0      # the noisy drafter is sometimes wrong: rejections ran


def test_bild_defaults_run_across_vocabularies(pairs):
    big, _, noisy, _ = pairs
    r = bl.generate(noisy, big, PROMPTS[0], policy=bl.BiLD(), max_new_tokens=N)
    assert r.stats.new_tokens == N and r.stats.small_tokens + r.stats.big_tokens == N


def test_sampling_across_vocabularies_is_refused(pairs):
    big, same, _, _ = pairs
    with pytest.raises(bl.ConfigError, match="temperature=0"):
        bl.generate(same, big, "hi", policy=bl.Speculative(), temperature=1.0)


def test_policies_with_their_own_loop_still_need_one_tokenizer(pairs):
    big, same, _, _ = pairs
    for policy in (bl.Contrastive(), bl.Cascade()):
        with pytest.raises(bl.VocabMismatchError, match="tokenizer"):
            bl.generate(same, big, "hi", policy=policy)


def test_token_id_prompts_cannot_cross_vocabularies(pairs):
    big, same, _, _ = pairs
    with pytest.raises(bl.VocabMismatchError, match="text prompt"):
        bl.generate(same, big, [1, 2, 3], policy=bl.Speculative())


def test_a_big_token_whose_id_is_the_small_models_eos_does_not_end_the_text(pairs):
    """Bridged drafts are big-model token ids: a kept draft whose id happens to be one of the small
    model's EOS ids (SmolLM2's <|im_end|> is 2, Qwen's '#') must not end the text (found on the
    real pair: the answer stopped after a '#')."""
    big, same, _, _ = pairs
    ref = bl.generate(None, big, PROMPTS[0], policy=bl.BigOnly(), max_new_tokens=N)
    collide = ref.token_ids[N // 2]  # a token the big model writes mid-text
    assert collide not in big.eos_token_ids
    own = same.eos_token_ids
    try:
        same.eos_token_ids = frozenset(own | {collide})
        r = bl.generate(same, big, PROMPTS[0], policy=bl.Speculative(draft=4), max_new_tokens=N)
    finally:
        same.eos_token_ids = own
    assert r.token_ids == ref.token_ids
    assert r.stats.finish_reason == ref.stats.finish_reason
