"""Log-probs of the committed tokens (issue 15, OpenAI fidelity): each token carries its raw
log-prob and top-k under the model whose decision kept it, checked against that model's own
scoring of prompt + output in one plain forward pass (no cache); then the server's OpenAI shapes
(chat logprobs/top_logprobs, completions logprobs) against the Python API, streamed and not."""
import math

import httpx
import pytest
import torch
from openai import OpenAI

import biglittle as bl
from biglittle.policies.router import FEATURES, Classifier
from biglittle.server import Engine, Limits, create_app
from live import LiveServer
from tiny import make_other_tokenizer_draft

N = 16
TOP = 4
MODEL = "tiny-pair"


def scoring(model, prompt_ids, out_ids) -> torch.Tensor:
    """Row i: the model's raw log-probs of the token at out position i, from one forward pass
    over prompt + output through the bare network (no session, no cache)."""
    ids = torch.tensor([list(prompt_ids) + list(out_ids)])
    with torch.no_grad():
        logits = model.net(input_ids=ids).logits[0].float()
    rows = torch.log_softmax(logits, dim=-1)
    return rows[len(prompt_ids) - 1: len(prompt_ids) - 1 + len(out_ids)]


def check_against(model, prompt_ids, r, which, top=TOP, idx=None):
    """Every token in `idx` (default all) matches `model`'s scoring: value, and the top-k ids and values."""
    rows = scoring(model, prompt_ids, r.token_ids)
    idx = range(len(r.token_ids)) if idx is None else idx
    assert len(idx) > 0
    for i in idx:
        lp, tok = r.logprobs[i], r.token_ids[i]
        assert lp.model == which, (i, lp.model)
        assert lp.logprob == pytest.approx(float(rows[i, tok]), abs=1e-4), i
        values, ids = torch.topk(rows[i], top)
        assert [t for t, _ in lp.top] == ids.tolist(), i
        assert [v for _, v in lp.top] == pytest.approx(values.tolist(), abs=1e-4)


def test_big_only_greedy_logprobs_are_the_big_models(small, big, prompt):
    r = bl.generate(None, big, prompt, policy=bl.BigOnly(), max_new_tokens=N, logprobs=TOP)
    assert len(r.logprobs) == len(r.token_ids) == N
    check_against(big, prompt, r, "big")
    # greedy: the token is the row's argmax, so it is the first alternative
    assert all(lp.top[0][0] == t for lp, t in zip(r.logprobs, r.token_ids))


@pytest.mark.parametrize("policy", [bl.Speculative(draft=3), bl.Speculative(draft=4, schedule="heuristic"),
                                    bl.BiLD(rollback=1.0)], ids=lambda p: p.describe())
def test_verified_tokens_carry_the_big_models_logprobs(small, big, prompt, policy):
    r = bl.generate(small, big, prompt, policy=policy, max_new_tokens=N, logprobs=TOP)
    if policy.name == "speculative":  # lossless: the same tokens as big-only greedy
        assert r.token_ids == bl.generate(None, big, prompt, policy=bl.BigOnly(), max_new_tokens=N).token_ids
        assert r.stats.small_tokens > 0  # kept drafts were among them
    check_against(big, prompt, r, "big")


def test_sampled_speculative_reports_the_raw_big_row_not_the_tempered_one(small, big, prompt):
    r = bl.generate(small, big, prompt, policy=bl.Speculative(draft=3), max_new_tokens=N, temperature=1.5,
                    top_k=20, seed=3, logprobs=TOP)
    check_against(big, prompt, r, "big")


def test_small_only_logprobs_are_the_small_models(small, big, prompt):
    r = bl.generate(small, None, prompt, policy=bl.SmallOnly(), max_new_tokens=N, logprobs=TOP)
    check_against(small, prompt, r, "small")


def test_bild_never_checking_small_tokens_reports_the_small_models(small, big, prompt):
    """τ_fb = 0, τ_rb = ∞, N = ∞: the big model's first token, then the small model alone, unverified."""
    pol = bl.BiLD(fallback=0.0, rollback=math.inf, max_small_steps=None)
    r = bl.generate(small, big, prompt, policy=pol, max_new_tokens=N, logprobs=TOP)
    assert [lp.model for lp in r.logprobs] == ["big"] + ["small"] * (N - 1)
    check_against(big, prompt, r, "big", idx=[0])
    check_against(small, prompt, r, "small", idx=range(1, N))


