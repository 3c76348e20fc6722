"""Text and keyboards for /schedules, a schedule's card, /history and /deadletters.

Pure functions of domain objects (no I/O), so tests can call them directly. HTML
parse mode; every piece of user or agent text goes through `esc`.

Callback data they emit (see bot/callbacks.py; ids are looked up in the pressing chat):

    l:<page>                    /schedules page
    s:show:<id>                 open a schedule's card (a new message)
    s:<run|pause|resume>:<id>:c a card button: the card is edited in place
    s:hist:<id>[:<page>]        a schedule's history (a page number edits in place)
    s:edit:<id> s:del:<id>      how to /edit; ask to archive
    s:arch:<id> s:keep:<id>     the answer to "archive?"
    o:menu:<id>                 the policies menu (bot/views_policies.py)
    h:<page>                    /history of the whole chat, a page
    r:<retry|done|drop>:<run>   a dead or uncertain run
    r:show:<run>                a run's detail (from a /history line)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Literal

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import callbacks
from bot.render import (
    esc,
    local,
    next_fires,
    reported_line,
    run_line,
    schedule_line,
    status_word,
    zone_of,
)
from bot.views_policies import policy_lines
from bot.views_template import template_lines
from scheduler.models import FINAL_STATUSES, ActionKind, Run, RunStatus, RunTrigger, Schedule
from scheduler.triggers import AfterTrigger, EventTrigger, StartupTrigger

__all__ = [
    "CARD_MARK",
    "HISTORY_PAGE",
    "LIST_PAGE",
    "archive_question",
    "card_keyboard",
    "dead_letter",
    "dead_letters_header",
    "history_page",
    "missed_already",
    "missed_outcome",
    "on_what",
    "page_count",
    "schedule_card",
    "schedules_page",
    "status_parts",
    "upcoming",
]

#: Schedules per /schedules page, runs per /history page.
LIST_PAGE = 5
HISTORY_PAGE = 10
#: Run detail buttons per row under a /history page.
_DETAILS_PER_ROW = 5
#: The last part of a card button's data: the handler edits the card in place.
CARD_MARK = "c"

EMPTY_LIST = "No schedules yet. Create one with /new."
PAUSED_NOTE = "Paused: no fires until resumed."

Rows = list[list[tuple[str, str]]]


def _markup(rows: Rows) -> InlineKeyboardMarkup | None:
    rows = [row for row in rows if row]
    if not rows:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(text, callback_data=data) for text, data in row] for row in rows]
    )


def _label(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def page_count(total: int, size: int) -> int:
    return max(1, -(-total // size))


def _nav(page: int, has_more: bool, data: Callable[[int], str]) -> list[tuple[str, str]]:
    """[◀ Prev] [Next ▶] around page `page` (0-based); `data(n)` is page n's callback."""
    row: list[tuple[str, str]] = []
    if page > 0:
        row.append(("◀ Prev", data(page - 1)))
    if has_more:
        row.append(("Next ▶", data(page + 1)))
    return row


# --- /schedules --------------------------------------------------------------------------
def schedules_page(
    schedules: Sequence[Schedule], page: int, now: datetime
) -> tuple[str, InlineKeyboardMarkup | None, int]:
    """One page of the chat's schedules, each with its number and next fire, a button
    per schedule to open its card, and [◀ Prev] [Next ▶]. A page past the end shows the
    last one. Returns the page shown."""
    if not schedules:
        return EMPTY_LIST, None, 0
    pages = page_count(len(schedules), LIST_PAGE)
    page = min(max(page, 0), pages - 1)
    shown = schedules[page * LIST_PAGE : (page + 1) * LIST_PAGE]
    head = f"<b>Schedules</b> ({len(schedules)})"
    if pages > 1:
        head += f", page {page + 1} of {pages}"
    lines = [head, ""]
    for schedule in shown:
        lines.append(
            f"{esc(schedule.ref)} {schedule_line(schedule)}\n    {_next_fire(schedule, now)}"
        )
    lines += ["", "Tap one to open its card, or use its number: /show 3, /pause 3."]
    rows: Rows = [[(_label(f"{s.ref} {s.name}"), callbacks.make("s", "show", s.id))] for s in shown]
    rows.append(_nav(page, page < pages - 1, lambda n: callbacks.make("l", str(n))))
    return "\n".join(lines), _markup(rows), page


