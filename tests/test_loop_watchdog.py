"""The loop watchdog: a blocked event loop is logged with where it is stuck, and its
recovery too; a loop that keeps running is never reported."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bot.loop_watchdog import LoopWatchdog


def _hold_the_loop(seconds: float) -> None:
    # Stands for a write() the kernel holds while the disk stalls.
    time.sleep(seconds)


async def test_a_blocked_loop_is_reported_with_its_stack_then_its_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tickler.loop")
    watchdog = LoopWatchdog(threshold=0.3, interval=0.05)
    watchdog.start()
    try:
        await asyncio.sleep(0.2)
        _hold_the_loop(0.8)
        await asyncio.sleep(0.3)
    finally:
        watchdog.stop()
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
    caplog.set_level(logging.INFO, logger="tickler.loop")
    # A threshold well above the steps: a busy CI machine may delay a turn a little.
    watchdog = LoopWatchdog(threshold=1.0, interval=0.05)
    watchdog.start()
    try:
        for _ in range(20):
            _hold_the_loop(0.05)  # short steps, each well under the threshold
            await asyncio.sleep(0.01)
    finally:
        watchdog.stop()
    assert [r for r in caplog.records if r.name == "tickler.loop"] == []
