"""Facts about token sequences and tokenizers that every layer needs."""
from __future__ import annotations

from typing import Sequence

# Text whose token ids must agree between two tokenizers that claim to be the same:
# code, indentation, non-ASCII letters, CJK, punctuation and digits.
TOKENIZER_PROBE = "def fib(n):\n    return n if n < 2 else fib(n-1) + fib(n-2)  # Grüße, 你好! 3.14"


def common_prefix(a: Sequence, b: Sequence) -> int:
    """Length of the longest common prefix of two sequences."""
    n, limit = 0, min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def same_tokenizer(a, b) -> bool:
    """Whether two tokenizers (biglittle's tokenizer protocol) split the probe text identically."""
    return a.encode(TOKENIZER_PROBE) == b.encode(TOKENIZER_PROBE)


def _as_list(tokens) -> list:
    return tokens.tolist() if hasattr(tokens, "tolist") else list(tokens)


def agreement(a_tokens, b_tokens) -> dict[str, float | int | bool]:
    """How far two generations agree, token by token (e.g. a method's output against big-only).

    The one definition used everywhere (benchmark, tune, router labels): the share of positions
    holding the same token, over the LONGER of the two lengths, so an answer that stops early
    or runs on does not count as agreeing where the other has tokens it lacks.

    Returns
      agreement      positions equal / max(len(a), len(b)) (1.0 when both are empty);
      exact          the two sequences are identical;
      common_prefix  length of the longest common prefix, in tokens;
      compared       max(len(a), len(b)), the denominator.
    """
    a, b = _as_list(a_tokens), _as_list(b_tokens)
    n = max(len(a), len(b))
    same = [x == y for x, y in zip(a, b)]
    prefix = next((i for i, s in enumerate(same) if not s), len(same))
    frac = sum(same) / n if n else 1.0
    return {"agreement": frac, "exact": a == b, "common_prefix": prefix, "compared": n}
