"""The import graph keeps to the data flow: `actionparty_env` (the runtime) imports neither `training`
nor `benchmarks`, `training` never imports `benchmarks`, and no module imports one that imports it
back, through any chain.

Every module of the three packages is read with `ast` (nothing is imported). An edge is any import
statement anywhere in a module (top level, inside a function, under `if __name__ == "__main__"`):
`import x.y`, `from x import y` (to the submodule x.y where there is one), relative imports, and
`importlib.import_module("x")` with a string literal; the CLI's registry (`COMMANDS` in
actionparty_env/cli.py) adds an edge to each module it names. The registry is the one sanctioned way
the runtime reaches the development packages (it lists a command only where its package imports), so
its edges count for circles but not for the layer rule. Importing a submodule also runs its
package's `__init__`; those implicit edges are not counted (the packages' `__init__` import nothing
of the others).
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("actionparty_env", "training", "benchmarks")
# Which stage may import which (a stage always imports itself).
MAY_IMPORT = {"actionparty_env": {"actionparty_env"},
              "training": {"actionparty_env", "training"},
              "benchmarks": {"actionparty_env", "training", "benchmarks"}}
REGISTRY = ("actionparty_env.cli", "COMMANDS")


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the three packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: set[str]) -> str | None:
    """The module of ours that an import of `name` loads (its longest known prefix), or None."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in modules:
            return ".".join(parts[:k])
    return None


def imports_of(module: str, source: str, modules: set[str], is_package: bool = False) -> dict[str, str]:
    """{imported module of ours: "import" or "registry"} for one module's source."""
    tree = ast.parse(source)
    found: dict[str, str] = {}

    def add(name: str | None, kind: str = "import") -> None:
        target = _resolve(name, modules) if name else None
        if target is not None and target != module and found.get(target) != "import":
            found[target] = kind

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            for alias in node.names:
                sub = f"{prefix}.{alias.name}"
                add(sub if sub in modules else prefix)
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name == "import_module" and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                add(node.args[0].value)
    if module == REGISTRY[0]:
        for node in tree.body:
            if not isinstance(node, (ast.Assign, ast.AnnAssign)):
                continue
            target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
            if isinstance(target, ast.Name) and target.id == REGISTRY[1] and isinstance(node.value, ast.Dict):
                for entry in node.value.values:
                    if isinstance(entry, ast.Tuple) and isinstance(entry.elts[0], ast.Constant):
                        add(entry.elts[0].value, "registry")
    return found


def import_graph(root: Path = ROOT) -> dict[str, dict[str, str]]:
    files = module_files(root)
    names = set(files)
    return {m: imports_of(m, p.read_text(), names, p.name == "__init__.py") for m, p in files.items()}


def layer_violations(graph: dict[str, dict[str, str]]) -> list[str]:
    return sorted(f"{m} imports {t}" for m, targets in graph.items() for t, kind in targets.items()
                  if kind == "import" and t.split(".")[0] not in MAY_IMPORT[m.split(".")[0]])


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The circles of imports, each as a path that ends where it starts: in every strongly connected
    component of more than one module (Tarjan's algorithm), the shortest circle through each member,
    each circle once."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, {})):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    out, seen = [], set()
    for component in components:
        for start in component:
            circle = _circle_through(start, set(component), graph)
            turn = circle.index(min(circle[:-1]))
            canonical = tuple(circle[turn:-1] + circle[:turn])
            if canonical not in seen:
                seen.add(canonical)
                out.append(list(canonical) + [canonical[0]])
    return out


def _circle_through(start: str, component: set[str], graph: dict[str, dict[str, str]]) -> list[str]:
    """A shortest path from `start` back to itself inside its strongly connected component."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, {})):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w in component and w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no circle through {start} in {sorted(component)}")


# ---------------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, str]]:
    return import_graph()


def test_the_reader_sees_the_packages_and_their_imports(graph):
    assert {"actionparty_env.cli", "actionparty_env.model.sampler", "training.store",
            "benchmarks.fidelity"} <= set(graph)
    assert graph["benchmarks.fidelity"]["benchmarks.detector"] == "import"  # top level
    assert graph["benchmarks.fidelity"]["training.store"] == "import"  # inside a function
    assert graph["actionparty_env.cli"]["training.record"] == "registry"
    assert graph["actionparty_env.cli"]["actionparty_env.real"] == "import"  # inside real_main


def test_the_runtime_never_imports_training_or_benchmarks_and_training_never_imports_benchmarks(graph):
    bad = layer_violations(graph)
    assert not bad, "imports against the data flow (actionparty_env <- training <- benchmarks):\n" + "\n".join(bad)


def test_no_module_imports_one_that_imports_it_back(graph):
    found = cycles(graph)
    assert not found, "circles of imports:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_checker_names_circles_and_resolves_every_kind_of_import():
    modules = {"a", "a.b", "a.c", "a.d", "e", "e.f"}
    source = ("import e.f\nfrom . import c\nfrom .d import thing\nimport importlib\n"
              "def f():\n    from a import b\n    importlib.import_module('e')\n")
    assert imports_of("a.x", source, modules) == {"e.f": "import", "a.c": "import", "a.d": "import",
                                                  "a.b": "import", "e": "import"}
    graph = {"a": {"b": "import"}, "b": {"c": "import"}, "c": {"a": "registry", "d": "import"}, "d": {"b": "import"}}
    assert cycles(graph) == [["a", "b", "c", "a"], ["b", "c", "d", "b"]]
    assert layer_violations({"actionparty_env.x": {"training.y": "import", "benchmarks.z": "registry"},
                             "training.y": {"benchmarks.z": "import"}}) == \
        ["actionparty_env.x imports training.y", "training.y imports benchmarks.z"]


def test_the_cli_offers_development_commands_only_where_their_packages_import(monkeypatch, capsys):
    from actionparty_env import cli

    assert set(cli.available_commands()) == set(cli.COMMANDS)  # a source checkout has them all
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("training", "benchmarks") else real_find_spec(name, *a))
    runtime = cli.available_commands()
    assert set(runtime) == {n for n, (module, _, _) in cli.COMMANDS.items() if module.startswith("actionparty_env.")}
    assert {"catalog", "real", "play"} <= set(runtime)
    assert cli.main([]) == 0
    listed = {line.split("  ")[1] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert listed == set(runtime)
    assert cli.main(["record", "--out", "x"]) == 2
    assert "development command" in capsys.readouterr().err
