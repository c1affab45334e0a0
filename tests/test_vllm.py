"""The remote backend against a real vLLM (its CPU build, in .venv-vllm: scripts/vllm_server.py)
serving the catalog's Qwen2.5-Coder 0.5B in bfloat16 (VllmServer.for_tests: the cheapest real
Qwen, ~3x faster to score than the 1.5B), with the local Q4 1.5B drafting for it: another model on
purpose, so drafts are rejected and corrected through vLLM, not all accepted.

One server for the module (start-up takes minutes). `make install-test` builds .venv-vllm; where it
is missing these tests fail in CI (CI=true) and are skipped elsewhere, with the reason.
The last test stops the server: keep it last.
"""
import os
import sys

import httpx
import pytest

import biglittle as bl
from biglittle.errors import RemoteError, VocabMismatchError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import vllm_server  # noqa: E402

pytestmark = pytest.mark.slow

N = 8  # tokens per generation: each big call re-scores the whole sequence (no prefix cache with prompt_logprobs)
# one prompt: every token through a CPU vLLM costs a scoring request that re-reads the sequence
PROMPTS = ['def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n']


@pytest.fixture(scope="module")
def vllm(launched_vllm, tmp_path_factory):
    if not vllm_server.installed():
        why = (f"{vllm_server.VENV} is missing or incomplete (no network when `make install-test` ran?); "
               "build it with `python scripts/vllm_server.py install`")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(why)
        pytest.skip(why)
    # conftest launches it right after collection when it can (start-up overlaps other tests)
    server = launched_vllm or vllm_server.VllmServer.for_tests(log_path=str(tmp_path_factory.mktemp("vllm") / "vllm.log"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def drafter(qwen_pulled):
    """The drafter: the Q4 1.5B (same tokenizer as the served 0.5B, different answers)."""
    return bl.load_model("gguf:qwen2.5-coder-1.5b", n_ctx=2048)


def connect(server, small, **kw):
    # a generous read timeout: one scoring request took over 30 s on a 2-core machine under load
    kw.setdefault("read_timeout", 180)
    return bl.load_model(f"remote:{server.url}#{server.name}", tokenizer_from=small, **kw)


@pytest.fixture(scope="module")
def remote(vllm, drafter):
    return connect(vllm, drafter)


def vllm_generate(server, ids: list[int], n: int, top: int = 2) -> tuple[list[int], list[dict[int, float]]]:
    """vLLM generating alone, greedy, in one request: its token ids and each step's top log-probs."""
    body = {"model": server.name, "prompt": ids, "max_tokens": n, "temperature": 0.0, "logprobs": top,
            "return_tokens_as_token_ids": True}
    lp = httpx.post(server.url + "/v1/completions", json=body, timeout=300).json()["choices"][0]["logprobs"]
    as_id = lambda t: int(str(t).removeprefix("token_id:"))  # noqa: E731
    return [as_id(t) for t in lp["tokens"]], [{as_id(t): v for t, v in d.items()} for d in lp["top_logprobs"]]


@pytest.fixture(scope="module")
def references(vllm, drafter):
    out = []
    for text in PROMPTS:
        ids = drafter.tokenizer.encode(text)
        out.append((ids, *vllm_generate(vllm, ids, N)))
    return out


def test_dialect_is_detected_and_the_qwen_tokenizers_agree(remote, drafter):
    assert remote.dialect.name == "vllm"  # the tokenizer check (PROBE_TEXT) passed while loading
    assert remote.vocab_size == drafter.vocab_size


def test_context_window_is_the_servers(remote):
    """vLLM serves --max-model-len 2048 and a scoring request generates one token past what it
    scores: a generation that cannot fit is refused before any request, not by HTTP 400 midway."""
    assert remote.context_length == 2047
    with pytest.raises(bl.PromptError, match="beyond the context window of 2047"):
        bl.generate(None, remote, [16] * 2000, policy=bl.BigOnly(), max_new_tokens=48)


def test_smollm2_tokenizer_is_refused_clearly(vllm):
    smol = bl.load_model("gguf:smollm2-135m")
    with pytest.raises(VocabMismatchError, match="tokenizes text differently from the small model"):
        connect(vllm, smol)


def test_rows_are_the_distribution_after_each_token(vllm, remote, drafter):
    """Row p of a scored block is the distribution after token p (the meaning of biglittle's
    /v1/score): each row's top tokens and log-probs equal what vLLM itself reports when it
    generates one token after ids[:p+1]; the given next token's log-prob lands in its row."""
    ids = drafter.tokenizer.encode(PROMPTS[0])
    start = 1
    rows = remote.session().extend(ids, keep=len(ids) - start)
    assert rows.shape == (len(ids) - start, remote.vocab_size)
    for p in (start, len(ids) // 2, len(ids) - 2, len(ids) - 1):  # the last row comes from `logprobs`
        row = rows[p - start]
        token, tops = vllm_generate(vllm, ids[: p + 1], 1, top=5)
        assert int(row.argmax()) == token[0], f"row {p} is not the distribution after token {p}"
        for tid, lp in tops[0].items():
            assert abs(float(row[tid]) - lp) < 0.1, (p, tid, float(row[tid]), lp)  # prefill vs decode kernels
        if p + 1 < len(ids):
            assert row[ids[p + 1]].isfinite()  # the given token is always reported


def first_difference(got: list[int], ref: list[int], tops: list[dict[int, float]]) -> str:
    i = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
    if i < len(tops) and len(tops[i]) >= 2:
        a, b = sorted(tops[i].values(), reverse=True)[:2]
        return f"first difference at token {i}: ours {got[i:i + 1]}, vLLM's {ref[i:i + 1]}; top-2 margin {a - b:.4f}"
    return f"lengths differ: ours {len(got)}, vLLM's {len(ref)}"


@pytest.mark.parametrize("policy", [bl.BigOnly(), bl.Speculative(draft=4)], ids=["big-only", "speculative"])
def test_greedy_through_vllm_equals_vllm_greedy(remote, drafter, references, policy):
    big_only = isinstance(policy, bl.BigOnly)
    for ids, ref, tops in references:
        got = bl.generate(None if big_only else drafter, remote, ids, policy=policy, max_new_tokens=N).token_ids
        assert got == ref, first_difference(got, ref, tops)


def test_bild_through_vllm_decides_by_vllms_numbers(remote, drafter, references):
    """BiLD is not big-model greedy by design (a small token within the rollback distance stays),
    so it is checked by replay: scoring the finished text once on vLLM, every kept small token lies
    within the rollback distance (−log p_big ≤ 5) and every other token is vLLM's argmax there."""
    policy = bl.BiLD()
    for ids, ref, tops in references:
        res = bl.generate(drafter, remote, ids, policy=policy, max_new_tokens=N)
        out = res.token_ids
        rows = remote.session().extend(ids + out, keep=len(out) + 1)  # row i: the distribution before out[i]
        for i, (tok, why) in enumerate(zip(out, res.reasons)):
            if why == "small":
                assert -float(rows[i, tok]) <= policy.rollback + 0.05, (i, tok, float(rows[i, tok]))
            else:
                best = rows[i].topk(2).values
                assert tok == int(rows[i].argmax()), (f"token {i} ({why}) is not vLLM's argmax; "
                                                      f"top-2 margin {float(best[0] - best[1]):.4f}")
        print(f"bild: {res.reasons.count('small')}/{len(out)} small tokens kept, {res.stats.big_calls} big calls; "
              f"vLLM greedy: {first_difference(out, ref, tops) if out != ref else 'equal'}")


def test_server_stopping_mid_generation_degrades_or_raises(vllm, drafter):
    """Runs last: it stops the module's server. With on_failure="small-only" the small model
    finishes and the result says degraded; without it a RemoteError. The server stops at a known
    point (before the generation's third scoring request), not at some moment of a race."""
    degrade = connect(vllm, drafter, on_failure="small-only", retries=1, read_timeout=60)
    strict = connect(vllm, drafter, retries=1, read_timeout=60)
    ids = drafter.tokenizer.encode("# Check whether a string is a palindrome, ignoring case.\ndef is_palindrome(s):")
    scored = []
    call = degrade.http.call

    def stop_before_the_third(method, path, body=None):
        if path == "/v1/completions":
            scored.append(path)
            if len(scored) == 3:
                vllm.stop(timeout=10)
        return call(method, path, body)

    degrade.http.call = stop_before_the_third
    res = bl.generate(drafter, degrade, ids, policy=bl.BiLD(), max_new_tokens=64)
    assert vllm.proc.poll() is not None, f"the server did not stop ({len(scored)} scoring requests)"
    assert res.stats.degraded and res.stats.extra["degraded_reason"]
    assert len(res.token_ids) == 64 or res.stats.finish_reason == "eos"
    with pytest.raises(RemoteError, match="cannot connect|failed"):
        bl.generate(drafter, strict, ids, policy=bl.BiLD(), max_new_tokens=8)
