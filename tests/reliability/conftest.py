"""The reliability suite: every test here is marked `reliability` (the quick run skips
them with `-m "not reliability"`), and the figures they tally are printed at the end
(tests/conftest.py, which also gathers them from the xdist workers)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


# First: xdist's own hook reads the group mark to send the group to one worker.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.reliability)
            # One worker runs them all, one at a time, as without xdist: they kill
            # processes and run fake clocks against real time, and two at once would
            # each get half the CPU they were sized for.
            item.add_marker(pytest.mark.xdist_group("reliability"))
