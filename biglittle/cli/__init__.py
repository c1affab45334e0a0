"""The `biglittle` command line: one typer app; each command lives in a module of this package.

    generate  (generate.py)     bench, sweep  (bench.py)     serve  (serve.py)
    router train, tune  (family.py)     models list|pull|path|verify  (models.py)
"""
from __future__ import annotations

import typer

from .bench import bench, sweep
from .family import router_app, tune
from .generate import generate
from .models import app as models_app
from .serve import serve

app = typer.Typer(help="Big–little LLM decoding: a small model writes, a big model checks.",
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
