"""Clocks. The engine reads time only through one of these, so tests can span days
without sleeping."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""

    async def sleep_until(self, deadline: datetime, wake: asyncio.Event) -> None:
        """Return at `deadline` or as soon as `wake` is set, whichever comes first."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, deadline: datetime, wake: asyncio.Event) -> None:
        delay = (deadline - self.now()).total_seconds()
        if delay <= 0 or wake.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=delay)


class FakeClock:
    """A clock that moves only when a test says so; sleepers wake when it passes them."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._moved = asyncio.Condition()

    def now(self) -> datetime:
        return self._now

    async def advance(self, delta: timedelta) -> None:
        await self.set(self._now + delta)

    async def set(self, instant: datetime) -> None:
        self._now = instant.astimezone(UTC)
        async with self._moved:
            self._moved.notify_all()

    async def sleep_until(self, deadline: datetime, wake: asyncio.Event) -> None:
        async def moved_past() -> None:
            async with self._moved:
                await self._moved.wait_for(lambda: self._now >= deadline)

        waiters = [asyncio.ensure_future(moved_past()), asyncio.ensure_future(wake.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
