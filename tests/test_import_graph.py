"""The import graph of firmware_host, kiosk and drivers, read from the source with ast: layers and the office app.

An edge is any import a module can run: at the top, inside a function, or a module named in a string that the
module hands to importlib (the CLI's extra commands, the driver registry). Imports under ``if TYPE_CHECKING:``
are for type checkers only and never run, so they are not edges. Importing ``a.b.c`` runs ``a`` and ``a.b``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("drivers", "firmware_host", "kiosk")
OFFICE = "firmware_host.supervise"

# What the office app (`allervers supervise`) imports of the bus side, module by module: the MQTT client and the
# protocol both ends speak (and firmware_host.mqtt, their package's empty __init__). supervise/cli.py also loads
# the bus's config when given -c, to read its [mqtt] section as the bus validates it.
OFFICE_IMPORTS = {
    "firmware_host.supervise.cli": {
        "firmware_host.subcommands",
        "firmware_host.mqtt",
        "firmware_host.mqtt.client",
        "firmware_host.mqtt.protocol",
    },
    "firmware_host.supervise.fleet": {"firmware_host.mqtt", "firmware_host.mqtt.client", "firmware_host.mqtt.protocol"},
}


def test_the_protocol_and_the_client_import_nothing_of_the_bus_side() -> None:
    edges = graph()
    for name in ("firmware_host.mqtt", "firmware_host.mqtt.protocol", "firmware_host.mqtt.client"):
        assert {t for t in edges[name] if t not in ("firmware_host", "firmware_host.mqtt")} == set(), name


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def _named(name: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".")
    if path.name != "__init__.py":
        base.pop()
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imported(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    dynamic = "import_module" in path.read_text(encoding="utf-8")
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _named(name, path, node)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif dynamic and isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known:
            yield node.value


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target in _imported(name, path, known):
            while target and target not in known:  # ``from pkg.mod import function``: the module is pkg.mod
                target = target.rpartition(".")[0]
            while target:  # and importing it runs every package above it
                if target != name and not name.startswith(target + "."):
                    edges[name].add(target)
                target = target.rpartition(".")[0]
    return edges


def circles(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def package(name: str) -> str:
    return name.partition(".")[0]


def test_the_graph_sees_imports_of_every_kind() -> None:
    edges = graph()
    assert "firmware_host.store" in edges["firmware_host.controller"]  # top level, relative
    assert "drivers.scenario" in edges["firmware_host.controller"]  # inside a function
    assert "kiosk.cli" in edges["firmware_host.cli"]  # a module named for importlib
    assert "firmware_host.controller" not in edges["kiosk.session"]  # for type checkers only
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_drivers_import_nothing_of_the_layers_above() -> None:
    above = {
        (name, target)
        for name, targets in graph().items()
        if package(name) == "drivers"
        for target in targets
        if package(target) != "drivers"
    }
    assert above == set()


def test_no_circle_across_the_packages() -> None:
    across = [sorted(c) for c in circles(graph()) if len({package(name) for name in c}) > 1]
    assert across == []


def test_the_office_app_imports_only_what_is_listed_of_the_bus_side() -> None:
    bus_side = {
        name: {t for t in targets if not t.startswith(OFFICE) and t != "firmware_host"}
        for name, targets in graph().items()
        if name.startswith(OFFICE)
    }
    assert {name: targets for name, targets in bus_side.items() if targets} == OFFICE_IMPORTS
