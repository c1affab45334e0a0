"""What a pair of models has taught the policies, kept for the pair's next generations.

An adaptive schedule learns the pair's costs and acceptance while it decodes; starting every
request from nothing would pay for that lesson again each time (HF assisted generation keeps its
draft length across calls for the same reason). The memory lives as long as both models do.

It holds learned statistics only (acceptance counts, measured costs), never one request's own
state (an exploration budget, the current draft length): concurrent requests of a pair share what
they learn without resetting each other. Entries are keyed by what changes what is learned (the
schedule and the acceptance rule, say), not by the whole policy, and a pair keeps at most
MAX_ENTRIES of them, so a server building one policy per request from its overrides cannot grow
the memory without bound.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Callable, Hashable, TypeVar

MAX_ENTRIES = 8

T = TypeVar("T")


class PairMemory(OrderedDict):
    """One pair's learned statistics by key; past MAX_ENTRIES the least recently used goes."""

    def recall(self, key: Hashable, make: Callable[[], T]) -> T:
        """The statistics kept under `key`, or new ones from `make()` kept from now on."""
        if key in self:
            self.move_to_end(key)
        else:
            self[key] = make()
        return self[key]

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        while len(self) > MAX_ENTRIES:
            self.popitem(last=False)


# big → {small → PairMemory}, and big → PairMemory for drafting without a small model (prompt lookup)
_MEMORY: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_ALONE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def pair_memory(small, big) -> PairMemory:
    """The memory private to this (small, big) pair, or to the big model when it drafts without a
    small model (prompt lookup); a fresh one (nothing kept) without a big model."""
    # a model bound to one request's source (models/source_bound.py) learns for the model itself
    small, big = getattr(small, "unbound", small), getattr(big, "unbound", big)
    if big is None:
        return PairMemory()
    try:
        if small is None:
            return _ALONE.setdefault(big, PairMemory())
        return _MEMORY.setdefault(big, weakref.WeakKeyDictionary()).setdefault(small, PairMemory())
    except TypeError:  # a model object that cannot be weakly referenced learns per generation
        return PairMemory()
