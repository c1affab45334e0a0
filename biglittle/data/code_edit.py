"""The code-edit task's items: short functions of this interpreter's standard library, each with an edit.

An answer to "add type hints to this function" copies most of its input, which is where drafting
by copying from the prompt (prompt-lookup) should shine. The functions are read with
`inspect.getsource` at run time from the Python that runs biglittle, so no standard-library text
is stored in this repository, and the exact code follows the interpreter's version.

    items = edit_items()        # EditItems in FUNCTIONS order; skipped functions are counted in a warning
    items[0].id                 # "textwrap.indent:hints"
    items[0].request            # "Here is a Python function:\\n```python\\n...\\n```\\nAdd type hints ..."

Each function's edit is fixed by its place in FUNCTIONS (EDITS cycles along the list), so an id
means the same function and edit on every interpreter that has the function.
"""
from __future__ import annotations

import ast
import functools
import importlib
import inspect
import io
import tokenize
import warnings
from dataclasses import dataclass

from .cache import DataError

# (module, function): top-level pure-Python functions of 10-40 lines. The order is the task's
# order and fixes each function's edit (EDITS[i % 5]): the "quotes" slots hold functions with
# one-line string literals (four single-quoted, two double-quoted, so both directions occur) and
# the "docstring" slots mostly functions without a docstring.
FUNCTIONS: tuple[tuple[str, str], ...] = (
    ("textwrap", "indent"), ("shlex", "split"), ("colorsys", "rgb_to_hls"), ("fnmatch", "fnmatch"),
    ("html", "escape"),
    ("string", "capwords"), ("statistics", "median"), ("colorsys", "hsv_to_rgb"),
    ("json.encoder", "py_encode_basestring_ascii"), ("gzip", "decompress"),
    ("statistics", "stdev"), ("glob", "escape"), ("json.decoder", "JSONArray"), ("base64", "b64decode"),
    ("quopri", "unhex"),
    ("ipaddress", "ip_address"), ("fnmatch", "filter"), ("colorsys", "rgb_to_hsv"), ("tarfile", "nti"),
    ("email.utils", "make_msgid"),
    ("shutil", "copyfileobj"), ("textwrap", "shorten"), ("inspect", "formatannotation"),
    ("inspect", "cleandoc"), ("urllib.parse", "unquote"),
    ("ast", "get_docstring"), ("statistics", "covariance"), ("email.utils", "collapse_rfc2231_value"),
    ("tarfile", "itn"), ("types", "resolve_bases"),
)
EDITS = ("hints", "rename", "docstring", "comments", "quotes")
MIN_LINES, MAX_LINES = 10, 40
REPLY = "Reply with the whole edited function in one ```python code block"


@dataclass(frozen=True)
class EditItem:
    id: str              # "module.function:edit"
    module: str
    function: str
    edit: str            # one of EDITS
    code: str            # the function's source as this interpreter has it (no trailing newline)
    instruction: str     # the edit, in words

    @property
    def request(self) -> str:
        """The function and the edit: the task's source text, to which the prompt adds REPLY."""
        return f"Here is a Python function:\n```python\n{self.code}\n```\n{self.instruction}"


def read_function(module: str, name: str) -> tuple[str | None, str]:
    """(source, "") for a top-level pure-Python function of MIN_LINES-MAX_LINES lines, else (None, why not)."""
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # a stdlib module can fail on import for many platform reasons: skip it, never crash
        return None, f"import failed ({type(e).__name__})"
    fn = getattr(mod, name, None)
    if not inspect.isfunction(fn) or fn.__qualname__ != name or fn.__module__ != module:
        return None, "missing or not a top-level Python function"   # e.g. replaced by a C version
    try:
        code = inspect.getsource(fn).rstrip("\n")
    except (OSError, TypeError):
        return None, "no source (frozen or .pyc-only)"
    lines = code.count("\n") + 1
    if not MIN_LINES <= lines <= MAX_LINES:
        return None, f"{lines} lines, outside {MIN_LINES}-{MAX_LINES}"
    if not code.startswith("def ") or not inspect.signature(fn).parameters:
        return None, "decorated, or no parameter to rename"
    return code, ""


def _single_quoted(code: str) -> int:
    """How many one-line string literals in `code` use single quotes (triple-quoted ones are left out)."""
    starts = {tokenize.STRING, getattr(tokenize, "FSTRING_START", tokenize.STRING)}   # f-strings split up from 3.12
    bodies = [t.string.lstrip("rbufRBUF") for t in tokenize.generate_tokens(io.StringIO(code).readline)
              if t.type in starts]
    return sum(b.startswith("'") and not b.startswith("'''") for b in bodies)


def instruction(edit: str, code: str) -> str:
    """The words for `edit` on `code`; each asks to change nothing else, so the answer is mostly a copy."""
    fn = ast.parse(code).body[0]
    if edit == "hints":
        text = "Add type hints to all parameters and to the return value."
    elif edit == "rename":
        a = fn.args
        old = [p.arg for p in a.posonlyargs + a.args + [a.vararg] + a.kwonlyargs + [a.kwarg] if p][0]
        text = f"Rename the parameter `{old}` to `{old}_value` everywhere in the function."
    elif edit == "docstring":
        text = ("Rewrite the docstring in Google style, with Args: and Returns: sections."
                if ast.get_docstring(fn) is not None else
                "Add a Google-style docstring, with Args: and Returns: sections.")
    elif edit == "comments":
        text = "Add a short comment above each block of code saying what it does."
    elif edit == "quotes":
        text = ("Change every single-quoted string literal to double quotes." if _single_quoted(code) else
                "Change every double-quoted string literal, except the docstring, to single quotes.")
    else:
        raise ValueError(f"unknown edit {edit!r}; known: {', '.join(EDITS)}")
    return text + " Change nothing else."


def build_items(functions: tuple[tuple[str, str], ...] = FUNCTIONS) -> tuple[list[EditItem], list[str]]:
    """(items for the functions this interpreter has, "module.function: why" for each one skipped)."""
    items, skipped = [], []
    for i, (module, name) in enumerate(functions):
        code, why = read_function(module, name)
        if code is None:
            skipped.append(f"{module}.{name}: {why}")
            continue
        edit = EDITS[i % len(EDITS)]
        items.append(EditItem(f"{module}.{name}:{edit}", module, name, edit, code, instruction(edit, code)))
    return items, skipped


@functools.lru_cache(maxsize=4)
def edit_items(functions: tuple[tuple[str, str], ...] = FUNCTIONS) -> tuple[EditItem, ...]:
    """The items for `functions` on this interpreter, read once per process; warns with the count of
    skipped functions, and raises DataError when none is left."""
    items, skipped = build_items(functions)
    if skipped:
        warnings.warn(f"code-edit: {len(skipped)} of {len(functions)} standard-library functions skipped on "
                      f"this Python, {len(items)} left: " + "; ".join(skipped), stacklevel=2)
    if not items:
        raise DataError("code-edit: none of its standard-library functions could be read on this Python")
    return tuple(items)
