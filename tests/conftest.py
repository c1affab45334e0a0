"""Shared fixtures: tiny seeded models built once per test session."""
from __future__ import annotations

import os

import pytest
import torch

import biglittle as bl
from tiny import make_draft_of, make_model

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models are fastest on one thread (and a busy machine makes 2 threads stall badly);
# the real-model tests raise it again for their own module.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def big_path(tiny_dir):
    return make_model(str(tiny_dir / "big"), layers=2, hidden=64, seed=1, sharpen=50.0)


@pytest.fixture(scope="session")
def small_path(tiny_dir, big_path):
    """The big model plus weight noise: agrees with it often, not always, and is
    sometimes confident, sometimes not, so every branch of every policy runs."""
    return make_draft_of(big_path, str(tiny_dir / "small"), keep_layers=2, noise=0.2, seed=2)


@pytest.fixture(scope="session")
def big(big_path):
    return bl.load_model(f"hf:{big_path}", dtype="float32")


@pytest.fixture(scope="session")
def small(small_path):
    return bl.load_model(f"hf:{small_path}", dtype="float32")


@pytest.fixture(scope="session")
def text_pair(tiny_dir):
    """(small, big) with a shared byte-level tokenizer and a chat template."""
    b = make_model(str(tiny_dir / "tbig"), layers=2, hidden=64, seed=11, sharpen=50.0, tokenizer=True)
    s = make_draft_of(b, str(tiny_dir / "tsmall"), keep_layers=2, noise=0.2, seed=12, tokenizer=True)
    return bl.load_model(f"hf:{s}"), bl.load_model(f"hf:{b}")


@pytest.fixture(scope="session")
def prompt():
    return [3, 1, 4, 1, 5, 9, 2, 6]
