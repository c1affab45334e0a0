"""What every command shares: the consoles, how an error ends a command, and loading the models."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

import typer
from rich.console import Console

from ..errors import BigLittleError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 2):
    """Print one red error line on stderr and end the command with `code`."""
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@contextmanager
def user_errors():
    """A library error (bad settings, models or prompts; all are ValueErrors) ends the command with
    one error line and exit 2, instead of a traceback."""
    try:
        yield
    except (BigLittleError, ValueError) as e:
        fail(str(e))


def load_pair(small: Optional[str], big: Optional[str], needs_small: bool, needs_big: bool, dtype: str):
    """Load the models a command needs, with a spinner (loading can take a while); the other one is None."""
    from .. import catalog
    from ..models import load_model

    if (needs_big and not big) or (needs_small and not small):
        # no model named: the embedded default pair, on its fastest measured backends
        pair = catalog.get_pair(catalog.DEFAULT_PAIR)
        small = small or f"{pair.backends[0]}:{pair.small}"
        big = big or f"{pair.backends[1]}:{pair.big}"
        err.print(f"[dim]using the default pair {pair.name!r}: --small {small} --big {big}[/]")
    for spec in (small if needs_small else None, big if needs_big else None):
        name = (spec or "").partition(":")[2] if ":" in (spec or "") else spec
        if name in catalog.MODELS:  # fetch on first use, with progress bars, before the spinner
            catalog.ensure(name, reporter=catalog.RichReporter(err), announce=catalog.announce)
    with err.status("loading models…"):
        small_m = load_model(small, dtype=dtype) if needs_small else None
        big_m = load_model(big, dtype=dtype) if needs_big else None
    return small_m, big_m
