"""What a pair of models has taught a policy, kept for the pair's next generation.

An adaptive schedule learns the pair's costs and acceptance while it decodes; starting every
request from nothing would pay for that lesson again each time (HF assisted generation keeps its
draft length across calls for the same reason). The memory lives as long as both models do.
"""
from __future__ import annotations

import weakref

_MEMORY: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # big → {small → dict}


_ALONE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # big → dict, drafting without a small model


def pair_memory(small, big) -> dict:
    """A dict private to this (small, big) pair, or to the big model when it drafts without a
    small model (prompt lookup); {} (nothing kept) without a big model."""
    # a model bound to one request's source (models/source_bound.py) learns for the model itself
    small, big = getattr(small, "unbound", small), getattr(big, "unbound", big)
    if big is None:
        return {}
    try:
        if small is None:
            return _ALONE.setdefault(big, {})
        return _MEMORY.setdefault(big, weakref.WeakKeyDictionary()).setdefault(small, {})
    except TypeError:  # a model object that cannot be weakly referenced learns per generation
        return {}