def test_bild_with_fallbacks_mixes_both_models_and_each_value_is_that_models(small, big, prompt):
    """Fallbacks hand over to the big model; rounds the big model verifies carry its log-probs;
    the last round (which fills the budget, with no rollback possible) is committed unchecked."""
    pol = bl.BiLD(fallback=0.5, rollback=math.inf, max_small_steps=3)
    for n in range(N, N + 8):  # a budget whose last round the small model fills (not a fallback)
        r = bl.generate(small, big, prompt, policy=pol, max_new_tokens=n, logprobs=TOP)
        models = [lp.model for lp in r.logprobs]
        if "small" in models:
            break
    assert "big" in models and "small" in models
    assert r.stats.fallbacks > 0
    check_against(big, prompt, r, "big", idx=[i for i, m in enumerate(models) if m == "big"])
    check_against(small, prompt, r, "small", idx=[i for i, m in enumerate(models) if m == "small"])
    # a big-model token (correction, fallback, bonus) always carries the big model's log-prob
    assert all(m == "big" for m, o in zip(models, r.origins) if o == "big")


def test_contrastive_reports_the_big_models_logprob_of_the_chosen_token(small, big, prompt):
    r = bl.generate(small, big, prompt, policy=bl.Contrastive(alpha=0.05), max_new_tokens=N, logprobs=TOP)
    check_against(big, prompt, r, "big")


@pytest.mark.parametrize("threshold, who", [(-math.inf, "small"), (math.inf, "big")])
def test_cascade_reports_the_model_that_answered(small, big, prompt, threshold, who):
    r = bl.generate(small, big, prompt, policy=bl.Cascade(threshold=threshold), max_new_tokens=N, logprobs=TOP)
    assert r.stats.extra["answered_by"] == who
    check_against(small if who == "small" else big, prompt, r, who)


@pytest.mark.parametrize("bias, who", [(-20.0, "small"), (20.0, "big")])
def test_router_reports_the_model_it_chose(small, big, prompt, bias, who):
    zeros = (0.0,) * len(FEATURES)
    router = bl.Router(classifier=Classifier(FEATURES, zeros, (1.0,) * len(FEATURES), zeros, bias))
    r = bl.generate(small, big, prompt, policy=router, max_new_tokens=N, logprobs=TOP)
    assert r.stats.extra["answered_by"] == who
    check_against(small if who == "small" else big, prompt, r, who)


def test_no_logprobs_asked_adds_nothing_and_zero_gives_the_tokens_own(small, big, prompt):
    pol = bl.BiLD(fallback=0.5, rollback=2.0)
    plain = bl.generate(small, big, prompt, policy=pol, max_new_tokens=N)
    assert plain.logprobs is None and "logprobs" not in plain.to_dict()
    assert all(c.logprobs is None for c in bl.stream(small, big, prompt, policy=pol, max_new_tokens=N))
    zero = bl.generate(small, big, prompt, policy=pol, max_new_tokens=N, logprobs=0)
    assert zero.token_ids == plain.token_ids  # asking changes nothing about the tokens
    assert all(lp.top == [] and lp.logprob <= 0 for lp in zero.logprobs)
    ref = bl.generate(small, big, prompt, policy=pol, max_new_tokens=N, logprobs=TOP)
    assert [lp.logprob for lp in zero.logprobs] == [lp.logprob for lp in ref.logprobs]
    assert zero.to_dict()["logprobs"][0]["logprob"] == zero.logprobs[0].logprob


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_bad_logprobs_values_are_refused_clearly(small, big, prompt, bad):
    with pytest.raises(bl.ConfigError, match="logprobs"):
        bl.generate(small, big, prompt, max_new_tokens=4, logprobs=bad)


def test_a_policy_without_logprobs_support_is_refused_by_name(small, big, prompt):
    class Old(bl.Speculative):
        name = "old"

        def run(self, small, big, prompt_ids, sampler, max_new_tokens, stats, bridge=None):
            return super().run(small, big, prompt_ids, sampler, max_new_tokens, stats, bridge)

    with pytest.raises(bl.ConfigError, match="'old'"):
        bl.generate(small, big, prompt, policy=Old(), max_new_tokens=4, logprobs=1)
    assert len(bl.generate(small, big, prompt, policy=Old(), max_new_tokens=4).token_ids) == 4


