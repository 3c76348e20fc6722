"""The /stats message."""

from __future__ import annotations

from datetime import timedelta

from bot.render import esc, status_word
from scheduler.models import RunStatus
from scheduler.stats import ChatStats

__all__ = [
    "chart_caption",
    "chart_failed_text",
    "more_schedules",
    "schedule_lines",
    "stats_heading",
    "stats_lines",
    "stats_text",
]

#: Schedules listed by name under the totals (failing ones first).
SCHEDULES_SHOWN = 8

_ORDER = (
    RunStatus.SUCCEEDED,
    RunStatus.DEAD,
    RunStatus.SKIPPED,
    RunStatus.UNKNOWN,
    RunStatus.CANCELLED,
    RunStatus.FAILED,
    RunStatus.RUNNING,
    RunStatus.PENDING,
    RunStatus.AWAITING_APPROVAL,
)


def _span(window: timedelta) -> str:
    hours = round(window.total_seconds() / 3600)
    return f"{hours} hours" if hours < 48 else f"{hours // 24} days"


def _seconds(value: timedelta | None) -> str:
    if value is None:
        return "–"
    seconds = value.total_seconds()
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _tokens_line(stats: ChatStats) -> str:
    if stats.token_runs == 0:
        return "Tokens: none reported by the agent"
    busiest = max(stats.days, key=lambda d: d.tokens, default=None)
    peak = f", most on {busiest.day:%a %d %b} ({busiest.tokens:,})" if busiest else ""
    runs = "1 run" if stats.token_runs == 1 else f"{stats.token_runs} runs"
    return f"Tokens: {stats.tokens:,} over {runs}{peak}"


def chart_caption(stats: ChatStats) -> str:
    span = _span(stats.until - stats.since)
    return f"Runs per day by outcome, fire lag p95 and tokens per day, the last {span}."


def chart_failed_text(exc: Exception) -> str:
    why = str(exc).strip().rstrip(".") or type(exc).__name__
    return f"The chart could not be drawn ({why[:200]}); the figures above are complete."


def stats_heading(stats: ChatStats) -> str:
    return f"Stats for the last {_span(stats.until - stats.since)}"


def stats_lines(stats: ChatStats) -> list[str]:
    """The totals in plain words, a line each (the chat escapes them for Telegram's HTML,
    the Mini App its own way)."""
    states = [status_word(s) for s in stats.current.values()]
    lines = [
        f"Schedules: {states.count('active')} active, {states.count('paused')} paused, "
        f"{states.count('tripped')} tripped",
    ]
    if stats.total == 0:
        lines.append("No runs in this window.")
        return lines
    counts = ", ".join(
        f"{stats.by_status[status]} {status.value.replace('_', ' ')}"
        for status in _ORDER
        if stats.by_status.get(status)
    )
    lines.append(f"Runs: {stats.total} ({counts})")
    rate = stats.success_rate
    if rate is not None:
        lines.append(f"Success rate: {rate:.0%} of runs that ended")
    lines.append(f"Fire lag: median {_seconds(stats.lag_p50)}, p95 {_seconds(stats.lag_p95)}")
    lines.append(
        f"Agent time: median {_seconds(stats.duration_p50)}, slowest {_seconds(stats.duration_max)}"
    )
    lines.append(_tokens_line(stats))
    return lines


def schedule_lines(stats: ChatStats) -> list[str]:
    """Each schedule's runs in plain words, failing ones first (at most SCHEDULES_SHOWN)."""
    lines = []
    for row in stats.schedules[:SCHEDULES_SHOWN]:
        schedule = stats.current.get(row.schedule_id)
        name = schedule.name if schedule else f"{row.schedule_id} (archived)"
        dead = f", {row.dead} dead" if row.dead else ""
        runs = f"{row.runs} run" + ("" if row.runs == 1 else "s")
        lines.append(f"{name}: {runs}, {row.succeeded} ok{dead}")
    return lines


def more_schedules(stats: ChatStats) -> str | None:
    """How many schedules `schedule_lines` leaves out, if any."""
    if len(stats.schedules) <= SCHEDULES_SHOWN:
        return None
    return f"… and {len(stats.schedules) - SCHEDULES_SHOWN} more"


def stats_text(stats: ChatStats) -> str:
    lines = [f"<b>{stats_heading(stats)}</b>", *(esc(line) for line in stats_lines(stats))]
    if stats.total == 0:
        return "\n".join(lines)
    lines.append("")
    lines.extend(f"• {esc(line)}" for line in schedule_lines(stats))
    more = more_schedules(stats)
    if more is not None:
        lines.append(more)
    return "\n".join(lines)
