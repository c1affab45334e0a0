"""Seeds: none means fresh randomness (and torch's global RNG untouched); a seed reproduces.

"Two unseeded runs differ" is a claim about chance, so it is made on a pair whose distributions
are provably flat: the bound below (from the big model's weights) caps the chance that two
independent 30-token samples are equal, and the tests assert that cap is negligible."""
import json
import math

import pytest
import torch
from typer.testing import CliRunner

import biglittle as bl
from biglittle.cli import app
from tiny import make_draft_of, make_model

N = 30


@pytest.fixture(scope="module")
def flat_pair(tmp_path_factory):
    """(small, big) with a byte-level tokenizer and an unsharpened output head (sharpen=1): every
    next-token distribution of the big model is close to uniform over its 256 tokens."""
    d = tmp_path_factory.mktemp("flat")
    b = make_model(str(d / "big"), layers=2, hidden=64, seed=31, sharpen=1.0, tokenizer=True)
    s = make_draft_of(b, str(d / "small"), keep_layers=2, noise=0.2, seed=32, tokenizer=True)
    return bl.load_model(f"hf:{s}"), bl.load_model(f"hf:{b}")


def collision_bound(big, n: int) -> float:
    """An upper bound on P(two independent n-token samples at temperature 1 are equal).

    Speculative sampling's output has the big model's distribution, so a sequence s has
    P(s) = Π_t p_big(s_t | s_<t), and P(equal) = Σ_s P(s)² ≤ max_s P(s) ≤ p_max^n, where p_max
    bounds every next-token probability in every context. The Llama head is logits = W · RMSNorm(h)
    (no bias): RMSNorm's output has norm ≤ √d · max|g| (g its weight), so every logit lies in
    [−L, L] with L = max_x ‖W_x‖ · √d · max|g|, and p(x) = 1 / (1 + Σ_{y≠x} e^{l_y − l_x})
    ≤ 1 / (1 + (V − 1) e^{−2L})."""
    net = big.net
    w, g = net.lm_head.weight.detach().double(), net.model.norm.weight.detach().double()
    assert getattr(net.lm_head, "bias", None) is None
    big_l = float(w.norm(dim=1).max()) * math.sqrt(w.shape[1]) * float(g.abs().max())
    p_max = 1 / (1 + (w.shape[0] - 1) * math.exp(-2 * big_l))
    return p_max ** n


def sample(pair, **kw):
    small, big = pair
    return bl.generate(small, big, "Hello", policy=bl.Speculative(draft=3), max_new_tokens=N,
                       temperature=1.0, **kw).token_ids


def test_the_collision_chance_is_negligible(flat_pair):
    # on this fixture: 1.1e-30 (p_max ≤ 0.10 per token); each "runs differ" assertion
    # below fails falsely with at most this chance
    assert collision_bound(flat_pair[1], N) < 1e-20


def test_unseeded_runs_differ_and_seeded_runs_repeat(flat_pair):
    a, b = sample(flat_pair), sample(flat_pair)
    assert len(a) == len(b) == N and a != b  # equal with probability < 1e-20 (see collision_bound)
    assert sample(flat_pair, seed=5) == sample(flat_pair, seed=5)
    # two seeds draw independent streams: equal outputs only with the same negligible chance
    assert sample(flat_pair, seed=5) != sample(flat_pair, seed=6)


def test_no_seed_leaves_the_global_rng_alone(flat_pair):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    sample(flat_pair, seed=None)
    assert torch.equal(torch.get_rng_state(), state)


def test_cli_without_a_seed_samples_afresh(flat_pair):
    small, big = flat_pair
    args = ["generate", "--small", small.spec, "--big", big.spec, "--temperature", "1",
            "--max-new-tokens", str(N), "--json", "Hello"]

    def run(*extra):
        res = CliRunner().invoke(app, [*args[:-1], *extra, args[-1]])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)["token_ids"]

    assert run() != run()  # equal with probability < 1e-20 (see collision_bound)
    assert run("--seed", "5") == run("--seed", "5") != run("--seed", "6")
