"""What every command shares: the consoles, how an error ends a command, loading the models, and
writing output files whole."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.text import Text

from ..errors import BigLittleError, ConfigError, ModelSpecError, VocabMismatchError
from ..signal_points import pause_point
from .interrupt import register_temp, unregister_temp

# soft_wrap: a line is never broken at the console's width, so pipes and logs get whole lines
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

CONTEXT_HELP = ("Context window in tokens (prompt + answer). Default: the model's training context "
                "(32,768 for the default pair), capped so that a llama.cpp model's KV cache takes at most "
                "1/8 of this machine's memory.")
DEVICE_HELP = ("Where the models run: auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps. "
               "Transformers models move there; a llama.cpp model offloads every layer to a GPU (none on cpu).")
SMALL_DEVICE_HELP = "The small model's device, if not --device's (e.g. --small-device cpu --big-device cuda)."
BIG_DEVICE_HELP = "The big model's device, if not --device's."


def fail(message: str, code: int = 2):
    """Print one red error line on stderr and end the command with `code`."""
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def note(message: str) -> None:
    """A dim line on stderr: something the user should know, not an error."""
    err.print(f"[dim]{message}[/]")


@contextmanager
def user_errors():
    """A library error (bad settings, models or prompts; all are ValueErrors) ends the command with
    one error line and exit 2, instead of a traceback."""
    try:
        yield
    except (BigLittleError, ValueError) as e:
        fail(str(e))


# ---------------------------------------------------------------- models

def catalog_name(spec: Optional[str]) -> Optional[str]:
    """The catalog model a spec names ("qwen2.5-coder-0.5b", "gguf:<name>", "hf-gguf:<name>"), if any."""
    from .. import catalog

    if not spec:
        return None
    prefix, sep, rest = spec.partition(":")
    name = rest if sep and prefix in ("gguf", "hf-gguf") else spec
    return name if name in catalog.MODELS else None


def with_defaults(small: Optional[str], big: Optional[str], needs_small: bool, needs_big: bool):
    """Fill in what the command needs and was not given from the default pair, saying which."""
    from .. import catalog

    pair = catalog.get_pair(catalog.DEFAULT_PAIR)
    default = {"small": f"{pair.backends[0]}:{pair.small}", "big": f"{pair.backends[1]}:{pair.big}"}
    missing = [side for side, spec, need in (("small", small, needs_small), ("big", big, needs_big)) if need and not spec]
    if len(missing) == 2:
        note(f"using the default pair {pair.name!r}: --small {default['small']} --big {default['big']}")
    elif missing:
        side = missing[0]
        note(f"no --{side} given: using --{side} {default[side]} (the {side} model of the default pair {pair.name!r})")
    return (small or (default["small"] if "small" in missing else None),
            big or (default["big"] if "big" in missing else None))


def check_spec(spec: str) -> None:
    """A path given without its backend prefix: say which spec was probably meant."""
    from .. import catalog

    if ":" in spec or spec in catalog.MODELS or spec in catalog.PAIRS:
        return
    if spec.lower().endswith(".gguf"):
        raise ModelSpecError(f"unknown model spec {spec!r}: did you mean gguf:{spec}?")
    if os.path.isdir(spec):
        raise ModelSpecError(f"unknown model spec {spec!r}: did you mean hf:{spec}?")


def check_catalog_pair(small: Optional[str], big: Optional[str]) -> None:
    """Two catalog models with different tokenizers: refuse before anything is downloaded."""
    from .. import catalog

    names = [catalog_name(small), catalog_name(big)]
    if None in names:
        return
    s, b = (catalog.MODELS[n] for n in names)
    if s.tokenizer != b.tokenizer:
        raise VocabMismatchError(
            f"{s.name} ({s.tokenizer} tokenizer) and {b.name} ({b.tokenizer} tokenizer) do not share a "
            "tokenizer, and big–little decoding needs one; nothing was downloaded")


def load_one(spec: str, dtype: str, context: Optional[int], verbose: bool, device: Optional[str] = "auto",
             sequences: Optional[int] = None):
    """One model; `context` sets a llama.cpp model's window, and caps the others' (never past what they
    were trained on); `sequences` sets a llama.cpp model's n_seq."""
    from .. import catalog
    from ..models import load_model

    if spec.startswith("gguf:") or spec in catalog.MODELS:  # llama.cpp (a bare catalog name means gguf:)
        extra = {"n_seq": sequences} if sequences else {}
        return load_model(spec, dtype=dtype, n_ctx=context, verbose=verbose, device=device, **extra)
    model = load_model(spec, dtype=dtype, device=device)
    if context:
        if model.context_length and context > model.context_length:
            raise ConfigError(f"--context {context} is beyond {spec}'s context of {model.context_length} tokens")
        model.context_length = context
    return model


