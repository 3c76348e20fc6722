"""The loop watchdog: a blocked event loop is logged with where it is stuck, and its
recovery too; a loop that keeps running is never reported."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import pytest

from bot.loop_watchdog import LoopWatchdog


def _hold_the_loop(seconds: float) -> None:
    # Stands for a write() the kernel holds while the disk stalls.
    time.sleep(seconds)


@contextlib.asynccontextmanager
async def watched(caplog: pytest.LogCaptureFixture, threshold: float) -> AsyncIterator[None]:
    caplog.set_level(logging.INFO, logger="tickler.loop")
    watchdog = LoopWatchdog(threshold=threshold, interval=0.05)
    watchdog.start()
    try:
        yield
    finally:
        watchdog.stop()


async def test_a_blocked_loop_is_reported_with_its_stack_then_its_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with watched(caplog, threshold=0.3):
        await asyncio.sleep(0.2)
        _hold_the_loop(0.8)
        await asyncio.sleep(0.3)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith("the event loop is blocked")
    assert "_hold_the_loop" in warnings[0].__dict__["stack"]
    assert warnings[0].__dict__["seconds"] >= 0.3
    recovered = [r for r in caplog.records if r.getMessage() == "the event loop runs again"]
    assert len(recovered) == 1
    assert 0.6 <= recovered[0].__dict__["seconds"] <= 1.5


async def test_a_loop_that_keeps_running_is_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A threshold well above the steps: a busy CI machine may delay a turn a little.
    async with watched(caplog, threshold=1.0):
        for _ in range(20):
            _hold_the_loop(0.05)  # short steps, each well under the threshold
            await asyncio.sleep(0.01)
    assert [r for r in caplog.records if r.name == "tickler.loop"] == []
