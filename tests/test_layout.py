"""The shape of the code: modules small enough to hold in one's head, and imports that never go round in a
circle (a cycle is what lazy imports were dodging; each import inside a function counts here too)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"mlm_toolkit": ROOT / "shared", "pt_mlm": ROOT / "pt_mlm", "tf_mlm": ROOT / "tf_mlm"}
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project's modules `path` imports anywhere in its body (`from pkg import name`: pkg.name if a module)."""
    named = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            named.update(f"{node.module}.{alias.name}" for alias in node.names)
            named.add(node.module)
    return {name if name in known else name.rpartition(".")[0] for name in named} & known


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by concern: {long}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A path of imports that comes back to where it started, or None."""
    done, path = set(), []

    def visit(name: str) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        path.append(name)
        for other in sorted(graph[name]):
            if cycle := visit(other):
                return cycle
        path.pop()
        done.add(name)
        return None

    return next((cycle for name in sorted(graph) if (cycle := visit(name))), None)


def test_the_import_graph_has_no_cycles():
    found = modules()
    graph = {name: imports_of(path, set(found)) - {name} for name, path in found.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_lazy_cycle(tmp_path):
    """The check above can fail: two modules importing each other, one inside a function, are a cycle."""
    (tmp_path / "a.py").write_text("import mlm_toolkit.b\n")
    (tmp_path / "b.py").write_text("def f():\n    from mlm_toolkit.a import g\n")
    known = {"mlm_toolkit.a", "mlm_toolkit.b"}
    graph = {name: imports_of(tmp_path / f"{name[-1]}.py", known) for name in known}
    assert find_cycle(graph) == ["mlm_toolkit.a", "mlm_toolkit.b", "mlm_toolkit.a"]
