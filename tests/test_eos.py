"""End of text: each model ends it with its own EOS ids, and a remote model knows its own.

The two tiny models here have the same weights and different EOS ids, so which model wrote a
token decides whether the text ends there: a token the small model wrote ends it if it is one of
the small model's EOS ids, a token the big model wrote if it is one of the big model's.
"""
import pytest

import biglittle as bl
from biglittle.server import Engine, create_app
from live import LiveServer
from tiny import make_model, naive_greedy

PROMPT = [3, 1, 4, 1, 5, 9, 2, 6]
N = 48


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    """The model's greedy text without any EOS, and two of its tokens to serve as EOS ids: the
    small model's appears first (at index k), the big model's later (at index j > k)."""
    d = tmp_path_factory.mktemp("eos")
    plain = make_model(str(d / "plain"), seed=1, sharpen=50.0)
    ref = naive_greedy(plain, PROMPT, N)
    first = {t: ref.index(t) for t in ref}
    small_eos = next(t for t in ref[6:] if first[t] >= 6)
    k = first[small_eos]
    big_eos = next(t for t in ref[k + 4:] if first[t] > k + 3)
    small = make_model(str(d / "small"), seed=1, sharpen=50.0, eos_token_id=small_eos)
    big = make_model(str(d / "big"), seed=1, sharpen=50.0, eos_token_id=big_eos)
    return {"ref": ref, "k": k, "j": first[big_eos], "small": bl.load_model(f"hf:{small}"),
            "big": bl.load_model(f"hf:{big}"), "small_eos": small_eos, "big_eos": big_eos}


def test_the_models_differ_only_in_eos(plan):
    small, big = plan["small"], plan["big"]
    assert small.eos_token_ids == {plan["small_eos"]} and big.eos_token_ids == {plan["big_eos"]}
    assert naive_greedy(small.net, PROMPT, N) == naive_greedy(big.net, PROMPT, N) == plan["ref"]


def test_small_only_stops_at_the_small_models_eos(plan):
    r = bl.generate(plan["small"], plan["big"], PROMPT, policy=bl.SmallOnly(), max_new_tokens=N)
    assert r.token_ids == plan["ref"][:plan["k"] + 1]
    assert r.stats.finish_reason == "eos" and r.stats.big_calls == 0


def test_a_drafted_eos_ends_drafting_and_the_text(plan):
    k = plan["k"]
    r = bl.generate(plan["small"], plan["big"], PROMPT, policy=bl.Speculative(draft=k + 6), max_new_tokens=N)
    assert r.token_ids == plan["ref"][:k + 1] and r.origins == ["big"] + ["small"] * k
    # after the prompt read (the big model writes the first token) one round drafted up to the
    # EOS and no further; the big model added nothing after it
    assert r.stats.drafted == r.stats.accepted == k and r.stats.big_calls == 2
    assert r.stats.finish_reason == "eos"


def test_big_written_text_ends_at_the_big_models_eos_only(plan):
    j = plan["j"]
    for policy in (bl.BigOnly(), bl.BiLD(fallback=2.0)):  # fallback > 1: the big model writes every token
        r = bl.generate(plan["small"], plan["big"], PROMPT, policy=policy, max_new_tokens=N)
        # it writes the small model's EOS id on the way (at k < j) and goes on
        assert r.token_ids == plan["ref"][:j + 1] and set(r.origins) == {"big"}, policy
        assert r.stats.finish_reason == "eos"


# ---------------------------------------------------------------- a remote big model


def test_a_remote_model_gets_its_eos_from_our_server(plan):
    live = LiveServer(create_app(Engine(plan["small"], plan["big"], bl.BigOnly()), model_name="pair"))
    try:
        remote = bl.load_model(f"remote:{live.url}#pair")  # no tokenizer_from
        assert remote.eos_token_ids == {plan["big_eos"]}
        r = bl.generate(None, remote, PROMPT, policy=bl.BigOnly(), max_new_tokens=N)
        assert r.token_ids == plan["ref"][:plan["j"] + 1] and r.stats.finish_reason == "eos"
        explicit = bl.load_model(f"remote:{live.url}#pair", eos_token_ids=[7, 9])
        assert explicit.eos_token_ids == {7, 9}
    finally:
        live.stop()


@pytest.fixture(scope="module")
def silent_server():
    """A scoring server that does not say which tokens end a text (as an older biglittle did)."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/v1/models")
    def models():
        return {"data": [{"id": "m"}]}

    @app.post("/v1/score")
    def score():
        return {"vocab_size": 8, "rows": [{"top": [[1, -0.1]], "next_logprob": None}]}

    live = LiveServer(app)
    yield live
    live.stop()


def test_a_server_that_does_not_report_eos_is_refused_clearly(silent_server):
    with pytest.raises(bl.ModelSpecError, match=r"end-of-sequence.*tokenizer_from=.*eos_token_ids="):
        bl.load_model(f"remote:{silent_server.url}#m")
    assert bl.load_model(f"remote:{silent_server.url}#m", eos_token_ids=3).eos_token_ids == {3}
    with pytest.raises(bl.ModelSpecError, match="eos_token_ids must be token ids"):
        bl.load_model(f"remote:{silent_server.url}#m", eos_token_ids=["</s>"])