def _next_fire(schedule: Schedule, now: datetime) -> str:
    if status_word(schedule) != "active":
        return "Next: none while paused"
    fires = next_fires(schedule, now, 1)
    return f"Next: {local(fires[0], zone_of(schedule))}" if fires else "Next: never again"


# --- a schedule's card ------------------------------------------------------------------
def status_parts(schedule: Schedule, names: Mapping[int, str]) -> tuple[str, str]:
    """The schedule's state word (active, paused, tripped, archived) and, plain, what
    more there is to say about it: who paused it and why, or why it tripped."""
    state = status_word(schedule)
    if state == "paused":
        details = []
        if schedule.paused_by is not None:
            who = names.get(schedule.paused_by) or (
                schedule.owner.first_name
                if schedule.paused_by == schedule.owner.id
                else f"user {schedule.paused_by}"
            )
            details.append(f"by {who}")
        if schedule.pause_reason:
            details.append(schedule.pause_reason)
        return state, ": ".join(details)
    if state == "tripped":
        return state, f"paused itself after {schedule.consecutive_failures} failed runs in a row"
    return state, ""


_STATUS_ICONS = {"paused": "⏸", "tripped": "⛔", "archived": "🗄", "active": "▶️"}


def _status(schedule: Schedule, names: Mapping[int, str]) -> str:
    state, detail = status_parts(schedule, names)
    return f"{_STATUS_ICONS[state]} {state}" + (f" ({esc(detail)})" if detail else "")


def on_what(trigger: EventTrigger | StartupTrigger | AfterTrigger) -> str:
    """When a trigger without a calendar fires, in words (plain)."""
    if isinstance(trigger, EventTrigger):
        name = trigger.name
        return f"at each '{name}' event (POST /api/v1/events/{name}, or the agent's emit_event)."
    if isinstance(trigger, StartupTrigger):
        return "at each start of Tickler, once the engine is ready."
    return f"{trigger.describe()}, once per run of it."


def upcoming(schedule: Schedule, now: datetime, count: int = 3) -> tuple[list[datetime], str]:
    """The schedule's next `count` fires, or none and why (plain): paused, fired by an
    event rather than the calendar, or never again."""
    if status_word(schedule) != "active":
        return [], PAUSED_NOTE
    if isinstance(schedule.trigger, EventTrigger | StartupTrigger | AfterTrigger):
        return [], on_what(schedule.trigger)
    fires = next_fires(schedule, now, count)
    return fires, "" if fires else "none; it will not fire again."


def schedule_card(
    schedule: Schedule,
    now: datetime,
    last_run: Run | None,
    names: Mapping[int, str] | None = None,
) -> str:
    """Name, status, the trigger in words, the zone, the next three fires in local time,
    a template's lead days and steps, the last run, the failure count, the policies (and
    a task's details) and who created it."""
    zone = zone_of(schedule)
    lines = [
        f"<b>{esc(schedule.name)}</b>",
        f"ID: <code>{esc(schedule.ref)}</code> (<code>{esc(schedule.id)}</code>)",
    ]
    if schedule.description:
        lines.append(f"<i>{esc(schedule.description)}</i>")
    lines += [
        f"Status: {_status(schedule, names or {})}",
        f"When: {esc(schedule.trigger.describe())}",
        f"Zone: {esc(zone)}",
    ]
    fires, why_none = upcoming(schedule, now)
    if why_none == PAUSED_NOTE:
        lines.append(PAUSED_NOTE)
    elif fires:
        lines.append("Next fires:")
        lines += [f"  • {local(t, zone)}" for t in fires]
    else:
        lines.append(f"Next fires: {esc(why_none)}")
    if schedule.action.kind is ActionKind.BUNDLE:
        lines += template_lines(schedule.action)
    lines += plan_lines(schedule)
    lines.append(f"Last run: {run_line(last_run, zone, schedule) if last_run else 'none yet'}")
    lines.append(f"Failures in a row: {schedule.consecutive_failures}")
    lines += policy_lines(schedule)
    lines.append(f"Created by: {schedule.created_by.value} ({esc(schedule.owner.first_name)})")
    return "\n".join(lines)


