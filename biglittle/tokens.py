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