def test_stream_chunks_concatenate_to_the_results_logprobs(small, big, prompt):
    pol = bl.BiLD(fallback=0.5, rollback=2.0)
    chunks = list(bl.stream(small, big, prompt, policy=pol, max_new_tokens=N, logprobs=TOP))
    joined = sum((c.logprobs for c in chunks), [])
    assert all(len(c.logprobs) == len(c.token_ids) for c in chunks)
    assert joined == chunks[-1].final.logprobs and len(joined) == N


def test_a_stop_string_keeps_logprobs_aligned_with_the_kept_tokens(text_pair):
    small, big = text_pair
    pol = bl.BiLD(fallback=0.5, rollback=2.0)
    full = bl.generate(small, big, "Hello", policy=pol, max_new_tokens=24, logprobs=2)
    text = full.text
    at = next(i for i in [*range(len(text) // 2, len(text) - 2), *range(1, len(text) // 2)]
              if "\ufffd" not in text[i:i + 2])  # whole characters only
    stop = text[at:at + 2]
    cut = bl.generate(small, big, "Hello", policy=pol, max_new_tokens=24, logprobs=2, stop=stop)
    assert cut.stats.finish_reason == "stop" and len(cut.token_ids) < len(full.token_ids)
    assert len(cut.logprobs) == len(cut.token_ids) == len(cut.origins)
    assert cut.logprobs == full.logprobs[:len(cut.token_ids)]
    chunks = list(bl.stream(small, big, "Hello", policy=pol, max_new_tokens=24, logprobs=2, stop=stop))
    assert sum((c.logprobs for c in chunks), []) == cut.logprobs


def test_unchecked_tokens_of_a_small_model_with_another_tokenizer_have_no_logprob(tiny_dir, text_pair):
    _, big = text_pair
    other = bl.load_model(f"hf:{make_other_tokenizer_draft(big.spec.partition(':')[2], str(tiny_dir / 'lp_xv'))}")
    prompt = "def add(a, b):\n    return a + b\n\ndef add(a, b):\n"
    never = bl.generate(other, big, prompt, policy=bl.BiLD(fallback=0.0, rollback=math.inf, max_small_steps=None),
                        max_new_tokens=12, logprobs=2)
    unchecked = [i for i, lp in enumerate(never.logprobs) if lp.model == "small"]
    assert unchecked and 0 not in unchecked  # the first token is the big model's
    assert all(never.logprobs[i].logprob is None and never.logprobs[i].top == [] for i in unchecked)
    # any round the big model did check (a draft that fell short of the budget) carries its values
    check_against(big, big.tokenizer.encode(prompt), never, "big", top=2,
                  idx=[i for i in range(len(never.token_ids)) if i not in unchecked])
    checked = bl.generate(other, big, prompt, policy=bl.Speculative(draft=4), max_new_tokens=12, logprobs=2)
    assert checked.stats.small_tokens > 0
    check_against(big, big.tokenizer.encode(prompt), checked, "big", top=2)


# ---------------------------------------------------------------- the server

@pytest.fixture(scope="module")
def server(text_pair):
    small, big = text_pair
    live = LiveServer(create_app(Engine(small, big, bl.BiLD(fallback=0.5, rollback=2.0), max_queue=16),
                                 model_name=MODEL, limits=Limits(max_logprobs=5)))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def reference(text_pair, prompt, chat, top, max_new_tokens=12):
    small, big = text_pair
    r = bl.generate(small, big, prompt, policy=bl.BiLD(fallback=0.5, rollback=2.0), max_new_tokens=max_new_tokens,
                    chat=chat, logprobs=top)
    strings = [big.tokenizer.decode([t], skip_special=False) for t in r.token_ids]
    return r, strings


def test_chat_logprobs_match_the_python_api(client, text_pair):
    msgs = [{"role": "user", "content": "Say hi"}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12, logprobs=True, top_logprobs=3)
    ref, strings = reference(text_pair, msgs, True, 3)
    content = r.choices[0].logprobs.content
    assert [c.token for c in content] == strings
    assert [c.logprob for c in content] == pytest.approx([lp.logprob for lp in ref.logprobs], abs=1e-6)
    # the tiny tokenizer has one token per byte, id = byte: "bytes" is the raw byte, even where
    # the token alone is not a whole character
    assert [c.bytes for c in content] == [[t] for t in ref.token_ids]
    tok = text_pair[1].tokenizer
    for c, lp in zip(content, ref.logprobs):
        assert [a.token for a in c.top_logprobs] == [tok.decode([i], skip_special=False) for i, _ in lp.top]
        assert [a.logprob for a in c.top_logprobs] == pytest.approx([v for _, v in lp.top], abs=1e-6)
        assert len(c.top_logprobs) == 3
    streamed = list(client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12, logprobs=True,
                                                   top_logprobs=3, stream=True))
    joined = sum((c.choices[0].logprobs.content for c in streamed if c.choices and c.choices[0].logprobs), [])
    assert [c.model_dump() for c in joined] == [c.model_dump() for c in content]
    plain = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=4)
    assert plain.choices[0].logprobs is None


