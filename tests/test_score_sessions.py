"""The /v1/score session cache (server/engine.py): a client that resends its growing sequence
pays only for its new tokens, also while other clients whose sequences share a prefix with it
(a chat template, a system prompt) take turns; a full cache evicts the least recently used
session; a session whose call failed is dropped; a client after a rollback continues its own
session; and every number equals a fresh scoring of the same sequence."""
import math

import pytest

import biglittle as bl
from biglittle.server import Engine
from biglittle.server.engine import SCORE_SESSIONS
from biglittle.tokens import common_prefix

TOP = 5
SYSTEM = {"role": "system", "content": "You are a careful assistant who answers in one line."}


@pytest.fixture
def engine(text_pair):
    small, big = text_pair
    return Engine(small, big, bl.BiLD())


def chat_ids(big, question: str) -> list[int]:
    return big.tokenizer.apply_chat([SYSTEM, {"role": "user", "content": question}])


def assert_fresh(out: dict, big, ids: list[int], start: int) -> None:
    """The rows equal a fresh session's scoring of the whole sequence."""
    ref = big.session().extend(ids)  # [len(ids), vocab] log-probs, nothing cached before
    assert [row["position"] for row in out["rows"]] == list(range(start, len(ids)))
    for row in out["rows"]:
        p = row["position"]
        if p + 1 < len(ids):
            assert math.isclose(row["next_logprob"], float(ref[p, ids[p + 1]]), abs_tol=1e-4), p
        else:
            assert row["next_logprob"] is None
        best = ref[p].topk(TOP).values.tolist()
        assert all(math.isclose(v, b, abs_tol=1e-4) for (_, v), b in zip(row["top"], best)), p
        assert all(math.isclose(v, float(ref[p, t]), abs_tol=1e-4) for t, v in row["top"]), p


def test_two_clients_sharing_a_prefix_each_pay_only_for_their_new_tokens(engine, text_pair):
    big = text_pair[1]
    seqs = {"a": chat_ids(big, "Reverse a list in Python"), "b": chat_ids(big, "Sort a dict by value")}
    shared = common_prefix(seqs["a"], seqs["b"])
    assert shared > 40 and shared < min(len(s) for s in seqs.values())  # the system prompt and template
    for name in "ab":  # first calls: the whole sequence
        out = engine.score(seqs[name], 0, TOP)
        assert out["computed"] == len(seqs[name]), name
        assert_fresh(out, big, seqs[name], 0)
    for step in range(3):  # then they take turns, each resending its sequence with a few tokens more
        for name in "ab":
            more = big.tokenizer.encode(f" {name}{step} and")
            before, seqs[name] = seqs[name], seqs[name] + more
            out = engine.score(seqs[name], len(before), TOP)
            assert out["computed"] == len(more), (name, step)
            assert_fresh(out, big, seqs[name], len(before))


def test_a_full_cache_evicts_the_least_recently_used_session(engine, text_pair):
    big = text_pair[1]
    # clients whose sequences share no token at all (each starts with another digit)
    seqs = [big.tokenizer.encode(f"{i}: client {i} asks") for i in range(SCORE_SESSIONS + 1)]
    assert len({s[0] for s in seqs}) == len(seqs)

    def call(i: int) -> int:
        more = big.tokenizer.encode(f" then {i}")
        before, seqs[i] = seqs[i], seqs[i] + more
        out = engine.score(seqs[i], len(before), TOP)
        assert_fresh(out, big, seqs[i], len(before))
        return out["computed"] - len(more)  # positions recomputed beyond its new tokens

    for i in range(SCORE_SESSIONS):  # fill the cache
        assert engine.score(seqs[i], 0, TOP)["computed"] == len(seqs[i])
    assert call(0) == 0            # client 0 is now the most recently used, client 1 the least
    last = SCORE_SESSIONS
    assert engine.score(seqs[last], 0, TOP)["computed"] == len(seqs[last])  # a new client: 1's session goes
    assert call(0) == 0 and call(last) == 0
    assert all(call(i) == 0 for i in range(2, SCORE_SESSIONS))
    before = len(seqs[1])
    assert call(1) == before        # client 1 was evicted: its whole sequence is computed again


class FailingModel:
    """The big model, whose sessions raise after the backend has taken the tokens while `fail`
    is set (a call that breaks half-way: the backend's cache holds positions the caller was
    never told about)."""

    def __init__(self, model):
        self.model, self.fail = model, False

    def __getattr__(self, name):
        return getattr(self.model, name)

    def session(self):
        return FailingSession(self, self.model.session())


class FailingSession:
    def __init__(self, owner, inner):
        self.owner, self.inner = owner, inner

    def extend(self, ids, keep=None):
        out = self.inner.extend(ids, keep=keep)
        if self.owner.fail:
            raise RuntimeError("the call broke after the backend cached its tokens")
        return out

    def truncate(self, n):
        self.inner.truncate(n)

    def __len__(self):
        return len(self.inner)


def test_a_session_whose_call_raised_is_dropped(text_pair):
    small, big = text_pair
    flaky = FailingModel(big)
    engine = Engine(small, flaky, bl.BiLD())
    first = chat_ids(big, "Name a prime")
    engine.score(first, 0, TOP)
    grown = first + big.tokenizer.encode(" Seven is")
    flaky.fail = True
    with pytest.raises(RuntimeError, match="broke"):
        engine.score(grown, len(first), TOP)
    flaky.fail = False
    out = engine.score(grown, len(first), TOP)  # the client retries (scoring is idempotent)
    assert out["computed"] == len(grown)         # on a new session: the broken one is gone
    assert_fresh(out, big, grown, len(first))


def test_a_client_after_a_rollback_continues_its_own_session(engine, text_pair):
    """A remote client verifying drafts sends its committed tokens plus the drafts, asking for
    rows from its last committed token on; after a rejection it resends the accepted drafts, the
    correction and new drafts. Only the rejected drafts' positions are computed again, and a
    client that shares the first one's prefix still gets its own session."""
    big = text_pair[1]
    committed = chat_ids(big, "Write a haiku")
    drafts = big.tokenizer.encode("abcd")
    engine.score(committed, 0, TOP)
    engine.score(committed + drafts, len(committed) - 1, TOP)
    other = chat_ids(big, "Write a limerick")  # shares the template and system prompt
    assert engine.score(other, 0, TOP)["computed"] == len(other)
    # two drafts kept, then a correction, then three new drafts
    seq = committed + drafts[:2] + big.tokenizer.encode("Xyz!")
    start = len(committed) + 2  # the correction's position: rows from the last committed token on
    out = engine.score(seq, start, TOP)
    assert out["computed"] == len(seq) - start
    assert_fresh(out, big, seq, start)
    grown = other + big.tokenizer.encode(" There")
    out = engine.score(grown, len(other), TOP)  # the other client's session is untouched
    assert out["computed"] == len(grown) - len(other)
    assert_fresh(out, big, grown, len(other))
