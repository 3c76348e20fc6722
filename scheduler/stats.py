"""/stats: how a chat's schedules have been doing over a recent window.

The figures an operator checks when deciding whether to trust the automation: how many
runs finished and how, how late fires started (fire lag), how long the agent took, and
which schedules fail, and how many tokens the agent used. Computed from the run ledger,
so they survive restarts. The per-day rows feed the /stats chart (bot/stats_chart.py)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from scheduler.clock import Clock
from scheduler.cron import load_zone
from scheduler.errors import InvalidState
from scheduler.models import RunFigure, RunStatus, RunTrigger, Schedule
from scheduler.repositories import RunRepository, ScheduleRepository

__all__ = [
    "DEFAULT_WINDOW",
    "ChatStats",
    "DayFigures",
    "ScheduleFigures",
    "chat_stats",
    "parse_window",
    "percentile",
    "summarise",
]

DEFAULT_WINDOW = timedelta(days=7)
_MAX_WINDOW = timedelta(days=90)
_WINDOW = re.compile(r"^(\d{1,3})([hd])$", re.IGNORECASE)


def parse_window(text: str | None) -> timedelta:
    """`24h`, `7d`, `30d` (default 7d, at most 90 days)."""
    if not text:
        return DEFAULT_WINDOW
    match = _WINDOW.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise InvalidState(f"'{text[:40]}' is not a window; use 24h, 7d or 30d.")
    amount = int(match.group(1))
    window = timedelta(hours=amount) if match.group(2).lower() == "h" else timedelta(days=amount)
    if window > _MAX_WINDOW:
        raise InvalidState("Stats go back at most 90 days; use 90d or less.")
    return window


@dataclass
class ScheduleFigures:
    schedule_id: str
    runs: int = 0
    succeeded: int = 0
    dead: int = 0


@dataclass
class DayFigures:
    """One local calendar day of the window (the chat's zone): a bar of the chart."""

    day: date
    succeeded: int = 0
    #: Dead runs and failed attempts still waiting for a retry.
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    #: Cancelled, and runs not finished yet (pending, running, awaiting approval).
    other: int = 0
    lag_p95: timedelta | None = None
    tokens: int = 0

    @property
    def runs(self) -> int:
        return self.succeeded + self.failed + self.skipped + self.unknown + self.other


_DAY_FIELD = {
    RunStatus.SUCCEEDED: "succeeded",
    RunStatus.DEAD: "failed",
    RunStatus.FAILED: "failed",
    RunStatus.SKIPPED: "skipped",
    RunStatus.UNKNOWN: "unknown",
}


@dataclass
class ChatStats:
    since: datetime
    until: datetime
    by_status: dict[RunStatus, int] = field(default_factory=dict)
    #: Start of dispatch minus the fire instant, for scheduled fires that started.
    lag_p50: timedelta | None = None
    lag_p95: timedelta | None = None
    duration_p50: timedelta | None = None
    duration_max: timedelta | None = None
    schedules: list[ScheduleFigures] = field(default_factory=list)
    #: Tokens the agent reported over the window, and how many runs reported any.
    tokens: int = 0
    token_runs: int = 0
    #: Every local day the window touches, oldest first, empty ones included.
    days: list[DayFigures] = field(default_factory=list)
    #: The chat's schedules now (not archived), by id: names and states for the view.
    current: dict[str, Schedule] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def success_rate(self) -> float | None:
        """Succeeded among runs that ended (succeeded or dead); skips are not failures."""
        ended = self.by_status.get(RunStatus.SUCCEEDED, 0) + self.by_status.get(RunStatus.DEAD, 0)
        if ended == 0:
            return None
        return self.by_status.get(RunStatus.SUCCEEDED, 0) / ended


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _days(since: datetime, until: datetime, zone: ZoneInfo) -> dict[date, DayFigures]:
    first, last = since.astimezone(zone).date(), until.astimezone(zone).date()
    count = (last - first).days + 1
    return {d: DayFigures(d) for d in (first + timedelta(days=n) for n in range(count))}


def summarise(
    figures: Sequence[RunFigure],
    since: datetime,
    until: datetime,
    zone: ZoneInfo | None = None,
) -> ChatStats:
    """The window's figures; days are calendar days in `zone` (UTC by default)."""
    zone = zone or ZoneInfo("UTC")
    stats = ChatStats(since=since, until=until)
    per_schedule: dict[str, ScheduleFigures] = {}
    lags: list[float] = []
    durations: list[float] = []
    days = _days(since, until, zone)
    day_lags: dict[date, list[float]] = {}
    for run in figures:
        day = days.get(run.scheduled_for.astimezone(zone).date())
        if day is not None:
            name = _DAY_FIELD.get(run.status, "other")
            setattr(day, name, getattr(day, name) + 1)
        if run.tokens is not None:
            stats.tokens += run.tokens
            stats.token_runs += 1
            if day is not None:
                day.tokens += run.tokens
        stats.by_status[run.status] = stats.by_status.get(run.status, 0) + 1
        row = per_schedule.setdefault(run.schedule_id, ScheduleFigures(run.schedule_id))
        row.runs += 1
        row.succeeded += run.status is RunStatus.SUCCEEDED
        row.dead += run.status is RunStatus.DEAD
        # Only on-time fires: catch-up and manual runs start late or early by design.
        if run.started_at is not None and run.trigger is RunTrigger.SCHEDULE:
            lag = max(0.0, (run.started_at - run.scheduled_for).total_seconds())
            lags.append(lag)
            if day is not None:
                day_lags.setdefault(day.day, []).append(lag)
        if run.duration_ms is not None and run.status is RunStatus.SUCCEEDED:
            durations.append(run.duration_ms / 1000)
    if lags:
        stats.lag_p50 = timedelta(seconds=percentile(lags, 50))
        stats.lag_p95 = timedelta(seconds=percentile(lags, 95))
    if durations:
        stats.duration_p50 = timedelta(seconds=percentile(durations, 50))
        stats.duration_max = timedelta(seconds=max(durations))
    for key, values in day_lags.items():
        days[key].lag_p95 = timedelta(seconds=percentile(values, 95))
    stats.days = list(days.values())
    # Failing schedules first, then the busiest: what an operator looks at first.
    stats.schedules = sorted(per_schedule.values(), key=lambda s: (-s.dead, -s.runs, s.schedule_id))
    return stats


async def chat_stats(
    runs: RunRepository,
    schedules: ScheduleRepository,
    clock: Clock,
    chat_id: int,
    window: str | None,
    zone: str = "UTC",
) -> ChatStats:
    """The chat's figures over `window` (`24h`, `7d`, `30d`) ending now, by day in `zone`."""
    span = parse_window(window)
    until = clock.now()
    since = until - span
    figures = await runs.figures(chat_id, since, until)
    stats = summarise(figures, since, until, load_zone(zone))
    stats.current = {s.id: s for s in await schedules.list_for_chat(chat_id)}
    return stats
