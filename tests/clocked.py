"""Models on a virtual clock, so tests of what the loop times (prompt_s, the decode phase, the
schedules' cost-driven choices) are exact instead of timing real calls on a shared machine.

    clock = Clock(monkeypatch)                 # the loop, its sessions and generate read this clock
    big = Clocked(real_big, clock, lambda n: 1.0)       # every big call costs 1 s, whatever its size
    small = Clocked(real_small, clock, lambda n: 0.01)
    ...
    big.calls   # [(token ids fed, clock time when the call returned), ...]
"""
from __future__ import annotations

import importlib

# the modules that read the time (biglittle.generate is also the name of a function: import by name)
TIMED = [importlib.import_module(m) for m in ("biglittle.decoding.loop", "biglittle.decoding.session",
                                              "biglittle.generate")]


class Clock:
    """A clock that only moves when a Clocked model is called."""

    def __init__(self, monkeypatch):
        self.now = 0.0
        for module in TIMED:
            monkeypatch.setattr(module, "time", self)  # they call time.perf_counter()

    def perf_counter(self) -> float:
        return self.now


class Clocked:
    """A real model whose every call costs `cost(positions fed)` virtual seconds; each call is logged."""

    def __init__(self, model, clock: Clock, cost):
        self.model, self.clock, self.cost = model, clock, cost
        self.calls: list[tuple[list[int], float]] = []

    def session(self):
        return _ClockedSession(self, self.model.session())

    def __getattr__(self, name):  # everything else is the real model's
        return getattr(self.model, name)


class _ClockedSession:
    def __init__(self, owner: Clocked, session):
        self.owner, self.session = owner, session

    def extend(self, token_ids, keep=None):
        out = self.session.extend(token_ids, keep=keep)
        self.owner.clock.now += self.owner.cost(len(token_ids))
        self.owner.calls.append((list(token_ids), self.owner.clock.now))
        return out

    def __len__(self):
        return len(self.session)

    def __getattr__(self, name):
        return getattr(self.session, name)
