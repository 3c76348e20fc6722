"""Text for the chat, built by small pure functions that tests can call directly.
Everything is HTML parse mode; every piece of user or agent text goes through `esc`."""

from __future__ import annotations

import html
import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

from scheduler.models import Run, RunStatus, Schedule
from scheduler.plans import plan_step, step_label

__all__ = [
    "MAX_MESSAGE",
    "esc",
    "local",
    "next_fires",
    "run_line",
    "schedule_line",
    "split_message",
    "status_word",
    "step_of",
]

#: Telegram's limit for one message's text.
MAX_MESSAGE = 4096

_RUN_ICONS = {
    RunStatus.PENDING: "⏳",
    RunStatus.RUNNING: "▶️",
    RunStatus.SUCCEEDED: "✅",
    RunStatus.FAILED: "🔁",
    RunStatus.DEAD: "💀",
    RunStatus.SKIPPED: "⏭",
    RunStatus.AWAITING_APPROVAL: "✋",
    RunStatus.CANCELLED: "🚫",
    RunStatus.UNKNOWN: "❓",
}


def esc(text: str) -> str:
    return html.escape(text, quote=False)


def local(instant: datetime, zone: str) -> str:
    """`Tue 24 Nov 09:00 (+01:00)`: local wall time with its UTC offset."""
    moment = instant.astimezone(ZoneInfo(zone))
    offset = moment.strftime("%z")
    return f"{moment:%a %d %b %H:%M} ({offset[:3]}:{offset[3:]})"


def status_word(schedule: Schedule) -> str:
    if schedule.archived_at is not None:
        return "archived"
    if schedule.tripped:
        return "tripped"
    if not schedule.enabled:
        return "paused"
    return "active"


def next_fires(schedule: Schedule, after: datetime, count: int = 3) -> list[datetime]:
    if count < 1:
        return []
    first = schedule.next_run_at if schedule.next_run_at and schedule.next_run_at > after else None
    if first is None:
        first = schedule.trigger.next_after(after)
    if first is None:
        return []
    return [first, *itertools.islice(schedule.trigger.fires(first), count - 1)]


def schedule_line(schedule: Schedule) -> str:
    state = status_word(schedule)
    mark = "" if state == "active" else f" [{state}]"
    return f"<b>{esc(schedule.name)}</b>{mark} — {esc(schedule.trigger.describe())}"


def step_of(run: Run, schedule: Schedule | None) -> str:
    """`step 2/3 (Summarise)` for a plan's step run (`step 2` without its schedule),
    "" for any other run."""
    place = plan_step(run, schedule) if schedule is not None else None
    if place is not None:
        return esc(step_label(place))
    return "" if run.step is None else f"step {run.step + 1}"


def run_line(run: Run, zone: str, schedule: Schedule | None = None) -> str:
    """One run: icon, local instant, status (and a plan's step), trigger and error.
    `schedule` (the run's) names a plan step's number of steps and title."""
    icon = _RUN_ICONS.get(run.status, "•")
    text = f"{icon} {local(run.scheduled_for, zone)} {run.status.value}"
    step = step_of(run, schedule)
    if step:
        text += f", {step}"
    if run.trigger.value != "schedule":
        text += f" ({run.trigger.value})"
    if run.error and run.status is not RunStatus.SUCCEEDED:
        text += f" — {esc(run.error[:200])}"
    return text


#: Characters of a reported summary shown on a history line (the detail shows it all).
_SUMMARY_IN_LIST = 80


def reported_line(run: Run) -> str:
    """What the agent reported asynchronously, for a history line: the start of its
    summary and its link as an anchor (a long URL would not fit a page of runs), or ""."""
    parts = []
    if run.summary:
        summary = (
            run.summary
            if len(run.summary) <= _SUMMARY_IN_LIST
            else (run.summary[: _SUMMARY_IN_LIST - 1] + "…")
        )
        parts.append(esc(summary))
    if run.outputs_url:
        parts.append(f'<a href="{html.escape(run.outputs_url)}">🔗 result</a>')
    return f"\n    {' '.join(parts)}" if parts else ""


def zone_of(schedule: Schedule) -> str:
    return schedule.timezone


def split_message(text: str, limit: int = MAX_MESSAGE) -> list[str]:
    """Plain text cut into messages Telegram accepts, at line breaks where possible."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit)
        if cut <= limit // 2:
            cut = rest.rfind(" ", 0, limit)
        if cut <= limit // 2:
            cut = limit
        parts.append(rest[:cut])
        rest = rest[cut:].lstrip("\n")
    if rest:
        parts.append(rest)
    return parts
