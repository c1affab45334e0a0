"""Acceptance rules against hand-worked cases."""
import math

import torch

from biglittle.decoding import acceptance as acc


def one_hot_logp(rows, vocab=5):
    """Log-probs [1, len(rows), vocab] putting almost all mass on the given tokens."""
    t = torch.full((1, len(rows), vocab), -20.0)
    for i, tok in enumerate(rows):
        t[0, i, tok] = 0.0
    return torch.log_softmax(t, -1)


def test_accepted_prefix():
    ok = torch.tensor([[True, True, False, True], [False, True, True, True], [True, True, True, True]])
    assert acc.accepted_prefix(ok).tolist() == [2, 0, 4]


def test_greedy_match_stops_at_first_disagreement():
    p = one_hot_logp([1, 2, 3, 4])
    assert acc.greedy_match(torch.tensor([[1, 2, 0]]), p).tolist() == [2]
    assert acc.greedy_match(torch.tensor([[1, 2, 3]]), p).tolist() == [3]
    assert acc.greedy_match(torch.tensor([[0, 2, 3]]), p).tolist() == [0]


def test_greedy_match_batch_rows_are_independent():
    p = torch.cat([one_hot_logp([1, 2, 3]), one_hot_logp([4, 4, 4])])
    draft = torch.tensor([[1, 2], [4, 0]])
    assert acc.greedy_match(draft, p).tolist() == [2, 1]


def test_rollback_earliest_position_wins():
    # distances −log p: position 0 fine, 1 over threshold, 2 over threshold
    logp = torch.log(torch.tensor([[[0.9, 0.1], [0.99, 0.01], [0.5, 0.5], [0.5, 0.5]]]))
    draft = torch.tensor([[0, 1, 1]])  # p = 0.9, 0.01, 0.5
    assert acc.rollback_accept(draft, logp, threshold=2.0).tolist() == [1]   # −log 0.01 = 4.6 > 2
    assert acc.rollback_accept(draft, logp, threshold=0.5).tolist() == [1]   # 0.105 ok, 4.6 not
    assert acc.rollback_accept(draft, logp, threshold=0.05).tolist() == [0]  # −log 0.9 = 0.105
    assert acc.rollback_accept(draft, logp, threshold=math.inf).tolist() == [3]


def test_rejection_sample_equal_distributions_accept_everything():
    q = torch.softmax(torch.randn(1, 3, 7, generator=torch.Generator().manual_seed(0)), -1)
    p = torch.cat([q, torch.softmax(torch.randn(1, 1, 7), -1)], dim=1)
    draft = torch.tensor([[1, 2, 3]])
    n, _ = acc.rejection_sample(draft, q, p, torch.full((1, 3), 0.999), lambda probs: probs.argmax(-1))
    assert n.tolist() == [3]


def test_rejection_sample_recovers_from_the_residual():
    # q puts all mass on token 0, p on token 1: draft 0 always rejected, recovered token is 1.
    q = torch.tensor([[[1.0, 0.0, 0.0]]])
    p = torch.tensor([[[0.0, 1.0, 0.0], [1 / 3, 1 / 3, 1 / 3]]])
    n, nxt = acc.rejection_sample(torch.tensor([[0]]), q, p, torch.tensor([[0.0]]), lambda probs: probs.argmax(-1))
    assert n.tolist() == [0] and nxt.tolist() == [1]


def test_rejection_sample_acceptance_probability_is_p_over_q():
    q = torch.tensor([[[0.8, 0.2]]])
    p = torch.tensor([[[0.4, 0.6], [0.5, 0.5]]])
    draft = torch.tensor([[0]])  # accept with probability 0.4 / 0.8 = 0.5
    pick = lambda probs: probs.argmax(-1)  # noqa: E731
    assert acc.rejection_sample(draft, q, p, torch.tensor([[0.49]]), pick)[0].tolist() == [1]
    assert acc.rejection_sample(draft, q, p, torch.tensor([[0.51]]), pick)[0].tolist() == [0]
    # the residual max(0, p − q) = [0, 0.4] → token 1
    assert acc.rejection_sample(draft, q, p, torch.tensor([[0.51]]), pick)[1].tolist() == [1]


def test_typical_acceptance_threshold():
    # a confident big model (low entropy): threshold = min(0.09, 0.3·e^−H) ≈ 0.09
    p = torch.tensor([[[0.95, 0.04, 0.01], [0.95, 0.04, 0.01]]])
    assert acc.typical_accept(torch.tensor([[0]]), p).tolist() == [1]
    assert acc.typical_accept(torch.tensor([[1]]), p).tolist() == [0]   # 0.04 < 0.09
    # a flat big model: H = log 3, threshold = min(0.09, 0.3/3 = 0.1) = 0.09, 1/3 passes
    flat = torch.full((1, 2, 3), 1 / 3)
    assert acc.typical_accept(torch.tensor([[2]]), flat).tolist() == [1]


def test_typical_acceptance_uses_the_temperature_processed_distribution():
    """At temperature 4 the big model's peaked distribution flattens: a token it gives 4% raw
    (rejected: below ε = 0.09) gets more than the processed threshold, so it is kept."""
    from biglittle.policies import Speculative
    from biglittle.decoding.sampling import Sampler

    logp = torch.log(torch.tensor([[[0.9, 0.04, 0.02, 0.02, 0.02], [0.2] * 5]]))
    draft = torch.tensor([[1]])
    q = torch.softmax(torch.zeros(1, 1, 5), -1)
    hot = Sampler(temperature=4.0, seed=0)
    ctl = Speculative(draft=1, acceptance="typical").start()
    assert acc.typical_accept(draft, logp.exp()).tolist() == [0]            # raw: rejected
    assert acc.typical_accept(draft, hot.probs(logp)).tolist() == [1]       # processed: kept
    assert ctl.accept(draft, q, logp, hot)[0] == 1
    assert ctl.accept(draft, q, logp, Sampler(temperature=0.0))[0] == 0     # greedy: raw = processed


def test_one_greedy_rule_on_a_one_ulp_near_tie():
    """Log-probs one float32 ulp apart whose exp is the same number: every greedy path — a big-only
    step, a draft, verification, a correction — must take the larger log-prob (token 1)."""
    from biglittle.policies import BigOnly, Speculative
    from biglittle.decoding.sampling import Sampler, greedy_token

    lo = torch.tensor(-0.5)
    hi = torch.nextafter(lo, torch.tensor(0.0))
    row = torch.full((4,), -30.0)
    row[0], row[1] = lo, hi
    assert torch.exp(row[0]) == torch.exp(row[1])     # exp merges them: argmax(exp) would say 0
    greedy = Sampler(temperature=0.0)
    assert int(greedy_token(row)) == 1
    assert int(greedy.choose(row)) == 1
    assert int(greedy.choose(row, greedy.probs(row))) == 1
    p_logp = row.expand(1, 2, 4).clone()
    q = torch.zeros(1, 1, 4)
    assert BigOnly().start().accept(torch.zeros(1, 0, dtype=torch.long), q[:, :0], p_logp[:, :1], greedy) == (0, 1)
    assert acc.greedy_match(torch.tensor([[1]]), p_logp).tolist() == [1]
    assert Speculative(draft=1).start().accept(torch.tensor([[0]]), q, p_logp, greedy) == (0, 1)