def load_pair(small: Optional[str], big: Optional[str], needs_small: bool, needs_big: bool, dtype: str,
              context: Optional[int] = None, verbose: bool = False, devices: tuple = ("auto", None, None),
              sequences: Optional[int] = None):
    """Load the models a command needs, with a spinner (loading can take a while); the other one is None.
    devices: (--device, --small-device, --big-device); a side's own device wins over --device.
    sequences: how many sessions of a llama.cpp model keep their own KV state at once (the server's jobs)."""
    from .. import catalog

    if context is not None and context < 1:
        raise ConfigError(f"--context must be ≥ 1, got {context}")
    small, big = with_defaults(small, big, needs_small, needs_big)
    small, big = (small if needs_small else None), (big if needs_big else None)
    for spec in (small, big):
        if spec:
            check_spec(spec)
    check_catalog_pair(small, big)
    for spec in (small, big):
        if catalog_name(spec):  # fetch on first use, with progress bars, before the spinner
            catalog.ensure(catalog_name(spec), reporter=catalog.RichReporter(err), announce=catalog.announce)
    with err.status("loading models…"):
        pause_point("model-load")
        small_m = load_one(small, dtype, context, verbose, devices[1] or devices[0], sequences) if small else None
        big_m = load_one(big, dtype, context, verbose, devices[2] or devices[0], sequences) if big else None
    return small_m, big_m


# ---------------------------------------------------------------- output

def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A rich table on a terminal; elsewhere (a pipe, a log) tab-separated lines under a header
    line, whole and without markup, so that scripts can read them."""
    from rich.table import Table

    if out.is_terminal:
        table = Table(title=title)
        for col in columns:
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        out.print(table)
        return
    print("\t".join(columns))
    for row in rows:
        print("\t".join(Text.from_markup(cell).plain for cell in row))


@contextmanager
def atomic_file(final: str | os.PathLike):
    """A temporary path beside `final` to write to; it becomes `final` when the block ends well and
    is removed otherwise (also on Ctrl-C): never a half-written file under the final name."""
    final = Path(final)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.partial")
    register_temp(tmp)
    try:
        yield tmp
        pause_point("write-partial")
        os.replace(tmp, final)
    finally:
        unregister_temp(tmp)
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(final: str | os.PathLike):
    """A temporary folder inside `final`; its files move into `final` (each os.replace) when the
    block ends well; it is removed otherwise (also on Ctrl-C)."""
    final = Path(final)
    final.mkdir(parents=True, exist_ok=True)
    tmp = final / f".partial-{os.getpid()}"
    register_temp(tmp)
    try:
        yield tmp
        pause_point("write-partial")
        for f in tmp.iterdir():
            os.replace(f, final / f.name)
    finally:
        unregister_temp(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def check_utf8(path: str, option: str) -> None:
    """A text file that is not UTF-8: a ConfigError naming the option, the file and the line."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return  # the reader says what is wrong with it
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{option} {path}:{line}: not UTF-8 text (byte {data[e.start]:#04x}); "
                          "save the file as UTF-8") from None
