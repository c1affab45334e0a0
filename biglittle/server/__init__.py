"""`biglittle serve`: an OpenAI-compatible HTTP server over the library, with a web playground.

engine.py runs generations off the event loop with a bounded queue; app.py is the thin HTTP
adapter (routes, errors, auth, streaming); metrics.py the Prometheus counters; static/ the page.
"""
from .app import Limits, create_app
from .engine import Engine

__all__ = ["Engine", "Limits", "create_app"]
