"""Seeds: none means fresh randomness (and torch's global RNG untouched); a seed reproduces."""
import json

import torch
from typer.testing import CliRunner

import biglittle as bl
from biglittle.cli import app

N = 30


def sample(text_pair, **kw):
    small, big = text_pair
    return bl.generate(small, big, "Hello", policy=bl.Speculative(draft=3), max_new_tokens=N,
                       temperature=1.0, **kw).token_ids


def test_unseeded_runs_differ_and_seeded_runs_repeat(text_pair):
    assert sample(text_pair) != sample(text_pair)
    assert sample(text_pair, seed=5) == sample(text_pair, seed=5)


def test_no_seed_leaves_the_global_rng_alone(text_pair):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    sample(text_pair, seed=None)
    assert torch.equal(torch.get_rng_state(), state)


def test_cli_without_a_seed_samples_afresh(text_pair):
    small, big = text_pair
    args = ["generate", "--small", small.spec, "--big", big.spec, "--temperature", "1",
            "--max-new-tokens", str(N), "--json", "Hello"]

    def run(*extra):
        res = CliRunner().invoke(app, [*args[:-1], *extra, args[-1]])
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)["token_ids"]

    assert run() != run()
    assert run("--seed", "5") == run("--seed", "5")
