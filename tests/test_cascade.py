"""Cascades: the limit thresholds are the baselines token for token; the decision, the scores and
the stats are exact."""
import json
import math

import pytest
import torch

import biglittle as bl
from biglittle.errors import RemoteError
from tiny import _net

N = 24
SCORERS = ["small-confidence", "big-score"]


@pytest.fixture(scope="module")
def small_only(small, prompt):
    return bl.generate(small, None, prompt, policy=bl.SmallOnly(), max_new_tokens=N)


@pytest.fixture(scope="module")
def big_only(big, prompt):
    return bl.generate(None, big, prompt, policy=bl.BigOnly(), max_new_tokens=N)


@pytest.mark.parametrize("scorer", SCORERS)
def test_minus_inf_always_keeps_the_small_answer(small, big, prompt, small_only, scorer):
    r = bl.generate(small, big, prompt, policy=bl.Cascade(scorer=scorer, threshold=-math.inf), max_new_tokens=N)
    assert r.token_ids == small_only.token_ids
    assert r.origins == ["small"] * N
    assert r.stats.extra["answered_by"] == "small"
    assert r.stats.extra["threshold"] == "-inf" and r.stats.extra["scorer"] == scorer
    assert r.stats.big_calls == 0  # at −inf no score can change the answer, so the big model never runs
    assert r.stats.small_calls == small_only.stats.small_calls


@pytest.mark.parametrize("scorer", SCORERS)
def test_plus_inf_always_escalates(small, big, prompt, big_only, scorer):
    r = bl.generate(small, big, prompt, policy=bl.Cascade(scorer=scorer, threshold=math.inf), max_new_tokens=N)
    assert r.token_ids == big_only.token_ids
    assert r.origins == ["big"] * N
    assert r.stats.extra["answered_by"] == "big" and r.stats.extra["score"] is None
    assert r.stats.small_calls == 0 and r.stats.big_calls == big_only.stats.big_calls


@pytest.mark.parametrize("temperature", [0.8])
def test_limits_hold_when_sampling_too(small, big, prompt, temperature):
    """Same seed, same draws: the cascade picks tokens exactly as the baselines do."""
    kw = dict(max_new_tokens=N, temperature=temperature, seed=3)
    s = bl.generate(small, None, prompt, policy=bl.SmallOnly(), **kw)
    b = bl.generate(None, big, prompt, policy=bl.BigOnly(), **kw)
    assert bl.generate(small, big, prompt, policy=bl.Cascade(threshold=-math.inf), **kw).token_ids == s.token_ids
    assert bl.generate(small, big, prompt, policy=bl.Cascade(threshold=math.inf), **kw).token_ids == b.token_ids


@torch.no_grad()
def direct_logps(path, prompt, answer):
    """Log-prob of each answer token after the prompt, from one uncached pass of the raw model."""
    logits = _net(path)(input_ids=torch.tensor([prompt + answer]), use_cache=False).logits[0].float()
    logp = torch.log_softmax(logits, -1)[len(prompt) - 1:-1]
    return logp.gather(1, torch.tensor(answer)[:, None])[:, 0]


@pytest.mark.parametrize("scorer", SCORERS)
@pytest.mark.parametrize("reduce", ["mean", "min"])
def test_score_is_the_mean_or_min_token_logprob(small, big, small_path, big_path, prompt, small_only, scorer,
                                               reduce):
    r = bl.generate(small, big, prompt, policy=bl.Cascade(scorer=scorer, threshold=-1e9, reduce=reduce),
                    max_new_tokens=N)
    lp = direct_logps(small_path if scorer == "small-confidence" else big_path, prompt, small_only.token_ids)
    want = float(lp.mean() if reduce == "mean" else lp.min())
    assert r.stats.extra["score"] == pytest.approx(want, abs=1e-4)
    assert r.stats.extra["reduce"] == reduce


