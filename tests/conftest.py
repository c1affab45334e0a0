"""Shared fixtures: tiny seeded models built once per test session, and the real catalog
models that several slow modules use, each loaded once per session on first use."""
from __future__ import annotations

import ctypes
import gc
import os
import sys
import tempfile
from pathlib import Path

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


# ---------------------------------------------------------------- real catalog models (slow tests)
# Loaded lazily (only a slow test asking for one loads it) and once per session. Only the small
# llama.cpp models live here; the multi-GB HF fp32 copies are scoped to the tests that need them
# (tests/test_real_models.py), so the suite's peak memory stays under 8 GB.


@pytest.fixture(scope="session")
def smol():
    """SmolLM2-135M on llama.cpp (98 MB; another tokenizer than Qwen's)."""
    from biglittle import catalog

    catalog.ensure("smollm2-135m")
    return bl.load_model("gguf:smollm2-135m", n_ctx=512)


@pytest.fixture(scope="session")
def qwen_pulled():
    from biglittle import catalog

    catalog.pull("qwen-coder")


@pytest.fixture(scope="session")
def qwen_small(qwen_pulled):
    """Qwen2.5-Coder-0.5B Q4 on llama.cpp: the real pair's drafter. 1024 positions are plenty for
    the tests and take 0.6 GB loaded; the default 4096 take 1.0 GB."""
    return bl.load_model("gguf:qwen2.5-coder-0.5b", n_ctx=1024)


def release_memory() -> None:
    """Collect what the finished tests dropped and hand freed heap pages back to the OS
    (glibc keeps them otherwise, and the resident size would only ever grow)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc (macOS): nothing to trim


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    yield
    # pytest has now torn down what only this test used (and a module's or class's fixtures after
    # its last test) and dropped the test's arguments. Models hold reference cycles, so they stay
    # until a collection: run one after each real-model test, before the next loads more. (Not
    # after every test: with torch loaded a full collection takes a few hundred ms.)
    if item.get_closest_marker("slow"):
        release_memory()


# ---------------------------------------------------------------- the real vLLM, launched early
# vLLM's server (tests/test_vllm.py) takes over a minute to start, on about one core. When this
# session will run those tests (one process, not pytest-xdist), the server is launched as soon as
# the tests are collected, and they are moved right after tests/test_remote.py, whose real-model
# tests wait on llama-cpp-python's server on about one core too: the start-up overlaps them, and
# nothing heavier than those (1.5 GB) is in memory meanwhile.
VLLM_SERVER = pytest.StashKey()


@pytest.hookimpl(trylast=True)  # after -m/-k have deselected what will not run
def pytest_collection_modifyitems(config, items):
    vllm_tests = [item for item in items if item.path.name == "test_vllm.py"]
    if (not vllm_tests or config.option.collectonly or hasattr(config, "workerinput")
            or config.getoption("numprocesses", None)):
        return
    scripts = str(Path(__file__).resolve().parent.parent / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    import vllm_server

    if not vllm_server.installed():
        return  # the tests' own fixture says why
    log = Path(tempfile.mkdtemp(prefix="vllm-")) / "vllm.log"
    try:
        server = vllm_server.VllmServer.for_tests(log_path=str(log))  # converts the model if needed
        server.launch()
    except Exception:  # noqa: BLE001 - the tests' own fixture tries again and reports the error
        return
    config.stash[VLLM_SERVER] = server
    first = [item for item in items if item.path.name == "test_remote.py"] + vllm_tests
    moved = {id(item) for item in first}
    items[:] = first + [item for item in items if id(item) not in moved]


def pytest_sessionfinish(session):
    server = session.config.stash.get(VLLM_SERVER, None)
    if server is not None:
        server.stop()  # tests interrupted before test_vllm.py stopped it


@pytest.fixture(scope="session")
def launched_vllm(request):
    """The vLLM server conftest launched after collection, or None."""
    return request.config.stash.get(VLLM_SERVER, None)
