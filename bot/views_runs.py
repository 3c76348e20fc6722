"""Text about one run: what /runnow answers, and how the run went once it ended.

Pure functions of domain objects (no I/O), HTML parse mode; every piece of user or
agent text goes through `esc`.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from bot.render import esc, zone_of
from scheduler.models import Run, RunStatus, Schedule

__all__ = ["clock_time", "run_now_text", "sent_run_outcome"]


def clock_time(instant: datetime, zone: str) -> str:
    """`09:00:03`: the local time of day, to the second (a run now is seconds old)."""
    return f"{instant.astimezone(ZoneInfo(zone)):%H:%M:%S}"


def run_now_text(schedule: Schedule, run: Run, behind: Run | None, *, to_agent: bool) -> str:
    """The answer to /runnow. `to_agent`: the agent answers the chat itself (telegram
    mode), so this chat will see no answer from Tickler, only how the delivery went."""
    name = f"<b>{esc(schedule.name)}</b>"
    zone = zone_of(schedule)
    if behind is not None:
        since = clock_time(behind.started_at or behind.scheduled_for, zone)
        head = (
            f"⏳ {name} is already running (since {since}); this run is queued behind it "
            "and starts when it finishes"
        )
    elif to_agent:
        head = f"▶️ Sending {name} to your agent now ({clock_time(run.scheduled_for, zone)})"
    else:
        head = f"▶️ Running {name} now"
    if to_agent:
        return f"{head}; its answer comes from the agent itself, not from me."
    return f"{head}; the answer will follow here."


def sent_run_outcome(run: Run, zone: str) -> str | None:
    """One line on how a run sent to the agent went, or None while it is still on its
    way (pending, running, awaiting approval)."""
    error = esc((run.error or "no reason given").rstrip("."))
    attempts = f"{run.attempt} attempt{'s' if run.attempt != 1 else ''}"
    if run.status is RunStatus.SUCCEEDED:
        when = clock_time(run.finished_at or run.updated_at, zone)
        return f"✅ Delivered: your agent took it at {when}."
    if run.status is RunStatus.FAILED:
        again = clock_time(run.next_attempt_at, zone) if run.next_attempt_at else "soon"
        return f"🔁 Attempt {run.attempt} failed ({error}); trying again at {again}."
    if run.status is RunStatus.DEAD:
        return f"❌ Failed: not delivered after {attempts} ({error}). /deadletters has it."
    if run.status is RunStatus.UNKNOWN:
        return (
            f"❓ Uncertain after {attempts} ({error}). /deadletters lets you retry it or "
            "mark it done."
        )
    if run.status in (RunStatus.SKIPPED, RunStatus.CANCELLED):
        return f"⏭ Not sent: {error}."
    return None
