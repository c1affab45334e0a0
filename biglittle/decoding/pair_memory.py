"""What a pair of models has taught a policy, kept for the pair's next generation.

An adaptive schedule learns the pair's costs and acceptance while it decodes; starting every
request from nothing would pay for that lesson again each time (HF assisted generation keeps its
draft length across calls for the same reason). The memory lives as long as both models do.
"""
from __future__ import annotations

import weakref

_MEMORY: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # big → {small → dict}


def pair_memory(small, big) -> dict:
    """A dict private to this (small, big) pair; {} (nothing kept) without a pair."""
    if small is None or big is None:
        return {}
    try:
        return _MEMORY.setdefault(big, weakref.WeakKeyDictionary()).setdefault(small, {})
    except TypeError:  # a model object that cannot be weakly referenced learns per generation
        return {}

