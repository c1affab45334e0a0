"""The `biglittle` command line: one typer app; each command lives in a module of this package.

    generate  (generate.py)     bench, sweep  (bench.py)     serve  (serve.py)
    router train, tune  (family.py)     models list|pull|path|verify  (models.py)

Ctrl-C and SIGTERM end any command with one line and exit 130 / 143 (interrupt.py); the handler
goes in before anything else is imported, as torch alone takes seconds to import.
"""
from __future__ import annotations

from ..signal_points import pause_point
from . import interrupt

if interrupt.is_entry_point():
    interrupt.install()
    pause_point("imports")  # tests: a signal while the imports below run

import typer  # noqa: E402  (after the handler: see above)

from .bench import bench, sweep  # noqa: E402
from .family import router_app, tune  # noqa: E402
from .generate import generate  # noqa: E402
from .models import app as models_app  # noqa: E402
from .serve import serve  # noqa: E402


class App(typer.Typer):
    """The typer app; run as a program (`app()`), it ends on a signal with one line (see interrupt.py)."""

    def __call__(self, *args, **kwargs):
        interrupt.install()
        with interrupt.catching():
            return super().__call__(*args, **kwargs)


app = App(help="Big–little LLM decoding: a small model writes, a big model checks.",
          no_args_is_help=True, add_completion=False)


@app.callback()
def main_callback():
    """Big–little LLM decoding: a small model writes most tokens, a big model checks and corrects them."""


app.add_typer(models_app, name="models")
app.command()(generate)
app.command("bench")(bench)
app.command("sweep")(sweep)
app.command("serve")(serve)
app.add_typer(router_app, name="router")
app.command("tune")(tune)
