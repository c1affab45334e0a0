"""The prompt router: the classifier learns a separable set, survives JSON, and the policy routes
exactly (to the baselines' own outputs); `biglittle router train` end to end."""
import json
import math

import pytest
import torch
from typer.testing import CliRunner

import biglittle as bl
from biglittle.cli import app
from biglittle.policies.router import FEATURES, Classifier, label_by_agreement, prompt_features, train_classifier, train_router
from tiny import _net

N = 16


def separable(n, seed):
    """Points on either side of a random hyperplane in feature space, with a margin, on very
    different scales per feature (as the real features are)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.tensor([0.7, -1.0, 0.4, 1.3, -0.6, 0.9], dtype=torch.float64)
    x = torch.randn(4 * n, len(FEATURES), generator=g, dtype=torch.float64)
    margin = x @ w / w.norm()
    x = x[margin.abs() > 0.3][:n]
    y = (x @ w > 0).double()
    scales = torch.tensor([1.0, 10.0, 0.01, 3.0, 100.0, 0.1], dtype=torch.float64)
    return x * scales + 5.0, y


@pytest.fixture(scope="module")
def clf():
    x, y = separable(200, seed=0)
    return train_classifier(x, y)


def test_learns_a_separable_set(clf):
    x, y = separable(400, seed=1)  # held out
    accuracy = ((clf.p_big(x) >= 0.5).double() == y).double().mean()
    assert accuracy >= 0.97
    assert clf.info["train_accuracy"] >= 0.98
    assert clf.info["examples"] == 200 and clf.info["big"] + clf.info["small"] == 200


def test_json_round_trip_is_exact(clf, tmp_path):
    path = tmp_path / "router.json"
    clf.save(path)
    back = Classifier.load(path)
    assert back == clf
    x, _ = separable(50, seed=2)
    assert torch.equal(back.p_big(x), clf.p_big(x))
    assert json.loads(path.read_text())["format"] == "biglittle-router/1"


@torch.no_grad()
def test_features_equal_a_direct_computation(small, small_path, prompt):
    logp = torch.log_softmax(_net(small_path)(input_ids=torch.tensor([prompt]), use_cache=False).logits[0].float(), -1)
    entropy = -(logp.exp() * logp).sum(-1)
    seen = torch.tensor([float(logp[i, prompt[i + 1]]) for i in range(len(prompt) - 1)])
    want = [math.log(len(prompt)), seen.mean(), seen.min(), entropy.mean(), entropy[-1], logp[-1].exp().max()]
    assert prompt_features(small, prompt) == pytest.approx([float(v) for v in want], abs=1e-4)


def _fixed(p_big: float) -> Classifier:
    """A classifier that always answers p_big (zero weights)."""
    zeros = (0.0,) * len(FEATURES)
    return Classifier(FEATURES, zeros, (1.0,) * len(FEATURES), zeros, math.log(p_big / (1 - p_big)))


def test_routes_to_small_exactly_as_small_only(small, big, prompt):
    ref = bl.generate(small, None, prompt, policy=bl.SmallOnly(), max_new_tokens=N)
    r = bl.generate(small, big, prompt, policy=bl.Router(classifier=_fixed(0.2)), max_new_tokens=N)
    assert r.token_ids == ref.token_ids and r.origins == ["small"] * N
    assert r.stats.extra["answered_by"] == "small" and r.stats.extra["p_big"] == pytest.approx(0.2)
    assert r.stats.big_calls == 0
    assert r.stats.small_calls == ref.stats.small_calls  # the routing pass is the prompt pass, reused
    assert set(r.stats.extra["features"]) == set(FEATURES)


def test_routes_to_big_exactly_as_big_only(small, big, prompt):
    ref = bl.generate(None, big, prompt, policy=bl.BigOnly(), max_new_tokens=N)
    r = bl.generate(small, big, prompt, policy=bl.Router(classifier=_fixed(0.2), threshold=0.1), max_new_tokens=N)
    assert r.token_ids == ref.token_ids and r.origins == ["big"] * N
    assert r.stats.extra["answered_by"] == "big"
    assert r.stats.small_calls == 1 and r.stats.big_calls == ref.stats.big_calls


def test_trains_on_real_prompt_passes(small, big):
    """Long prompts labelled big, short ones small: the router learns it from the prompt pass."""
    g = torch.Generator().manual_seed(0)
    short = [torch.randint(0, 256, (int(n),), generator=g).tolist() for n in torch.randint(2, 6, (10,), generator=g)]
    long = [torch.randint(0, 256, (int(n),), generator=g).tolist() for n in torch.randint(20, 40, (10,), generator=g)]
    clf = train_router(small, short + long, ["small"] * 10 + ["big"] * 10)
    assert clf.info["train_accuracy"] == 1.0 and clf.info["small_model"] == small.spec
    router = bl.Router(classifier=clf)
    new_long = torch.randint(0, 256, (30,), generator=g).tolist()
    assert bl.generate(small, big, new_long, policy=router, max_new_tokens=2).stats.extra["answered_by"] == "big"
    assert bl.generate(small, big, [7, 7, 1], policy=router, max_new_tokens=2).stats.extra["answered_by"] == "small"


def test_label_by_agreement(small, big):
    from biglittle.data import agreement

    prompt = [100, 50, 20, 30, 40]

    s = bl.generate(small, None, prompt, policy=bl.SmallOnly(), max_new_tokens=N).token_ids
    b = bl.generate(None, big, prompt, policy=bl.BigOnly(), max_new_tokens=N).token_ids
    frac = agreement(s, b)["agreement"]
    assert 0 < frac < 1  # the fixture pair agrees on some positions, not all
    assert label_by_agreement(small, big, prompt, N, min_agreement=frac) == "small"
    assert label_by_agreement(small, big, prompt, N, min_agreement=frac + 1e-9) == "big"


def test_cli_train_then_generate_with_the_router(text_pair, tmp_path):
    small, big = text_pair
    data = tmp_path / "dev.jsonl"
    lines = [{"prompt": "Hi", "label": "small"}, {"prompt": "Yo!", "label": "small"},
             {"prompt": "Explain the proof of the four colour theorem step by step, in detail.", "label": "big"},
             {"prompt": "Write a compiler for a small Lisp in Python, with tail calls and macros.", "label": "big"}]
    data.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "router.json"
    runner = CliRunner()
    res = runner.invoke(app, ["router", "train", "--small", small.spec, "--data", str(data), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "trained on 4 prompts (2 small, 2 big" in res.stderr
    router = bl.Router.load(out)
    assert router.classifier.info["train_accuracy"] == 1.0 and router.classifier.info["labels_derived"] == 0
    assert bl.parse_policy(f"router:path={out},threshold=0.5") == router
    assert router.classifier.info["examples"] == 4
    gen = runner.invoke(app, ["generate", "--small", small.spec, "--big", big.spec, "--config", str(out),
                              "--max-new-tokens", "4", "--json", "Hello"])
    assert gen.exit_code == 0, gen.output
    stats = json.loads(gen.stdout)["stats"]
    assert stats["policy"] == f"router:path={out},threshold=0.5"
    assert stats["extra"]["answered_by"] in ("small", "big")


def test_cli_train_errors(text_pair, tmp_path):
    small, _ = text_pair
    data = tmp_path / "one.jsonl"
    data.write_text('{"prompt": "a", "label": "small"}\n{"prompt": "b", "label": "small"}\n')
    res = CliRunner().invoke(app, ["router", "train", "--small", small.spec, "--data", str(data),
                                   "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 2 and "both labels" in res.stderr
    data.write_text('{"text": "a"}\n')
    res = CliRunner().invoke(app, ["router", "train", "--small", small.spec, "--data", str(data)])
    assert res.exit_code == 2 and '"prompt" key' in res.stderr


def test_bad_inputs_are_config_errors(tmp_path):
    with pytest.raises(bl.ConfigError, match="needs a trained classifier"):
        bl.Router()
    with pytest.raises(bl.ConfigError, match="cannot read router file"):
        bl.Router.load(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text('{"format": "something-else"}')
    with pytest.raises(bl.ConfigError, match="not a biglittle router file"):
        bl.Router.load(tmp_path / "other.json")
    with pytest.raises(bl.ConfigError, match="both labels"):
        train_classifier([[0.0] * len(FEATURES)] * 3, [1.0, 1.0, 1.0])
    with pytest.raises(bl.ConfigError, match="labels must be"):
        train_router(None, [[1, 2]], ["medium"])
    with pytest.raises(bl.ConfigError, match="threshold must be"):
        bl.Router(classifier=_fixed(0.5), threshold=-0.1)
