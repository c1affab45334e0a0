"""One loaded model shared by threads (issue 27): each thread's generation is what it is alone.

A model holds one lock; every session's extend and truncate runs under it, so the forward passes
(and llama.cpp's one shared llama_batch and its sequence slots) are used by one thread at a time.
Without it, two threads on one llama.cpp model write each other's tokens into the shared batch
(seen: GGML_ASSERT aborts the process). The tests that must catch a missing lock force the two
threads into the critical section at a known point (an Event or a Barrier), so they do not rely
on a race showing up by chance; their waits only ever bound how long a correct run waits.
"""
from __future__ import annotations

import threading

import pytest
import torch

import biglittle as bl

PROMPTS = [[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]]


def run_in_threads(*fns):
    """Run each fn in its own thread, started together; return their results (re-raise an error)."""
    results, errors = [None] * len(fns), []
    start = threading.Barrier(len(fns))

    def run(i):
        try:
            start.wait()
            results[i] = fns[i]()
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def greedy(model, prompt, n=24):
    return bl.generate(None, model, prompt, policy=bl.BigOnly(), max_new_tokens=n).token_ids


# ---------------------------------------------------------------- HF (tiny fp32 model)

def test_two_threads_generating_on_one_hf_model_get_what_they_get_alone(big):
    alone = [greedy(big, p) for p in PROMPTS]
    for _ in range(3):
        assert run_in_threads(*[lambda p=p: greedy(big, p) for p in PROMPTS]) == alone


def test_hf_forward_passes_of_two_threads_never_overlap(big):
    """Thread A, inside the net, waits until thread B is about to extend, then gives B a second to
    enter the net too: with the model's lock B cannot, so A's wait runs out; without it B does."""
    a_inside, b_ready, b_inside = threading.Event(), threading.Event(), threading.Event()
    a_id, overlapped = [], []

    def pre_hook(module, args):
        if threading.get_ident() in a_id and not a_inside.is_set():
            a_inside.set()
            assert b_ready.wait(30), "thread B never started"
            overlapped.append(b_inside.wait(1.0))
        elif threading.get_ident() not in a_id:
            b_inside.set()

    def thread_a():
        a_id.append(threading.get_ident())
        return big.session().extend(PROMPTS[0])

    def thread_b():
        assert a_inside.wait(30), "thread A never entered the net"
        b_ready.set()
        return big.session().extend(PROMPTS[1])

    alone = [big.session().extend(p) for p in PROMPTS]
    hook = big.net.register_forward_pre_hook(pre_hook)
    try:
        got = run_in_threads(thread_a, thread_b)
    finally:
        hook.remove()
    assert overlapped == [False], "two threads were inside one model's forward pass at once"
    assert all(torch.equal(g, a) for g, a in zip(got, alone))


# ---------------------------------------------------------------- llama.cpp (real SmolLM2)

def same_distribution(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a.argmax(-1) == b.argmax(-1)).all()) and (a.exp() - b.exp()).abs().max().item() < 0.05


@pytest.fixture(scope="module")
def smol_threads(smol):
    """Its own copy of SmolLM2, so a broken run cannot spoil the session's shared one."""
    return bl.load_model(smol.spec, n_ctx=512)


@pytest.mark.slow
def test_two_threads_generating_on_one_llamacpp_model_get_what_they_get_alone(smol_threads):
    """Without the lock this aborts the process (GGML_ASSERT in llama_decode) in every run tried."""
    m = smol_threads
    prompts = [m.tokenizer.encode(p) for p in ("def fib(n):", "The capital of France is")]
    alone = [greedy(m, p) for p in prompts]
    for _ in range(3):
        assert run_in_threads(*[lambda p=p: greedy(m, p) for p in prompts]) == alone


@pytest.mark.slow
def test_llamacpp_batch_is_filled_and_decoded_by_one_thread_at_a_time(smol_threads, monkeypatch):
    """Both threads are stopped just before llama_decode, after filling the model's one llama_batch:
    without the lock both get there (the batch then holds the last writer's tokens, and the first
    thread would get the other's log-probs); with it the second waits for the lock, so the first
    one's wait at the barrier runs out (2 s, once) and each decodes its own batch. Where both get
    there they raise instead of decoding, so the unfixed code fails here instead of crashing."""
    m = smol_threads
    texts = ("def add(a, b):\n    return a + b", "The cat sat on the mat and it was")
    prompts = [m.tokenizer.encode(t) for t in texts]
    n = min(map(len, prompts))
    prompts = [p[:n] for p in prompts]  # as long as each other: the same number of logit rows
    alone = [m.session().extend(p) for p in prompts]
    gate, real = threading.Barrier(2, timeout=2.0), m._decode_batch

    def decode_batch(seq):
        try:
            gate.wait()
        except threading.BrokenBarrierError:
            return real(seq)
        raise AssertionError("both threads were inside the model's decode at once")

    monkeypatch.setattr(m, "_decode_batch", decode_batch)
    got = run_in_threads(*[lambda p=p: m.session().extend(p) for p in prompts])
    monkeypatch.undo()
    assert gate.broken, "both threads were inside the model's decode at once"
    for g, a in zip(got, alone):
        assert same_distribution(g, a)
