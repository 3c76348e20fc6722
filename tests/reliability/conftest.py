"""The reliability suite: every test here is marked `reliability` (the quick run skips
them with `-m "not reliability"`), and the figures they tally are printed at the end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reliability.figures import tally

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.reliability)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not tally:
        return
    terminalreporter.section("reliability figures")
    terminalreporter.write_line(tally.render())
    out = os.environ.get("TICKLER_RELIABILITY_FIGURES")
    if out:
        tally.write_json(Path(out))
