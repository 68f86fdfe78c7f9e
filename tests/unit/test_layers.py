"""The tree is the architecture: packages depend on each other one way only, and the pure
core imports no Kafka, HTTP or faust code. Read from the source (every import, lazy ones
inside functions included), not from what happens to be loaded."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("streams", "localdev")
#: Libraries the pure core must not import.
IO_LIBRARIES = {"aiokafka", "confluent_kafka", "faust", "mode", "httpx", "httpx_aiohttp",
                "aiohttp", "httptools", "yarl", "prometheus_client", "uvloop"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports (absolute names)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return found


def _unit(module: str) -> str:
    """The package-level unit a module belongs to: `streams.delivery.stage` ->
    `streams.delivery`; a loose top-level module is its own unit."""
    return ".".join(module.split(".")[:2])


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for target in _imports(name, path):
            if target in modules and _unit(target) != _unit(name):
                graph[_unit(name)].add(_unit(target))
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_package_depends_on_itself_through_another() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_checker_sees_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


def test_the_core_imports_no_kafka_http_or_faust() -> None:
    modules = _modules()
    for name, path in modules.items():
        if _unit(name) in ("streams.core", "streams.settings"):
            libraries = {target.split(".")[0] for target in _imports(name, path)}
            assert not libraries & IO_LIBRARIES, (name, libraries & IO_LIBRARIES)
            inside = {_unit(t) for t in _imports(name, path) if t in modules}
            assert inside <= {"streams.core", "streams.settings", "streams"}, (name, inside)


def test_the_runtime_package_does_not_need_the_development_tools() -> None:
    for name, path in _modules().items():
        if name.startswith("streams.") and not name.startswith("streams.cli"):
            assert not any(t.startswith("localdev") for t in _imports(name, path)), name