def test_completion_logprobs_match_the_python_api(client, text_pair):
    r = client.completions.create(model=MODEL, prompt="Hello", max_tokens=12, logprobs=2)
    ref, strings = reference(text_pair, "Hello", False, 2)
    lp = r.choices[0].logprobs
    assert lp.tokens == strings
    assert lp.token_logprobs == pytest.approx([x.logprob for x in ref.logprobs], abs=1e-6)
    tok = text_pair[1].tokenizer
    # a dict per token, as OpenAI's: alternatives whose strings coincide (bytes of a character cut in
    # two all read U+FFFD alone) share one key, the later one's value winning, as in a dict display
    want = [{tok.decode([i], skip_special=False): v for i, v in x.top} for x in ref.logprobs]
    assert [list(d) for d in lp.top_logprobs] == [list(d) for d in want]
    assert [list(d.values()) for d in lp.top_logprobs] == [pytest.approx(list(d.values()), abs=1e-6) for d in want]
    assert lp.text_offset == [sum(len(s) for s in strings[:i]) for i in range(len(strings))]
    streamed = list(client.completions.create(model=MODEL, prompt="Hello", max_tokens=12, logprobs=2, stream=True))
    parts = [c.choices[0].logprobs for c in streamed if c.choices[0].logprobs]
    assert sum((p.tokens for p in parts), []) == lp.tokens
    assert sum((p.token_logprobs for p in parts), []) == lp.token_logprobs
    assert sum((p.top_logprobs for p in parts), []) == lp.top_logprobs
    assert sum((p.text_offset for p in parts), []) == lp.text_offset
    assert client.completions.create(model=MODEL, prompt="Hello", max_tokens=4).choices[0].logprobs is None


@pytest.mark.parametrize("path, extra, param", [
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 6}, "top_logprobs"),
    ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
    ("/v1/chat/completions", {"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
    ("/v1/completions", {"logprobs": 6}, "logprobs"),
    ("/v1/completions", {"logprobs": -1}, "logprobs"),
    ("/v1/completions", {"logprobs": 1, "top_logprobs": 2}, "top_logprobs"),
])
def test_logprob_requests_out_of_range_are_400_naming_the_param(server, path, extra, param):
    body = {"model": MODEL, "max_tokens": 2, **extra}
    body.update({"messages": [{"role": "user", "content": "hi"}]} if "chat" in path else {"prompt": "hi"})
    r = httpx.post(server.url + path, json=body, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    ok = {k: v for k, v in body.items() if k not in extra}  # the same request, within the limits
    ok.update({"top_logprobs": 5, "logprobs": True} if "chat" in path else {"logprobs": 5})
    r = httpx.post(server.url + path, json=ok, timeout=60)
    assert r.status_code == 200, r.text
    got = r.json()["choices"][0]["logprobs"]
    if "chat" in path:
        assert len(got["content"]) == 2 and all(len(e["top_logprobs"]) == 5 for e in got["content"])
    else:  # alternatives whose strings coincide share a key of the dict
        assert len(got["tokens"]) == len(got["top_logprobs"]) == 2
        assert all(1 <= len(t) <= 5 for t in got["top_logprobs"])
