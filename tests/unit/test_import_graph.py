"""The package's import graph: no cycles (type-only and function-level imports included), and the core never
imports the UI or the server."""

from __future__ import annotations

import ast
from pathlib import Path

import connector_nb

ROOT = Path(connector_nb.__file__).parent
#: The UI, the server and the front ends sit on top of the core; the core must not reach up to them.
CORE = {"connector", "registry", "template", "literals", "run", "polling", "session", "_engine", "_workers",
        "_display", "journal", "secrets", "frames", "logs", "errors", "transports.base", "transports.local",
        "transports.mock", "transports.grpc"}
UPPER = ("ui", "server", "magics", "cli")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every package module ``path`` imports, wherever the import statement is."""
    here = _module(path).split(".") if path.name != "__init__.py" else [*_module(path).split("."), "x"]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - node.level]
            target = ".".join([*base, *(node.module.split(".") if node.module else [])]).strip(".")
            names = [f"{target}.{a.name}".strip(".") for a in node.names]
            found |= {n for n in names if _exists(n)} or {target}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("connector_nb"):
            found.add(node.module.removeprefix("connector_nb").strip("."))
    return {m for m in found if _exists(m) and m}


def _exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def graph() -> dict[str, set[str]]:
    """module -> modules it imports (the package's own only)."""
    return {_module(p): _imports(p) - {_module(p)} for p in ROOT.rglob("*.py") if _module(p)}


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles():
    cycle = _cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_core_never_imports_ui_or_server():
    bad = {(m, i) for m, deps in graph().items() if m in CORE for i in deps if i.split(".")[0] in UPPER}
    assert not bad, sorted(bad)
