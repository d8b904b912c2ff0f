"""The shape of ``hercules_core``: no import circle, small modules, and every module importable.

The import graph is read from the source (``ast``), so a circle closed by an import inside a
function counts too: it is the same tangle, only deferred. Imports under ``if TYPE_CHECKING:``
do not run and are left out (they are how an interface is named in a type without a circle).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import hercules_core

CORE = Path(hercules_core.__file__).resolve().parent
MAX_LINES = 450
# Modules allowed over the limit while being split (path -> why); every split of issue 11 has
# landed. A module that is back within the limit must leave the list.
BEING_SPLIT: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(CORE.rglob("*.py")):
        parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (i for child in node.orelse for i in _imports_of(child))
            continue
        yield from _imports_of(node)


def _imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _imports(node)


def import_graph() -> dict[str, set[str]]:
    """Module -> the ``hercules_core`` modules it imports (``from pkg import sub`` names ``pkg.sub``)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str | None] = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(resolve(alias.name) for alias in node.names)
                continue
            base = node.module or ""
            if node.level:
                kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(kept + ([node.module] if node.module else []))
            targets.update(resolve(f"{base}.{alias.name}") for alias in node.names)
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_circle_and_accepts_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_graph_sees_deferred_and_package_imports() -> None:
    graph = import_graph()
    assert "hercules_core.plugins.manager" in graph["hercules_core.plugins"]  # from pkg.mod import name
    assert "hercules_core.roles" in graph["hercules_core.cli.admin"]  # inside cmd_serve


def test_hercules_core_has_no_import_circle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_no_module_in_hercules_core_is_over_the_line_limit() -> None:
    too_long = {}
    for path in _modules().values():
        rel = path.relative_to(CORE.parent).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES and rel not in BEING_SPLIT:
            too_long[rel] = lines
    assert too_long == {}, f"modules over {MAX_LINES} lines (split them by concern): {too_long}"
    stale = [rel for rel in BEING_SPLIT
             if not (CORE.parent / rel).exists() or len((CORE.parent / rel).read_text().splitlines()) <= MAX_LINES]
    assert stale == [], f"split already, drop them from BEING_SPLIT: {stale}"


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    """In reverse order, so that no module leans on another having been imported first
    (``__main__`` is left out: importing it runs the command)."""
    names = sorted((name for name in _modules() if not name.endswith(".__main__")), reverse=True)
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    proc = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_benchmark_is_not_in_the_core_package() -> None:
    assert not (CORE / "bench").exists()
    assert not any(name.startswith("hercules_core.bench") for name in _modules())
    ignored = (CORE.parent / ".dockerignore").read_text().splitlines()
    assert "plugins/bench" in ignored  # nor do the images: it is not even in their build context


def test_each_role_has_its_own_start_function_in_its_own_package() -> None:
    from hercules_core.config import ROLES
    from hercules_core.roles import STARTERS, starter

    assert set(STARTERS) == set(ROLES)
    for role in ROLES:
        fn = starter(role)
        assert fn.__module__ == f"hercules_core.{role}.role", role
        assert fn.__name__ == f"start_{role}"
