"""scheduler/ has no import cycle among its modules, counting imports made only under
TYPE_CHECKING: a cycle there is how the proposal service once ended up imported by
storage."""

from __future__ import annotations

import ast
from pathlib import Path

SCHEDULER = Path(__file__).resolve().parent.parent / "scheduler"


def _graph() -> dict[str, set[str]]:
    modules = {path.stem: path for path in SCHEDULER.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "scheduler":
                    found.update(alias.name for alias in node.names)
                elif node.module.startswith("scheduler."):
                    found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found.update(
                    alias.name.split(".")[1]
                    for alias in node.names
                    if alias.name.startswith("scheduler.")
                )
        graph[name] = {dep for dep in found if dep in modules and dep != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_scheduler_modules_import_one_another_without_a_cycle() -> None:
    assert _cycle(_graph()) is None


def test_the_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_storage_reads_the_proposal_model_not_the_proposal_service() -> None:
    storage = SCHEDULER.parent / "storage"
    for path in storage.glob("*.py"):
        assert "scheduler.proposals import" not in path.read_text(encoding="utf-8"), path.name
