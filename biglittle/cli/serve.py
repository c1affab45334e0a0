"""`biglittle serve`: the OpenAI-compatible server and the web playground."""
from __future__ import annotations

import signal
import socket
from typing import Optional

import typer

from .common import BIG_DEVICE_HELP, CONTEXT_HELP, DEVICE_HELP, SMALL_DEVICE_HELP, err, fail, load_pair, user_errors


def serve(
    small: Optional[str] = typer.Option(None, help="Small model spec (default: the qwen-coder pair)."),
    big: Optional[str] = typer.Option(None, help="Big model spec (default: the qwen-coder pair)."),
    policy: str = typer.Option("bild", help="Default policy spec, e.g. bild:fallback=0.6,rollback=5 or "
                               "speculative:draft=4; requests may override it."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default; 0.0.0.0 exposes it)."),
    port: int = typer.Option(8000, help="Port."),
    api_key: Optional[str] = typer.Option(None, envvar="BIGLITTLE_API_KEY",
                                          help="Require this key (Bearer) on every endpoint but /health."),
    name: str = typer.Option("biglittle", help="The model name clients ask for."),
    max_queue: int = typer.Option(16, help="Requests waiting or running before new ones get 429."),
    timeout: float = typer.Option(300.0, help="Per-request time limit in seconds."),
    max_logprobs: int = typer.Option(20, help="Most top log-probs per token a request may ask for (/v1/score top_k, "
                                                   "logprobs, top_logprobs)."),
    max_body_bytes: int = typer.Option(8 << 20, help="Largest request body; larger ones get 413 unread."),
    context: Optional[int] = typer.Option(None, "--context", help=CONTEXT_HELP, show_default=False),
    dtype: str = typer.Option("float32", help="Weights dtype for HF models."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    small_device: Optional[str] = typer.Option(None, "--small-device", help=SMALL_DEVICE_HELP),
    big_device: Optional[str] = typer.Option(None, "--big-device", help=BIG_DEVICE_HELP),
    verbose: bool = typer.Option(False, "--verbose", help="Let llama.cpp's own log lines through."),
):
    """Serve a small–big pair over an OpenAI-compatible API, with a playground page at /."""
    import uvicorn

    from ..errors import ConfigError
    from ..policies import parse_policy
    from ..server import Engine, Limits, create_app
    from ..server.engine import SCORE_SESSIONS

    with user_errors():
        pol = parse_policy(policy)
        if max_queue < 1 or timeout <= 0 or max_logprobs < 1 or max_body_bytes < 1:
            raise ConfigError("--max-queue, --max-logprobs and --max-body-bytes must be ≥ 1 and --timeout > 0")
        if api_key is not None and not api_key.strip():
            raise ConfigError("--api-key is empty; give a key, or leave it out to serve without one")
        # overrides may need both models; every job in flight, and the /v1/score prefix cache, keeps
        # its own llama.cpp KV state (a sequence id; llama.cpp allows 256)
        small_m, big_m = load_pair(small, big, True, True, dtype, context, verbose,
                                   devices=(device, small_device, big_device),
                                   sequences=min(256, max_queue + SCORE_SESSIONS))
    app = create_app(Engine(small_m, big_m, pol, max_queue=max_queue, timeout_s=timeout), model_name=name,
                     api_key=api_key, limits=Limits(max_logprobs=max_logprobs, max_body_bytes=max_body_bytes))
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           timeout_graceful_shutdown=10))
    try:  # bind here, so a taken port or a bad host is a clear error before we say "serving"
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family)
    except OSError as e:
        fail(f"cannot listen on {host}:{port}: {e.strerror or e}")
    err.print(f"serving {name!r} ({small_m.spec} → {big_m.spec}, policy {pol.describe()}) on http://{host}:{port}/"
              + ("  [API key required]" if api_key else ""))
    # uvicorn shuts down gracefully on SIGINT/SIGTERM (stop accepting, let running requests end,
    # then cancel what is left), and afterwards re-raises the signal through the handler it found.
    # That handler ignores it here: the shutdown is done, so a signal means a clean exit (0): while
    # serving, Ctrl-C is how a server is stopped. Before this (imports, model loading) the command
    # line's own handler ends the command with exit 130 like any other (interrupt.py).
    quiet = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in quiet.items():
            signal.signal(sig, handler)
    err.print("stopped")
