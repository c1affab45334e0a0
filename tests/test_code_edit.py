"""The code-edit task: standard-library functions read at run time, their edits, the parse metric,
and the bench reporting that metric for a task without references."""
import ast
import importlib
import inspect
import re

import pytest

from biglittle.bench.methods import parse_method
from biglittle.bench.runner import BenchConfig, run_bench
from biglittle.data import DataError, get_task
from biglittle.data.code_edit import EDITS, FUNCTIONS, build_items, edit_items
from biglittle.data.metrics import code_block, code_block_parses
from biglittle.data.tasks import CodeEditTask, CodeTask


@pytest.fixture(scope="module")
def task():
    return get_task("code-edit")


def test_loads_n_examples_deterministically(task):
    every = task.load()
    assert len(every) == len(FUNCTIONS)          # this interpreter has every listed function
    assert len({e.id for e in every}) == len(every)
    a, b, c = task.load(12, seed=0), task.load(12, seed=0), task.load(12, seed=1)
    assert len(a) == 12 and [e.id for e in a] == [e.id for e in b] != [e.id for e in c]
    for e in a:
        assert re.fullmatch(r"[a-z0-9_.]+\.\w+:(" + "|".join(EDITS) + ")", e.id)
        assert e.reference is None
        assert e.prompt == task.build_prompt(e, chat=False) and e.messages == task.build_prompt(e, chat=True)


def test_prompts_hold_the_function_source_verbatim(task):
    for e in task.load():
        fn = getattr(importlib.import_module(e.meta["module"]), e.meta["function"])
        source = inspect.getsource(fn).rstrip("\n")
        chat = e.messages[0]["content"]
        assert f"```python\n{source}\n```\n" in chat and f"```python\n{source}\n```\n" in e.prompt
        assert chat.endswith("in one ```python code block and nothing else.")
        assert e.prompt.endswith("```python\n")            # a plain model answers inside the opened block
        assert 10 <= source.count("\n") + 1 <= 40


def test_instructions_cycle_and_fit_their_function():
    items = edit_items()
    assert [it.edit for it in items] == [EDITS[i % len(EDITS)] for i in range(len(items))]
    for it in items:
        fn = ast.parse(it.code).body[0]
        if it.edit == "rename":   # the parameter named exists, and the new name does not yet
            old, new = re.search(r"`(\w+)` to `(\w+)`", it.instruction).groups()
            assert old in inspect.signature(getattr(importlib.import_module(it.module), it.function)).parameters
            assert new not in it.code
        elif it.edit == "quotes":  # the quote style it asks to change occurs outside the docstring
            quote = "'" if "single-quoted" in it.instruction else '"'
            assert quote in re.sub(r"(\"\"\"|\'\'\').*?\1", "", it.code, flags=re.S), it.id
        elif it.edit == "docstring":
            has_doc = ast.get_docstring(fn) is not None
            assert it.instruction.startswith("Rewrite" if has_doc else "Add")
        assert it.instruction.endswith("Change nothing else.")
    assert {it.edit for it in items} == set(EDITS)
    directions = {"single-quoted" in it.instruction for it in items if it.edit == "quotes"}
    assert directions == {True, False}   # both quote directions occur


def test_missing_functions_are_skipped_and_counted():
    wanted = (("no_such_module_xyz", "f"), ("textwrap", "indent"), ("calendar", "isleap"), ("textwrap", "nope"))
    items, skipped = build_items(wanted)
    assert [it.id for it in items] == ["textwrap.indent:rename"]     # the edit follows the list position
    assert len(skipped) == 3 and skipped[0].startswith("no_such_module_xyz.f: import failed")
    assert "3 lines, outside 10-40" in skipped[1] and "textwrap.nope" in skipped[2]
    with pytest.warns(UserWarning, match=r"3 of 4 standard-library functions skipped .* 1 left"):
        assert len(edit_items(wanted)) == 1
    with pytest.raises(DataError), pytest.warns(UserWarning, match="1 of 1"):
        edit_items((("no_such_module_xyz", "g"),))


FUNC = "def f(x):\n    return x + 1"


@pytest.mark.parametrize("output, code, ok", [
    (f"Here it is:\n```python\n{FUNC}\n```\nDone.", FUNC, True),
    (f"```py\n{FUNC}\n```\n```python\nnot python\n```", FUNC, True),        # the first tagged block
    (f"```\n{FUNC}\n```", FUNC, True),                                        # a bare block
    (f"{FUNC}\n```\nSome words after the block.", FUNC, True),               # plain prompt opened the block
    (FUNC, FUNC, True),                                                       # no block: the whole text
    (f"```python\n    {FUNC.replace(chr(10), chr(10) + '    ')}\n```", FUNC, True),   # indented block
    ("```python\ndef f(x:\n    return x\n```", "def f(x:\n    return x", False),
    ("```python\ndef f(x):\n    return [x", "def f(x):\n    return [x", False),   # cut off, never closed
    ("I changed the quotes as asked.", "I changed the quotes as asked.", False),  # no code at all
    ("```python\n```", "", False),                                                 # empty block
])
def test_code_block_and_parses(output, code, ok):
    assert code_block(output) == code
    assert code_block_parses([output]) == {"parses": 100.0 if ok else 0.0}


def test_metric_on_a_batch_needs_no_references(task):
    outs = [f"```python\n{FUNC}\n```", "```python\ndef f(:\n```", "no code", f"```python\n{FUNC}\n```"]
    assert task.metric(outs, [None] * 4) == {"parses": 50.0}
    with pytest.raises(ValueError):
        code_block_parses([])


class ShortEdits(CodeEditTask):
    """code-edit's prompts and metric on two short functions: the tiny test models see 512 positions."""

    def _records(self, n, seed):
        return [(f"short-{i}", f"Here is a Python function:\n```python\n{src}\n```\nAdd type hints.", None, {})
                for i, src in enumerate(["def f(x):\n    return x", "def g(a, b):\n    return a * b"])][:n]


def test_bench_reports_parses_for_a_task_without_references(text_pair):
    small, big = text_pair
    specs = ["big", "small", "prompt-lookup"]
    config = BenchConfig(small.spec, big.spec, ["code-edit", "code"], specs, n=2, max_new_tokens=8, chat=False,
                         warmup=False)
    rows, samples = run_bench(config, small, big, [ShortEdits(), CodeTask()], [parse_method(s) for s in specs],
                              show_progress=False)
    edit_rows = {r["method"]: r for r in rows if r["task"] == "code-edit"}
    for spec in specs:
        texts = [s.text or "" for s in samples if s.task == "code-edit" and s.method == spec]
        assert edit_rows[spec]["quality"] == code_block_parses(texts)
        delta = edit_rows[spec]["quality"]["parses"] - edit_rows["big"]["quality"]["parses"]
        assert edit_rows[spec]["quality_delta"] == {"parses": delta}
    assert edit_rows["prompt-lookup"]["quality_delta"] == {"parses": 0.0}   # lossless: big's own text
    # the code task keeps needing references for a metric: it has none, so no quality figures
    assert all(r["quality"] == {} and r["quality_delta"] == {} for r in rows if r["task"] == "code")