@pytest.mark.parametrize("scorer", SCORERS)
def test_threshold_just_above_or_below_the_score_decides(small, big, prompt, small_only, big_only, scorer):
    probe = bl.generate(small, big, prompt, policy=bl.Cascade(scorer=scorer, threshold=-1e9), max_new_tokens=N)
    score = probe.stats.extra["score"]
    kept = bl.generate(small, big, prompt, policy=bl.Cascade(scorer=scorer, threshold=score - 1e-6), max_new_tokens=N)
    assert kept.token_ids == small_only.token_ids and kept.stats.extra["answered_by"] == "small"
    assert kept.stats.accepted == kept.stats.drafted == N
    up = bl.generate(small, big, prompt, policy=bl.Cascade(scorer=scorer, threshold=score + 1e-6), max_new_tokens=N)
    assert up.token_ids == big_only.token_ids and up.origins == ["big"] * N
    e = up.stats.extra
    assert e["answered_by"] == "big" and e["score"] == score and e["small_answer_tokens"] == N
    assert "<" in e["reason"]
    # stats add up: the discarded small answer still counts, and big-score's scoring pass is one big call
    assert up.stats.small_calls == small_only.stats.small_calls
    scoring = 1 if scorer == "big-score" else 0
    assert up.stats.big_calls == big_only.stats.big_calls + scoring
    assert up.stats.rollbacks == 1 and up.stats.accepted == 0 and up.stats.drafted == N


def test_stream_never_shows_a_discarded_answer(small, big, prompt, small_only):
    chunks = list(bl.stream(small, big, prompt, policy=bl.Cascade(threshold=0.0), max_new_tokens=N))
    assert chunks[-1].final.stats.extra["answered_by"] == "big"
    assert all(o == "big" for c in chunks for o in c.origins)
    kept = list(bl.stream(small, big, prompt, policy=bl.Cascade(threshold=-math.inf), max_new_tokens=N))
    assert kept[0].token_ids == small_only.token_ids  # released in one piece once the decision is made


def test_stats_are_strict_json(small, big, prompt):
    for t in (-math.inf, math.inf, -1.0):
        r = bl.generate(small, big, prompt, policy=bl.Cascade(scorer="big-score", threshold=t), max_new_tokens=4)
        json.dumps(r.stats.to_dict(), allow_nan=False)


class _DeadBig:
    """A big model whose server is gone (every call raises RemoteError)."""

    def __init__(self, big, on_failure):
        self.big, self.on_failure = big, on_failure

    def __getattr__(self, name):
        return getattr(self.big, name)

    def session(self):
        return self

    def extend(self, ids, keep=None):
        raise RemoteError("connection refused")

    def truncate(self, n):
        pass

    def __len__(self):
        return 0


def test_big_score_keeps_the_small_answer_when_the_big_model_is_gone(small, big, prompt, small_only):
    r = bl.generate(small, _DeadBig(big, "small-only"), prompt, policy=bl.Cascade(scorer="big-score", threshold=0.0),
                    max_new_tokens=N)
    assert r.token_ids == small_only.token_ids and r.stats.degraded
    assert r.stats.extra["answered_by"] == "small" and "reached" in r.stats.extra["reason"]
    with pytest.raises(RemoteError):
        bl.generate(small, _DeadBig(big, "raise"), prompt, policy=bl.Cascade(scorer="big-score", threshold=0.0),
                    max_new_tokens=N)


def test_parse_policy():
    p = bl.parse_policy("cascade:scorer=big-score,threshold=-1.5")
    assert p == bl.Cascade(scorer="big-score", threshold=-1.5)
    assert bl.parse_policy("cascade:threshold=-inf,reduce=min") == bl.Cascade(threshold=-math.inf, reduce="min")
    assert bl.parse_policy(p.describe()) == p
    assert bl.Cascade(threshold="inf").threshold == math.inf  # JSON requests can only say it as a string


@pytest.mark.parametrize("kwargs,message", [
    ({"scorer": "big"}, "scorer must be one of"), ({"reduce": "median"}, "reduce must be one of"),
    ({"threshold": "high"}, "threshold must be a number"), ({"threshold": float("nan")}, "threshold must be"),
    ({"threshold": None}, "threshold must be a number"),
])
def test_bad_parameters_are_config_errors(kwargs, message):
    with pytest.raises(bl.ConfigError, match=message):
        bl.Cascade(**kwargs)


def test_threshold_for_share_escalates_that_share():
    from biglittle.policies.cascade import threshold_for_share

    scores = [-3.0, -0.5, -1.0, -2.0]
    t = threshold_for_share(scores, 0.5)
    assert t == pytest.approx(-1.5) and sum(s < t for s in scores) == 2
    assert threshold_for_share(scores, 0.0) == -math.inf
    assert threshold_for_share(scores, 1.0) == math.inf
    with pytest.raises(bl.ConfigError):
        threshold_for_share(scores, 1.5)
