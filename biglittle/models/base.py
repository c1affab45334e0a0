"""The backend protocol every model meets: a model hands out sessions, a session caches one sequence.

    session = model.session()
    logp = session.extend(token_ids)   # append tokens; log-probs [len(token_ids), vocab]
    session.truncate(n)                # keep the first n positions (rollback is just this)
    len(session)                       # positions cached

Row i of `extend`'s result is the log-distribution of the token that follows token_ids[i].
Log-probs are float32 torch tensors on the CPU, whatever the backend computes in and wherever
its model runs (`device`: CPU, CUDA, MPS). A GPU backend computes the log-softmax on its device
and copies only the rows asked for (`keep`) to the host in one transfer per `extend` call: one
row per drafted token (the host needs that token anyway, to stop on EOS or feed it back) and
k + 1 rows per verification of k drafts. So a pair placed on different devices (small on the
CPU, big on a GPU, or the reverse) meets in CPU tensors with no other copies, the acceptance
rules compare exactly the numbers each model produced, and no step pays a per-token round trip
beyond the one its forward pass already needs.

Every backend also promises: a call that raises (a failed forward pass, a server error, Ctrl-C)
leaves the session exactly as it was before the call; and a loaded model may be shared by
threads: its sessions' extend and truncate take one lock of the model (`model.lock`, re-entrant),
so each thread's results are what they would be alone (the remote backend sends its sessions'
requests side by side instead: the server is what they share). One session is one sequence: use
it from one thread at a time.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch


def extend_args(token_ids: Sequence[int], keep: int | None) -> tuple[list[int], int]:
    """A session's extend arguments as every backend reads them: the ids as ints (none is an
    error), and how many rows to return (all by default, else `keep` within 1..len)."""
    ids = [int(t) for t in token_ids]
    if not ids:
        raise ValueError("extend needs at least one token")
    return ids, len(ids) if keep is None else max(1, min(keep, len(ids)))


@runtime_checkable
class Session(Protocol):
    def extend(self, token_ids: Sequence[int], keep: int | None = None) -> torch.Tensor:
        """Append tokens to the cache and return log-probs [n, vocab] for the appended positions.

        `keep` (optional) returns only the last `keep` rows, which saves work and memory when
        a long prompt is fed; the default returns all rows.
        """
        ...

    def truncate(self, n: int) -> None:
        """Keep the first n cached positions, drop the rest, without recomputing the kept ones."""
        ...

    def __len__(self) -> int: ...


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def decode(self, token_ids: Sequence[int], skip_special: bool = True) -> str:
        """Text of the tokens; skip_special=False keeps special tokens such as <|im_end|>."""
        ...

    def apply_chat(self, messages: list[dict]) -> list[int]:
        """Token ids of a chat conversation rendered with the model's chat template,
        ending with the prompt for the assistant's turn."""
        ...

    # optional: token_bytes(token_id) -> bytes, one token's raw bytes (the server's log-prob
    # "bytes"); without it, the UTF-8 of the token decoded alone


@runtime_checkable
class Model(Protocol):
    spec: str                    # how the user named it, e.g. "hf:/models/qwen"
    backend: str                 # "hf", "llama.cpp", "remote", ...
    vocab_size: int              # rows of the output distribution
    context_length: int | None   # positions the model can attend to; None if unknown
    tokenizer: Tokenizer | None  # None: the model takes token-id prompts only
    eos_token_ids: frozenset[int]

    def session(self) -> Session: ...
