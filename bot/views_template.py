"""Parsing and text for /template (a workflow template: a bundle of steps per anchor
date) and the steps on a bundle schedule's card: pure functions, no clock, no Telegram.

Parsers raise `InvalidSchedule` with the one sentence to show; what the parsed values
may be (lead days, offsets, titles, prompts) is the service's to check
(scheduler/workflow_steps.py). Text is HTML; every piece of user text goes through `esc`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime

from bot.render import esc, local
from bot.views_new import dst_notes, upcoming, when_line
from scheduler.cron import load_zone
from scheduler.errors import InvalidSchedule
from scheduler.models import Action, Step, StepKind
from scheduler.triggers import Trigger
from scheduler.workflow_steps import anchor_date

__all__ = [
    "LEAD_DAYS_HELP",
    "OFFSET_HELP",
    "confirm_text",
    "offset_words",
    "parse_lead_days",
    "parse_offset",
    "steps_summary",
    "template_lines",
]

OFFSET_HELP = (
    "Write the offset in days from the anchor date, like -3 or 3 before, 2 after, "
    "or 0 for on the day."
)
LEAD_DAYS_HELP = "Write the lead days as a whole number of days from 0 to 366, like 7."

_ON_THE_DAY = {"on the day", "the day", "on the day itself", "same day", "on the anchor date"}
_OFFSET = re.compile(r"([+-]?)\s*(\d{1,6})(?:\s*(?:d|days?))?(?:\s+(before|after))?")
_LEAD_DAYS = re.compile(r"(\d{1,6})(?:\s*(?:d|days?))?")
# What a step line shows of a title, prompt, assignee or instructions: 20 steps and the
# rest of the card must fit one message (4096 characters).
_SHOWN_TITLE = 48
_SHOWN_WHO = 20
_SHOWN_INSTRUCTIONS = 24


# --- parsing -------------------------------------------------------------------------
def parse_offset(text: str) -> int:
    """Days from the anchor date, negative before it: `-3`, `3 before`, `3 days before`,
    `2 after`, `+2`, `2`, `0`, `on the day`."""
    cleaned = " ".join(text.strip().lower().split()).removesuffix(".")
    if cleaned in _ON_THE_DAY:
        return 0
    match = _OFFSET.fullmatch(cleaned)
    if match is None:
        raise InvalidSchedule(OFFSET_HELP)
    sign, number, word = match.groups()
    if sign and word:
        # "-3 after" says two things; ask for one.
        raise InvalidSchedule(OFFSET_HELP)
    days = int(number)
    return -days if sign == "-" or word == "before" else days


def parse_lead_days(text: str) -> int:
    """`7`, `7 days`, `7d` -> 7 (the service checks the range)."""
    match = _LEAD_DAYS.fullmatch(" ".join(text.strip().lower().split()).removesuffix("."))
    if match is None:
        raise InvalidSchedule(LEAD_DAYS_HELP)
    return int(match.group(1))


# --- views ---------------------------------------------------------------------------
def offset_words(days: int) -> str:
    """`3 days before`, `on the day`, `1 day after`."""
    if days == 0:
        return "on the day"
    count = f"{abs(days)} day{'s' if abs(days) != 1 else ''}"
    return f"{count} {'before' if days < 0 else 'after'}"


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _step_line(number: int, step: Step) -> str:
    when = offset_words(step.offset_days)
    if step.kind is StepKind.AGENT:
        return f"{number}. Agent prompt “{esc(_cut(step.text, _SHOWN_TITLE))}” — {when}"
    parts = [f"{number}. Task “{esc(_cut(step.title, _SHOWN_TITLE))}” — {when}"]
    parts.append(f"proof: {step.proof or 'none'}")
    if step.assignee:
        parts.append(f"for {esc(_cut(step.assignee, _SHOWN_WHO))}")
    if step.instructions:
        parts.append(f"instructions: {esc(_cut(step.instructions, _SHOWN_INSTRUCTIONS))}")
    return "; ".join(parts)


def _lead_line(lead_days: int) -> str:
    if lead_days == 0:
        return "Lead days: 0 (each bundle is made on its anchor date)"
    days = f"{lead_days} day{'s' if lead_days != 1 else ''}"
    return f"Lead days: {lead_days} (each bundle is made {days} before its anchor date)"


def _steps_lines(steps: Sequence[Step]) -> list[str]:
    if not steps:
        return ["Steps: none yet"]
    return ["Steps:", *(_step_line(n, step) for n, step in enumerate(steps, start=1))]


def template_lines(action: Action) -> list[str]:
    """A bundle's lead days and its steps, each with its offset, kind and proof: on the
    schedule's card (/show) and on the card before Save."""
    return [_lead_line(action.lead_days), *_steps_lines(action.steps)]


def steps_summary(steps: Sequence[Step]) -> str:
    """The steps so far, between two steps of /template (HTML)."""
    if not steps:
        return "No steps yet. Add a task or an agent prompt."
    return "\n".join([*_steps_lines(steps), "", "Add another step, or press Done."])


def _anchor(day: date) -> str:
    return f"{day:%a %d %b %Y}"


def confirm_text(*, name: str, action: Action, trigger: Trigger, now: datetime) -> str:
    """The template before Save (HTML): when it fires, in words and in the next three
    fires with the anchor date each makes, its lead days and its steps, DST notes."""
    zone = trigger.timezone
    steps = len(action.steps)
    lines = [
        f"<b>{esc(name)}</b>",
        f"Workflow template: one bundle of {steps} step{'s' if steps != 1 else ''} per anchor date",
        f"When: {when_line(trigger, zone)}",
        f"Zone: {esc(zone)}",
    ]
    fires = upcoming(trigger, now)
    if fires:
        lines.append("Next fires → the anchor date of the bundle each makes:")
        tz = load_zone(zone)
        lines += [
            f"• {local(fire, zone)} → {_anchor(anchor_date(fire, tz, action.lead_days))}"
            for fire in fires
        ]
    else:
        lines.append("Next fires: never")
    lines += template_lines(action)
    lines += [esc(note) for note in dst_notes(trigger, now)]
    return "\n".join(lines)