def plan_lines(schedule: Schedule) -> list[str]:
    """A plan's steps, in order, each with its title (or the start of its prompt) and
    what it does on failure or needs first; nothing for other schedules."""
    if schedule.action.kind is not ActionKind.PLAN:
        return []
    steps = schedule.action.steps
    lines = [f"Plan: {len(steps)} step{'s' if len(steps) != 1 else ''}, each after the last one"]
    for number, step in enumerate(steps, 1):
        what = step.title or _cut(step.text, 60)
        notes = []
        if step.requires_approval:
            notes.append("asks for approval")
        if step.continue_on_failure:
            notes.append("the plan goes on if it fails")
        extra = f" ({', '.join(notes)})" if notes else ""
        lines.append(f"  {number}. {esc(what)}{extra}")
    return lines


def _cut(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def card_keyboard(schedule: Schedule) -> InlineKeyboardMarkup:
    sid = schedule.id
    toggle = (
        ("Resume", callbacks.make("s", "resume", sid, CARD_MARK))
        if schedule.tripped or not schedule.enabled
        else ("Pause", callbacks.make("s", "pause", sid, CARD_MARK))
    )
    markup = _markup(
        [
            [("Run now", callbacks.make("s", "run", sid, CARD_MARK)), toggle],
            [
                ("History", callbacks.make("s", "hist", sid)),
                ("Edit", callbacks.make("s", "edit", sid)),
                ("Delete", callbacks.make("s", "del", sid)),
            ],
            [("Policies", callbacks.make("o", "menu", sid))],
        ]
    )
    assert markup is not None
    return markup


def archive_question(schedule: Schedule) -> tuple[str, InlineKeyboardMarkup]:
    text = (
        f"Archive <b>{esc(schedule.name)}</b>? It stops firing and leaves /schedules; "
        "its history is kept."
    )
    markup = _markup(
        [
            [
                ("Archive", callbacks.make("s", "arch", schedule.id)),
                ("Keep", callbacks.make("s", "keep", schedule.id)),
            ]
        ]
    )
    assert markup is not None
    return text, markup


# --- runs --------------------------------------------------------------------------------
def history_page(
    runs: Sequence[Run],
    *,
    page: int,
    has_more: bool,
    zones: Mapping[str, str],
    default_zone: str,
    names: Mapping[str, str],
    schedule: Schedule | None = None,
) -> tuple[str, InlineKeyboardMarkup | None]:
    """One page of runs, newest first. With `schedule`, its history; otherwise the
    chat's, each line naming its schedule."""
    title = f"<b>History of {esc(schedule.name)}</b>" if schedule else "<b>Recent runs</b>"
    if not runs:
        if page > 0:
            return f"{title}\n\nNo older runs.", _markup([_nav_for(page, False, schedule)])
        where = "this schedule" if schedule else "this chat"
        hint = (
            f"/runnow {esc(schedule.ref)} runs it now."
            if schedule
            else "/schedules lists the schedules."
        )
        return f"No runs yet for {where}. {hint}", None
    if page > 0 or has_more:
        title += f", page {page + 1}"
    lines = [title, ""]
    for n, run in enumerate(runs, start=1):
        zone = zones.get(run.schedule_id, default_zone)
        line = run_line(run, zone, schedule)
        if schedule is None:
            line = f"<b>{esc(names.get(run.schedule_id, run.schedule_id))}</b>: {line}"
        line = f"{n}. {line}"
        if run.status in (RunStatus.DEAD, RunStatus.UNKNOWN):
            line += f"\n    /retry <code>{esc(run.id)}</code>"
        line += reported_line(run)
        lines.append(line)
    lines += ["", "A number's button shows that run in detail."]
    details = [(str(n), callbacks.make("r", "show", run.id)) for n, run in enumerate(runs, 1)]
    rows = [details[i : i + _DETAILS_PER_ROW] for i in range(0, len(details), _DETAILS_PER_ROW)]
    return "\n".join(lines), _markup([*rows, _nav_for(page, has_more, schedule)])


def _nav_for(page: int, has_more: bool, schedule: Schedule | None) -> list[tuple[str, str]]:
    if schedule is None:
        return _nav(page, has_more, lambda n: callbacks.make("h", str(n)))
    sid = schedule.id
    return _nav(page, has_more, lambda n: callbacks.make("s", "hist", sid, n))


def dead_letters_header(count: int, more: bool) -> str:
    if count == 0:
        return "No dead or uncertain runs. Nothing needs you."
    runs = "run needs" if count == 1 else "runs need"
    text = f"💀 {count}{'+' if more else ''} {runs} you."
    if more:
        text += f" The newest {count} follow; /deadletters again shows the rest once handled."
    return text + " Retry sends a run again with the same idempotency key."


def dead_letter(run: Run, schedule_name: str, zone: str) -> tuple[str, InlineKeyboardMarkup]:
    """One dead or uncertain run with its buttons: [Retry], and for an uncertain one
    also [Mark done] [Drop]."""
    text = f"<b>{esc(schedule_name)}</b>\n{run_line(run, zone)}\nRun <code>{esc(run.id)}</code>"
    row = [("Retry", callbacks.make("r", "retry", run.id))]
    if run.status is RunStatus.UNKNOWN:
        text += "\nIt timed out after the agent may have received it. Did it do the work?"
        row += [
            ("Mark done", callbacks.make("r", "done", run.id)),
            ("Drop", callbacks.make("r", "drop", run.id)),
        ]
    markup = _markup([row])
    assert markup is not None
    return text, markup


# --- missed fires ------------------------------------------------------------------------
def missed_already(window: Sequence[Run]) -> str:
    """A second press on a missed-fires choice, which changed nothing: where the
    window's runs stand now (the schedule's fires scheduled in the window)."""
    own = [r for r in window if r.trigger in (RunTrigger.SCHEDULE, RunTrigger.CATCH_UP)]
    to_run = [r for r in own if r.status not in (RunStatus.SKIPPED, RunStatus.CANCELLED)]
    if not to_run:
        return "Already settled: those missed fires were skipped; nothing ran."
    n = len(to_run)
    fires, are, it = ("missed fire", "is", "it") if n == 1 else (f"{n} missed fires", "are", "they")
    if all(r.status in FINAL_STATUSES for r in to_run):
        return f"Already done: the {fires} ran. /history shows how {it} went."
    return f"Already chosen: the {fires} {are} running or waiting to run."


def missed_outcome(
    choice: Literal["latest", "all", "skip"],
    window: Sequence[Run],
) -> str:
    """What the operator's choice for missed fires did, from the window's runs after it
    was applied (the schedule's fires scheduled in the window)."""
    own = [r for r in window if r.trigger in (RunTrigger.SCHEDULE, RunTrigger.CATCH_UP)]
    to_run = [r for r in own if r.status not in (RunStatus.SKIPPED, RunStatus.CANCELLED)]
    if choice == "skip":
        if to_run:
            ran = len(to_run)
            return (
                f"Skipped the rest; {ran} missed fire{'s' if ran != 1 else ''} had already started."
            )
        return "Skipped: nothing will run for that window."
    if not own:
        return "Those missed fires are no longer recorded; nothing to run."
    if choice == "latest":
        return "Running the latest missed fire."
    n = len(to_run)
    if n == len(own):
        return "Running the missed fire." if n == 1 else f"Running all {n} missed fires."
    return f"Running the newest {n} of {len(own)} missed fires (the catch-up cap)."
