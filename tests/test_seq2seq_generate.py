"""Encoder–decoder pairs through `generate` / `stream`: the prompt is the source, the loop and
every policy run unchanged, and the limit cases (docs/architecture.md) hold token for token (tiny seeded
fp32 T5 and Marian models)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import biglittle as bl
from biglittle.decoding.pair_memory import pair_memory
from biglittle.decoding.sampling import Sampler
from biglittle.decoding.schedules import AutoSchedule
from biglittle.errors import ConfigError, PromptError, VocabMismatchError
from test_sampling_distribution import chi2_pvalue
from test_seq2seq import encoder_calls
from tiny_seq2seq import make_seq2seq, make_seq2seq_draft_of, naive_logprobs

SOURCE = [5, 17, 3, 42, 8, 23, 11, 1]
N = 24


@pytest.fixture(scope="module", params=["t5", "marian"])
def pair(request, tmp_path_factory):
    """(small, big) of one architecture: the big model and a noisy copy of it."""
    arch = request.param
    d = tmp_path_factory.mktemp(f"s2sgen_{arch}")
    b = make_seq2seq(str(d / "big"), arch=arch, seed=1, sharpen=10.0 if arch == "t5" else 20.0)
    # noisy enough that, after the big model's first token, drafts of 2..5 are rejected somewhere
    s = make_seq2seq_draft_of(b, str(d / "small"), noise=0.03 if arch == "t5" else 0.2, seed=2)
    return bl.load_model(f"hf-seq2seq:{s}"), bl.load_model(f"hf:{b}")


def naive_greedy(model, source, n, start=None) -> list[int]:
    """Greedy decoder tokens, each from a full forward pass without any cache: the reference."""
    seq = list(model.decoder_start_ids if start is None else start)
    for _ in range(n):
        seq.append(int(naive_logprobs(model.net, source, seq)[-1].argmax()))
    return seq[len(seq) - n:]


@pytest.fixture(scope="module")
def reference(pair):
    return naive_greedy(pair[1], SOURCE, N)


def test_big_only_and_small_only_equal_naive_greedy(pair, reference):
    small, big = pair
    r = bl.generate(None, big, SOURCE, policy=bl.BigOnly(), max_new_tokens=N)
    assert r.token_ids == reference and r.origins == ["big"] * N
    assert r.prompt_ids == SOURCE and r.stats.prompt_tokens == len(SOURCE)  # the source, not the decoder start
    r = bl.generate(small, None, SOURCE, policy=bl.SmallOnly(), max_new_tokens=N)
    assert r.token_ids == naive_greedy(small, SOURCE, N)
    assert r.token_ids != reference  # the pair disagrees somewhere, so the cases below mean something


@pytest.fixture
def fresh_pair_memory(pair):
    """Nothing learned on the pair before the test, and nothing left after it."""
    memory = pair_memory(*pair)
    memory.clear()
    yield memory
    memory.clear()


def eager_auto(monkeypatch) -> None:
    """Auto schedules with an unlimited exploration budget: they probe whenever they would stop drafting."""
    real = AutoSchedule.__init__

    def init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        self.explore = math.inf

    monkeypatch.setattr(AutoSchedule, "__init__", init)


@pytest.mark.parametrize("draft", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("schedule", ["constant", "heuristic", "auto"])
def test_greedy_speculative_equals_big(pair, reference, draft, schedule, fresh_pair_memory, monkeypatch):
    small, big = pair
    if schedule == "auto":
        eager_auto(monkeypatch)
    r = bl.generate(small, big, SOURCE, policy=bl.Speculative(draft=draft, schedule=schedule), max_new_tokens=N)
    assert r.token_ids == reference
    assert r.stats.drafted > 0
    if draft > 1 and schedule == "constant":
        assert 0 < r.stats.accepted < r.stats.drafted and r.stats.rollbacks > 0


def test_auto_schedule_learns_for_the_pair_not_for_one_request(pair, fresh_pair_memory, monkeypatch):
    """The loop sees source-bound models, but what `auto` learns is kept for the models themselves:
    the pair's memory holds the acceptance counts and big-model timings of exactly the rounds run
    (the prior, 7 hits in 10 trials, plus what each request's statistics report), and a second
    request adds to them rather than starting again."""
    small, big = pair
    eager_auto(monkeypatch)  # so that it drafts within a short request
    policy = bl.Speculative(draft=3, schedule="auto")
    first = bl.generate(small, big, SOURCE, policy=policy, max_new_tokens=N).stats
    assert first.drafted > 0
    [learned] = fresh_pair_memory.values()  # one entry, under the unbound models
    # per drafting round: hits += accepted, trials += accepted + 1 if a draft was rejected
    assert (learned.hits, learned.trials) == (7 + first.accepted, 10 + first.accepted + first.rollbacks)
    assert learned.t_small is not None and learned.t_small > 0  # a draft step was timed
    assert learned.costs.calls and learned.big_calls_seen > 0  # and big-model blocks
    seen = learned.big_calls_seen
    second = bl.generate(small, big, [7, 9] + SOURCE, policy=policy, max_new_tokens=N).stats
    [again] = fresh_pair_memory.values()
    assert again is learned  # kept, not replaced
    assert again.hits == 7 + first.accepted + second.accepted
    assert again.trials == 10 + first.accepted + first.rollbacks + second.accepted + second.rollbacks
    assert again.big_calls_seen > seen
    assert first.rollbacks + second.rollbacks > 0  # both terms of the count were exercised


@pytest.mark.parametrize("drafter", ["lookup", "hybrid"])
def test_prompt_lookup_over_the_decoder_text_equals_big(pair, reference, drafter):
    small, big = pair
    r = bl.generate(small if drafter == "hybrid" else None, big, SOURCE,
                    policy=bl.Speculative(draft=4, drafter=drafter), max_new_tokens=N)
    assert r.token_ids == reference


def test_bild_always_fallback_equals_big(pair, reference):
    small, big = pair
    r = bl.generate(small, big, SOURCE, policy=bl.BiLD(fallback=1.5), max_new_tokens=N)
    assert r.token_ids == reference and r.origins == ["big"] * N
    assert r.stats.fallbacks == N - 1


def test_bild_always_rollback_equals_big(pair, reference):
    small, big = pair
    r = bl.generate(small, big, SOURCE, policy=bl.BiLD(fallback=0.0, rollback=0.0), max_new_tokens=N)
    assert r.token_ids == reference
    assert r.stats.rollbacks > 0


def test_bild_never_hands_over_is_big_first_token_then_small_greedy(pair):
    small, big = pair
    r = bl.generate(small, big, SOURCE, policy=bl.BiLD(fallback=0.0, rollback=math.inf, max_small_steps=None),
                    max_new_tokens=N)
    first = naive_greedy(big, SOURCE, 1)
    assert r.token_ids == first + naive_greedy(small, SOURCE, N - 1, start=small.decoder_start_ids + first)
    assert r.origins == ["big"] + ["small"] * (N - 1)
    assert r.stats.big_calls == 1


def test_bild_rollbacks_never_re_run_an_encoder(pair):
    small, big = pair
    with encoder_calls(small) as s_calls, encoder_calls(big) as b_calls:
        r = bl.generate(small, big, SOURCE, policy=bl.BiLD(fallback=0.35, rollback=1.0), max_new_tokens=N)
    assert r.stats.rollbacks > 0 and r.stats.fallbacks > 0 and "small" in r.origins
    assert (s_calls[0], b_calls[0]) == (1, 1)  # one encoder pass per model for the whole generation


def test_contrastive_with_alpha_one_equals_big(pair, reference):
    small, big = pair
    r = bl.generate(small, big, SOURCE, policy=bl.Contrastive(alpha=1.0), max_new_tokens=N)
    assert r.token_ids == reference
    assert r.stats.small_calls == N
    default = bl.generate(small, big, SOURCE, policy=bl.Contrastive(), max_new_tokens=N)
    assert len(default.token_ids) == N
    # every token is in the plausible set {x : p_big(x) ≥ 0.1 · max p_big} at its step, and the
    # best contrastive score there, from the two models' own uncached passes
    start = big.decoder_start_ids
    big_logp = naive_logprobs(big.net, SOURCE, start + default.token_ids)[len(start) - 1:-1]
    small_logp = naive_logprobs(small.net, SOURCE, start + default.token_ids)[len(start) - 1:-1]
    changed = 0
    for i, token in enumerate(default.token_ids):
        plausible = big_logp[i] >= big_logp[i].max() + math.log(0.1)
        assert plausible[token], i
        score = (big_logp[i] - small_logp[i]).masked_fill(~plausible, -math.inf)
        assert float(score[token]) >= float(score.max()) - 1e-4, i  # 1e-4 nat: cached vs uncached fp32
        changed += token != int(big_logp[i].argmax())
    assert default.stats.extra["changed_from_big_greedy"] == changed


@pytest.mark.parametrize("threshold,answered_by", [(math.inf, "big"), (-math.inf, "small")])
def test_cascade_limits(pair, reference, threshold, answered_by):
    small, big = pair
    r = bl.generate(small, big, SOURCE, policy=bl.Cascade(scorer="big-score", threshold=threshold),
                    max_new_tokens=N)
    assert r.stats.extra["answered_by"] == answered_by
    assert r.token_ids == (reference if answered_by == "big" else naive_greedy(small, SOURCE, N))


def test_cascade_scoring_pass_sees_the_source(pair):
    """The big model scores the small answer on the decoder side, conditioned on the source."""
    small, big = pair
    r = bl.generate(small, big, SOURCE, policy=bl.Cascade(scorer="big-score", threshold=0.0), max_new_tokens=N)
    answer = naive_greedy(small, SOURCE, N)
    logp = naive_logprobs(big.net, SOURCE, big.decoder_start_ids + answer)[:-1]
    expected = float(logp.gather(1, torch.tensor(answer)[:, None]).mean())
    assert r.stats.extra["score"] == pytest.approx(expected, abs=1e-4)


def test_stream_chunks_add_up_to_the_result(pair):
    small, big = pair
    chunks = list(bl.stream(small, big, SOURCE, policy=bl.BiLD(), max_new_tokens=N))
    whole = bl.generate(small, big, SOURCE, policy=bl.BiLD(), max_new_tokens=N)
    assert [t for c in chunks for t in c.token_ids] == chunks[-1].final.token_ids == whole.token_ids
    assert len(chunks) > 2  # committed round by round, not in one piece


# ---------------------------------------------------------------- sampling

VOCAB = 6
RUNS = 600  # the pair is far apart (total variation ≈ 0.9); a 2-token generation costs ~25 ms of CPU
SMALL_SOURCE = [3, 1, 4, 1, 5, 2]


@pytest.fixture(scope="module")
def vocab_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("s2s_vocab")
    b = make_seq2seq(str(d / "big"), vocab=VOCAB, hidden=32, seed=21, sharpen=2.0)
    s = make_seq2seq(str(d / "small"), vocab=VOCAB, hidden=32, layers=1, seed=22, sharpen=2.0)
    return bl.load_model(f"hf:{s}"), bl.load_model(f"hf:{b}")


def joint(model, sampler: Sampler) -> np.ndarray:
    """Exact P(t1, t2 | source) under the model's processed distribution, by enumeration."""
    out = np.zeros((VOCAB, VOCAB))
    s = model.session(source_ids=SMALL_SOURCE)
    start = model.decoder_start_ids
    p1 = sampler.probs(s.extend(start)[-1])
    for a in range(VOCAB):
        s.truncate(len(start))
        out[a] = (p1[a] * sampler.probs(s.extend([a])[-1])).numpy()
    return out / out.sum()


def test_speculative_sampling_matches_big_distribution(vocab_pair):
    small, big = vocab_pair
    sampler = Sampler(temperature=1.0, seed=0)
    p_big, p_small = joint(big, sampler), joint(small, sampler)
    assert 0.5 * np.abs(p_big - p_small).sum() > 0.15, "the pair is too alike for this test to mean anything"
    counts = np.zeros((VOCAB, VOCAB))
    for seed in range(RUNS):
        r = bl.generate(small, big, SMALL_SOURCE, policy=bl.Speculative(draft=2), max_new_tokens=2,
                        temperature=1.0, seed=seed)
        counts[r.token_ids[0], r.token_ids[1]] += 1
    assert chi2_pvalue(counts, p_big) > 1e-3     # consistent with the big model
    assert chi2_pvalue(counts, p_small) < 1e-6   # and the test can tell the small one apart
    assert 0.5 * np.abs(counts / RUNS - p_big).sum() < 0.08


# ---------------------------------------------------------------- text sources and errors

@pytest.fixture(scope="module")
def text_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("s2s_text")
    b = make_seq2seq(str(d / "big"), seed=3, sharpen=10.0, tokenizer=True, eos_token_id=1)
    s = make_seq2seq_draft_of(b, str(d / "small"), noise=0.03, seed=4, tokenizer=True)
    return bl.load_model(f"hf:{s}"), bl.load_model(f"hf:{b}")


def test_a_text_source_is_encoded_once_and_the_answer_decoded(text_pair):
    small, big = text_pair
    source = big.encode_source("Hallo Welt, wie geht es?")
    with encoder_calls(small) as s_calls, encoder_calls(big) as b_calls:
        r = bl.generate(small, big, "Hallo Welt, wie geht es?", policy=bl.BiLD(), max_new_tokens=16)
    assert (s_calls[0], b_calls[0]) == (1, 1)
    assert r.prompt_ids == source and r.stats.prompt_tokens == len(source)
    assert r.text == big.tokenizer.decode(r.token_ids)
    ref = bl.generate(None, big, source, policy=bl.BigOnly(), max_new_tokens=16)
    exact = bl.generate(small, big, "Hallo Welt, wie geht es?", policy=bl.Speculative(draft=3), max_new_tokens=16)
    assert exact.token_ids == ref.token_ids and exact.text == ref.text
    chunks = list(bl.stream(small, big, "Hallo Welt, wie geht es?", policy=bl.Speculative(draft=3),
                            max_new_tokens=16))
    assert "".join(c.text for c in chunks) == ref.text


def test_chat_is_refused(text_pair):
    small, big = text_pair
    with pytest.raises(ConfigError, match="chat does not apply"):
        bl.generate(small, big, "Hallo", chat=True)
    with pytest.raises(ConfigError, match="chat does not apply"):
        bl.generate(small, big, [{"role": "user", "content": "Hallo"}], chat=True)


def test_a_mixed_pair_is_refused(pair, big):
    small_s2s, big_s2s = pair
    with pytest.raises(ConfigError, match="decoder-only.*encoder–decoder"):
        bl.generate(big, big_s2s, SOURCE, policy=bl.BiLD())
    with pytest.raises(ConfigError, match="encoder–decoder.*decoder-only"):
        bl.generate(small_s2s, big, SOURCE, policy=bl.Speculative())


def test_different_decoder_vocabularies_are_refused(pair, tmp_path):
    _, big = pair
    other = bl.load_model(f"hf-seq2seq:{make_seq2seq(str(tmp_path / 'm'), vocab=80)}")
    with pytest.raises(VocabMismatchError, match="different vocabularies"):
        bl.generate(other, big, SOURCE, policy=bl.BiLD())


def test_bad_sources_are_clear(pair):
    small, big = pair
    with pytest.raises(PromptError, match="empty"):
        bl.generate(small, big, [], policy=bl.BiLD())
    with pytest.raises(PromptError, match="token ids must be in"):
        bl.generate(small, big, [5, 999], policy=bl.BiLD())
    with pytest.raises(PromptError, match="no tokenizer"):
        bl.generate(small, big, "Hallo", policy=bl.BiLD())
    if big.context_length:  # Marian: 256 learned positions for the source and for the decoder
        with pytest.raises(PromptError, match="encoder takes at most 256"):
            bl.generate(small, big, [5] * 300, policy=bl.BiLD())
        with pytest.raises(PromptError, match="context window of 256"):
            bl.generate(small, big, SOURCE, policy=bl.BiLD(), max_new_tokens=300)
