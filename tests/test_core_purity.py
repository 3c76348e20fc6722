"""`scheduler/` is the pure core: no network, database, YAML, file, process or clock
access. Its adapters (adapters/, bot/, storage/) do that and are injected; these tests
keep it so."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "scheduler"

#: Packages the core must import without: the transports, the database drivers, YAML,
#: Telegram and the charting libraries. (`socket` cannot be blocked this way: the
#: standard library imports it under pydantic; the AST check below keeps the core from
#: importing it.)
BLOCKED = (
    "httpx",
    "httpx_aiohttp",
    "aiohttp",
    "pyreqwest",
    "yaml",
    "sqlite3",
    "_sqlite3",
    "aiosqlite",
    "telegram",
    # The /stats chart's drawing stack: bot/stats_chart.py draws, the core only counts.
    "matplotlib",
    "numpy",
    "PIL",
)

#: Modules the core may not import: the OS, processes, the clock, files.
FORBIDDEN_IMPORTS = frozenset(
    {"os", "gc", "socket", "subprocess", "time", "importlib.resources", "pathlib", "shutil"}
)

_IMPORT_ALL = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    BLOCKED = set(sys.argv[1].split(","))

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"the core imported {name}")
            return None

    sys.meta_path.insert(0, Blocker())
    import scheduler

    for info in pkgutil.walk_packages(scheduler.__path__, "scheduler."):
        importlib.import_module(info.name)
        print(info.name)
    """
)


def _import_every_core_module(blocked: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    # A fresh interpreter: this one has imported the adapters already.
    return subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, ",".join(blocked)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_core_module_imports_with_the_adapters_libraries_blocked() -> None:
    done = _import_every_core_module(BLOCKED)
    assert done.returncode == 0, done.stderr
    imported = set(done.stdout.split())
    assert {"scheduler.engine", "scheduler.dispatching", "scheduler.schedules_file"} <= imported
    assert len(imported) == len(list(CORE.glob("*.py"))) - 1  # all but __init__


def test_the_blocker_does_catch_a_blocked_import() -> None:
    """The check above can fail: blocking pydantic, which the core does use, breaks it."""
    done = _import_every_core_module(("pydantic",))
    assert done.returncode != 0
    assert "the core imported pydantic" in done.stderr


def _violations(source: str) -> list[str]:
    """What in `source` reaches the OS, a process, the clock or a file."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        for name in names:
            if name in FORBIDDEN_IMPORTS or name.split(".")[0] in FORBIDDEN_IMPORTS - {
                "importlib.resources"
            }:
                found.append(f"line {getattr(node, 'lineno', 0)}: imports {name}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"open", "__import__"}
        ):
            found.append(f"line {node.lineno}: calls {node.func.id}()")
    return found


def test_no_core_module_touches_the_os_the_clock_or_files() -> None:
    found = {
        path.name: v
        for path in sorted(CORE.glob("*.py"))
        if (v := _violations(path.read_text(encoding="utf-8")))
    }
    assert found == {}


@pytest.mark.parametrize(
    "source",
    [
        "import os",
        "import time",
        "from time import monotonic",
        "import gc",
        "import socket",
        "import subprocess",
        "from importlib import resources",
        "import importlib.resources",
        "from pathlib import Path",
        "text = open('x').read()",
    ],
)
def test_the_check_finds_each_forbidden_access(source: str) -> None:
    assert _violations(source) != []


def test_the_check_leaves_datetime_time_alone() -> None:
    # `time` the type, from datetime, reads no clock.
    assert _violations("from datetime import time, datetime") == []
