"""The import direction of the layers (docs/architecture.md), enforced.

    bot  ->  services  ->  scheduler core  <-  storage, adapters

Every import counts: at run time, inside functions, and under TYPE_CHECKING (a
type-level edge is still an edge a reader must follow, and it is how cycles start).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The modules of scheduler/ that are services: they use the core and the protocols
#: and are what the bot calls. Every other module of scheduler/ is the core.
SERVICES = {
    "scheduler.engine",
    "scheduler.service",
    "scheduler.proposals",
    "scheduler.work_items",
    "scheduler.bundles",
    "scheduler.stores",
    "scheduler.agent_tools",
    "scheduler.schedules_file",
    "scheduler.home",
}

#: Which layers each layer may import (itself included).
ALLOWED = {
    "core": {"core"},
    "services": {"services", "core"},
    "storage": {"storage", "core"},
    "adapters": {"adapters", "core"},
    "bot": {"bot", "services", "core", "storage", "adapters", "prompts"},
    "prompts": {"prompts"},
}


def layer(module: str) -> str | None:
    top = module.split(".")[0]
    if top == "scheduler":
        return "services" if module in SERVICES else "core"
    if top in ("storage", "adapters", "bot", "prompts"):
        return top
    return None  # the standard library or a third-party package


def modules() -> dict[str, Path]:
    found = {}
    for package in ("scheduler", "storage", "adapters", "bot", "prompts"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(path: Path, name: str) -> set[str]:
    """Every module `path` imports, wherever the import statement is."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            # `from scheduler import engine` imports the module scheduler.engine.
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def edges() -> list[tuple[str, str]]:
    known = modules()
    found = []
    for name, path in known.items():
        for target in imports_of(path, name):
            if target in known or (layer(target) is not None and target.split(".")[0] != target):
                found.append((name, target))
    return found


def test_every_import_goes_down_the_layers() -> None:
    wrong = [
        f"{source} ({layer(source)}) imports {target} ({layer(target)})"
        for source, target in edges()
        if (to := layer(target)) is not None and to not in ALLOWED[layer(source) or ""]
    ]
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle_among_our_modules() -> None:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for source, target in edges():
        if target in known and target != source:
            graph[source].add(target)
    # Tarjan's strongly connected components: any component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        ("storage.x", "scheduler.models", True),
        ("storage.x", "scheduler.service", False),
        ("scheduler.models", "storage.codec", False),
        ("scheduler.models", "scheduler.engine", False),
        ("scheduler.engine", "adapters.agent_dispatch", False),
        ("bot.app", "storage.sqlite_store", True),
        ("adapters.clocks", "bot.settings", False),
    ],
)
def test_the_rule_itself(source: str, target: str, allowed: bool) -> None:
    """The check would catch each kind of back edge (and lets the right ones through)."""
    src, dst = layer(source), layer(target)
    assert src is not None and dst is not None
    assert (dst in ALLOWED[src]) is allowed
