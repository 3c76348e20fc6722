"""The accelerated test clock (TICKLER_TEST_CLOCK) that the reliability suite runs whole
processes on: its arithmetic, its sleeping, and how a malformed value is refused."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from adapters.clocks import AcceleratedClock, SystemClock, parse_test_clock
from bot.runtime import build_clock
from bot.settings import ConfigError, load_settings

ORIGIN = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
BASE = {"AGENT_URL": "http://127.0.0.1:9/hook"}


class Wall:
    """A real clock the test moves by hand."""

    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def test_fake_time_runs_speed_times_faster_from_the_fixed_origin() -> None:
    wall = Wall(1000.0)
    clock = AcceleratedClock(ORIGIN, 990.0, 600, real=wall)
    assert clock.now() == ORIGIN + timedelta(minutes=100)  # 10 real s before "now"
    wall.at += 1.5
    assert clock.now() == ORIGIN + timedelta(minutes=115)
    # A restart builds a new clock from the same spec: the same instant, not a reset.
    again = parse_test_clock(clock.spec())
    assert again.at_real(wall.at) == clock.now()


async def test_sleep_until_sleeps_the_scaled_real_delay_or_until_woken() -> None:
    clock = AcceleratedClock(ORIGIN, time.time(), 3600)  # an hour per real second
    never = asyncio.Event()
    started = time.monotonic()
    await clock.sleep_until(clock.now() + timedelta(minutes=6), never)  # 0.1 s real
    slept = time.monotonic() - started
    assert 0.05 < slept < 5
    wake = asyncio.Event()
    wake.set()
    started = time.monotonic()
    await clock.sleep_until(clock.now() + timedelta(days=365), wake)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("soon", "must look like 2026-11-23T07:00:00Z@1795503600.0x600"),
        ("2026-11-23T07:00:00@1795503600x600", "its fake start needs a zone"),
        ("2026-11-23T07:00:00Z@1795503600x0", "its speed must be a number above 0"),
        ("2026-13-23T07:00:00Z@1795503600x60", "must look like"),
    ],
)
def test_a_malformed_test_clock_stops_start_up_with_one_line(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "TICKLER_TEST_CLOCK": spec})
    line = str(caught.value)
    assert line.startswith("Configuration error: TICKLER_TEST_CLOCK: ") and "\n" not in line
    assert message in line


def test_the_process_reads_the_test_clock_only_when_it_is_set() -> None:
    assert isinstance(build_clock(load_settings(BASE)), SystemClock)
    settings = load_settings({**BASE, "TICKLER_TEST_CLOCK": "2026-11-23T07:00:00Z@0x2"})
    clock = build_clock(settings)
    assert isinstance(clock, AcceleratedClock) and clock.speed == 2
    assert clock.now() > ORIGIN + timedelta(days=365)  # two real seconds per one since 1970
