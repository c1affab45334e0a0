"""The shape of the code: imports run one way (down), no cycles, short modules, no private names
across files, and the library never imports itself by its public name. Reads every module's
imports with `ast`, including imports inside functions (docs/architecture.md, "layers")."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "biglittle"
# Layers, lowest first: a module may import its own layer or lower ones, never a higher one.
LAYERS = [
    ("errors",),
    ("numbers", "files", "tokens", "signal_points"),
    ("catalog", "data"),
    ("models",),
    ("decoding",),
    ("policies",),
    ("generate",),
    ("bench", "tune"),
    ("server", "delay_proxy"),
    ("cli",),
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(name: str, path: pathlib.Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import in the file, nested ones too."""
    found = []
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            found.append((src, [a.name for a in node.names], node.lineno))
    return found


def targets(src: str, names: list[str]) -> list[str]:
    """The project modules an import reaches (`from pkg import module` reaches the module)."""
    subs = [f"{src}.{n}" for n in names if f"{src}.{n}" in MODULES]
    found = subs if subs and len(subs) == len(names) else [src] + subs
    out = []
    for t in found:
        while t and t not in MODULES and "." in t:
            t = t.rsplit(".", 1)[0]
        if t in MODULES:
            out.append(t)
    return out


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYER_OF.get(parts[1]) if len(parts) > 1 else None


GRAPH = {m: {t for src, names, _ in imports(m, p) for t in targets(src, names) if t != m} for m, p in MODULES.items()}


def test_every_module_has_a_layer():
    assert [m for m in MODULES if m != "biglittle" and layer(m) is None] == []


def test_imports_run_down_only():
    upward = [f"{m} ({LAYERS[layer(m)][0]}) imports {t} ({LAYERS[layer(t)][0]})"
              for m, ts in GRAPH.items() if layer(m) is not None
              for t in ts if t != "biglittle" and layer(t) is not None and layer(t) > layer(m)]
    assert upward == []


def test_no_import_cycles():
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in GRAPH[v] - {"biglittle"}:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_library_never_imports_itself_by_its_public_name():
    assert sorted(m for m, ts in GRAPH.items() if m != "biglittle" and "biglittle" in ts) == []


def test_no_private_name_is_imported_from_another_file():
    private = [f"{m}: from {src} import {n}" for m, p in MODULES.items() for src, names, _ in imports(m, p)
               for n in names if src.startswith("biglittle") and n.startswith("_") and not n.startswith("__")
               and f"{src}.{n}" not in MODULES]
    assert private == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_short(module):
    assert len(MODULES[module].read_text().splitlines()) <= 400


def test_the_checker_sees_nested_and_relative_imports(tmp_path):
    """The reader is not vacuous: it finds an import inside a function, relative or absolute."""
    found = imports("biglittle.policies.base", ROOT / "policies" / "base.py")
    assert any(src == "biglittle.decoding.loop" for src, _, _ in found)
    src = "def f():\n    from ..generate import generate\n    import biglittle as bl\n"
    fake = tmp_path / "x.py"
    fake.write_text(src)
    got = imports("biglittle.decoding.x", fake)
    assert ("biglittle.generate", ["generate"], 2) in got and ("biglittle", [], 3) in got
    assert layer("biglittle.generate") > layer("biglittle.decoding.x")
