"""Text about one run: what /runnow answers, and how the run went once it ended.

Pure functions of domain objects (no I/O), HTML parse mode; every piece of user or
agent text goes through `esc`.
"""

from __future__ import annotations

import html
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.render import MAX_MESSAGE, esc, local, run_line, zone_of
from scheduler.dispatching import idempotency_key
from scheduler.models import Attempt, Run, RunStatus, Schedule

__all__ = [
    "answer_where",
    "clock_time",
    "run_detail",
    "run_now_text",
    "run_now_toast",
    "sent_run_outcome",
]

#: How many of a run's attempts its detail lists (the latest ones).
ATTEMPTS_SHOWN = 10


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
    return f"{head}; {answer_where(to_agent)}"


def run_now_toast(behind: Run | None, *, to_agent: bool) -> str:
    """A run-now button's short answer (plain)."""
    if behind is not None:
        return "Queued behind the run in progress."
    return "Sent to your agent." if to_agent else "Running now."


def answer_where(to_agent: bool) -> str:
    """Where the answer to a run will appear, as the end of a sentence."""
    if to_agent:
        return "its answer comes from the agent itself, not from me."
    return "the answer will follow here."


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


#: Characters of a reported log excerpt shown in a run's detail, beside its output.
LOG_SHOWN = 600
#: Characters of a reported link shown as text in a run's detail (a longer one is an
#: anchor).
LINK_SHOWN = 300


def _attempt_line(attempt: Attempt, zone: str) -> str:
    when = local(attempt.finished_at, zone) if attempt.finished_at else "not finished"
    line = f"  {attempt.attempt}. {attempt.status.value} at {when}"
    if attempt.error:
        line += f" — {esc(attempt.error[:150])}"
    return line


def run_detail(run: Run, attempts: list[Attempt], schedule: Schedule | None) -> str:
    """Everything about one run (/run ID): its state, each attempt (the latest
    ATTEMPTS_SHOWN), the error, the token use, the idempotency key the agent saw, and as
    much of its output as fits in one message."""
    zone = zone_of(schedule) if schedule is not None else "UTC"
    name = esc(schedule.name) if schedule is not None else "an archived schedule"
    lines = [
        f"<b>Run of {name}</b>",
        f"ID: <code>{esc(run.id)}</code>",
        f"Status: {run_line(run, zone)}",
    ]
    if run.started_at is not None:
        lines.append(f"Started: {local(run.started_at, zone)}")
    if run.finished_at is not None:
        took = f" (took {run.duration_ms / 1000:g} s)" if run.duration_ms is not None else ""
        lines.append(f"Finished: {local(run.finished_at, zone)}{took}")
    if run.next_attempt_at is not None and run.status is RunStatus.FAILED:
        lines.append(f"Next attempt: {local(run.next_attempt_at, zone)}")
    lines.append(f"Attempts: {len(attempts)}" + (":" if attempts else ""))
    if len(attempts) > ATTEMPTS_SHOWN:
        lines.append(f"  … {len(attempts) - ATTEMPTS_SHOWN} earlier ones")
    lines += [_attempt_line(a, zone) for a in attempts[-ATTEMPTS_SHOWN:]]
    if run.error:
        lines.append(f"Error: {esc(run.error[:500])}")
    if run.awaiting_result and run.next_attempt_at is not None:
        until = local(run.next_attempt_at, zone)
        lines.append(f"Awaiting the agent's result (it answered 202) until {until}")
    if run.summary:
        lines.append(f"Summary: {esc(run.summary)}")
    if run.outputs_url:
        # A long link as an anchor: Telegram does not count its address in the length.
        url = run.outputs_url
        shown_url = esc(url) if len(url) <= LINK_SHOWN else f'<a href="{html.escape(url)}">open</a>'
        lines.append(f"Link: {shown_url}")
    if run.log_excerpt:
        log_excerpt = run.log_excerpt[:LOG_SHOWN]
        cut = " …" if len(run.log_excerpt) > LOG_SHOWN else ""
        lines.append(f"Log excerpt:\n<pre>{esc(log_excerpt)}</pre>{cut}")
    if run.token_usage:
        usage = ", ".join(f"{k.removesuffix('_tokens')} {v}" for k, v in run.token_usage.items())
        lines.append(f"Tokens: {esc(usage)}")
    else:
        lines.append("Tokens: not reported")
    key = idempotency_key(run.schedule_id, run.scheduled_for)
    lines.append(f"Idempotency key: <code>{esc(key)}</code>")
    if not run.output:
        lines.append("Output: none kept (an agent in telegram mode answers the chat itself)")
        return "\n".join(lines)
    facts = "\n".join(lines)
    # The HTML is never shorter than the text Telegram counts, so this always fits.
    room = max(MAX_MESSAGE - len(facts) - 60, 0)
    output = run.output[:room]
    rest = len(run.output) - len(output)
    more = f"\n… ({rest} more characters)" if rest else ""
    return f"{facts}\nOutput:\n<pre>{esc(output)}</pre>{more}"
