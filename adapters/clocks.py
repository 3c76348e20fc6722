"""The clocks behind the core's `Clock` protocol (scheduler/clock.py): the system's,
the accelerated fake clock of whole-process tests, and the fake clock that moves only
when a test (or the bench) says so."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["AcceleratedClock", "FakeClock", "SystemClock", "parse_test_clock"]


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: datetime, wake: asyncio.Event) -> None:
        delay = (deadline - self.now()).total_seconds()
        if delay <= 0 or wake.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=delay)


class AcceleratedClock:
    """Fake time that runs `speed` times faster than real time, for tests of a whole
    process (`TICKLER_TEST_CLOCK`): now = origin_fake + (time.time() - origin_real) *
    speed. The origin is fixed by the test, not by the process, so the fake time goes on
    moving forward consistently across a kill and a restart, and the test process reads
    the same instant as the process under test."""

    def __init__(
        self,
        origin_fake: datetime,
        origin_real: float,
        speed: float,
        *,
        real: Callable[[], float] = time.time,
    ) -> None:
        if origin_fake.tzinfo is None:
            raise ValueError("AcceleratedClock needs an aware datetime")
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError("the speed of an accelerated clock must be a positive number")
        self.origin_fake = origin_fake.astimezone(UTC)
        self.origin_real = origin_real
        self.speed = speed
        self._real = real

    def now(self) -> datetime:
        elapsed = (self._real() - self.origin_real) * self.speed
        return self.origin_fake + timedelta(seconds=elapsed)

    def monotonic(self) -> float:
        # Durations are real seconds, as the ledger and the metrics report them.
        return time.monotonic()

    def at_real(self, real: float) -> datetime:
        """The fake instant that corresponds to the real epoch time `real`."""
        return self.origin_fake + timedelta(seconds=(real - self.origin_real) * self.speed)

    async def sleep_until(self, deadline: datetime, wake: asyncio.Event) -> None:
        delay = (deadline - self.now()).total_seconds() / self.speed
        if delay <= 0 or wake.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=delay)

    def spec(self) -> str:
        """This clock as a `TICKLER_TEST_CLOCK` value (see `parse_test_clock`)."""
        origin = self.origin_fake.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return f"{origin}@{self.origin_real!r}x{self.speed!r}"


_TEST_CLOCK = re.compile(r"(?P<fake>[^@]+)@(?P<real>[0-9]+(?:\.[0-9]*)?)x(?P<speed>[0-9.]+)")


def parse_test_clock(spec: str) -> AcceleratedClock:
    """`2026-11-23T07:00:00Z@1795503600.25x600`: fake origin (ISO-8601 with a zone), the
    real epoch second it corresponds to, and the speed. For tests only. ValueError with
    one sentence if malformed."""
    usage = (
        "must look like 2026-11-23T07:00:00Z@1795503600.0x600 "
        "(fake start @ real epoch seconds x speed)"
    )
    match = _TEST_CLOCK.fullmatch(spec.strip())
    if match is None:
        raise ValueError(usage)
    try:
        origin = datetime.fromisoformat(match["fake"])
        speed = float(match["speed"])
    except ValueError:
        raise ValueError(usage) from None
    if origin.tzinfo is None:
        raise ValueError("its fake start needs a zone, e.g. 2026-11-23T07:00:00Z")
    if not (math.isfinite(speed) and 0 < speed <= 100_000):
        raise ValueError("its speed must be a number above 0 and at most 100000")
    return AcceleratedClock(origin, float(match["real"]), speed)


class FakeClock:
    """A clock that moves only when a test says so; sleepers wake when it passes them."""

    def __init__(self, start: datetime, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._moved = asyncio.Condition()
        self._monotonic = monotonic

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        """Real seconds by default: a run's duration is how long the attempt took, which
        a test that never advances the clock still wants to see."""
        return self._monotonic()

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
