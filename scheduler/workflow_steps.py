"""What a plan's or a workflow template's steps may hold, checked once by the service:
each refusal is one sentence naming the step (`steps[2]`) and what to change."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from scheduler.errors import InvalidSchedule
from scheduler.models import Action, ActionKind, Step, StepKind
from scheduler.policy_edits import MAX_ASSIGNEE

__all__ = [
    "MAX_LEAD_DAYS",
    "MAX_OFFSET_DAYS",
    "MAX_STEPS",
    "MAX_STEP_TITLE",
    "anchor_date",
    "check_lead_days",
    "check_steps",
]

MAX_STEPS = 20
MAX_STEP_TITLE = 120
#: A year either way: a template is about one recurring date, not a calendar.
MAX_OFFSET_DAYS = 366
MAX_LEAD_DAYS = 366


def check_steps(
    action: Action,
    *,
    max_text: int,
    check_prompt: Callable[[str, str], None],
) -> None:
    """Refuse a plan or bundle whose steps are missing, too many, or hold a field their
    kind does not use; `check_prompt(text, field)` checks an agent step's prompt as the
    service checks any prompt (length, placeholders). Other kinds may have no steps."""
    if action.kind not in (ActionKind.PLAN, ActionKind.BUNDLE):
        if action.steps:
            raise InvalidSchedule(
                f"Only a plan or a bundle has steps; this action is a {action.kind.value}.",
                field="action.steps",
            )
        if action.lead_days:
            raise InvalidSchedule("Only a bundle has lead days.", field="action.lead_days")
        return
    what = "plan" if action.kind is ActionKind.PLAN else "template"
    if not action.steps:
        raise InvalidSchedule(f"Give the {what} at least one step.", field="action.steps")
    if len(action.steps) > MAX_STEPS:
        raise InvalidSchedule(
            f"The {what} has {len(action.steps)} steps; the limit is {MAX_STEPS}.",
            field="action.steps",
        )
    if action.kind is ActionKind.PLAN:
        if action.lead_days:
            raise InvalidSchedule("Only a bundle has lead days.", field="action.lead_days")
    else:
        check_lead_days(action.lead_days)
    for index, step in enumerate(action.steps):
        _check_step(action.kind, index, step, max_text=max_text, check_prompt=check_prompt)


def check_lead_days(lead_days: int) -> int:
    """A bundle's lead days, or refused (the guided /template asks for them alone)."""
    if not 0 <= lead_days <= MAX_LEAD_DAYS:
        raise InvalidSchedule(
            f"Lead days must be between 0 and {MAX_LEAD_DAYS}.", field="action.lead_days"
        )
    return lead_days


def anchor_date(fire: datetime, zone: ZoneInfo, lead_days: int) -> date:
    """The anchor date of the bundle a fire makes: the fire's date in the template's
    zone, plus its lead days."""
    return fire.astimezone(zone).date() + timedelta(days=lead_days)


def _check_step(
    kind: ActionKind,
    index: int,
    step: Step,
    *,
    max_text: int,
    check_prompt: Callable[[str, str], None],
) -> None:
    where = f"action.steps[{index}]"
    name = f"Step {index + 1}"
    if len(step.title) > MAX_STEP_TITLE:
        raise InvalidSchedule(
            f"{name}'s title is {len(step.title)} characters; the limit is {MAX_STEP_TITLE}.",
            field=f"{where}.title",
        )
    if any(ord(char) < 32 for char in step.title):
        raise InvalidSchedule(
            f"{name}'s title may not contain control characters.", field=f"{where}.title"
        )
    if kind is ActionKind.PLAN:
        if step.kind is not StepKind.AGENT:
            raise InvalidSchedule(
                f"{name} is a {step.kind.value}; a plan's steps are agent prompts.",
                field=f"{where}.kind",
            )
        if step.offset_days:
            raise InvalidSchedule(
                f"{name} has offset days; a plan's steps run one after another, not on "
                "days of their own.",
                field=f"{where}.offset_days",
            )
    else:
        if step.continue_on_failure or step.requires_approval:
            raise InvalidSchedule(
                f"{name}: continue_on_failure and requires_approval belong to plan steps.",
                field=where,
            )
        if abs(step.offset_days) > MAX_OFFSET_DAYS:
            raise InvalidSchedule(
                f"{name}'s offset is {step.offset_days} days; keep it within "
                f"{MAX_OFFSET_DAYS} days of the anchor date.",
                field=f"{where}.offset_days",
            )
    if step.kind is StepKind.AGENT:
        if not step.text.strip():
            raise InvalidSchedule(
                f"{name}'s prompt is empty; write what the agent should do.",
                field=f"{where}.text",
            )
        if step.proof or step.assignee or step.instructions:
            raise InvalidSchedule(
                f"{name} is an agent prompt; proof, assignee and instructions belong to "
                "task steps.",
                field=where,
            )
        check_prompt(step.text, f"{where}.text")
        return
    if not step.title.strip():
        raise InvalidSchedule(f"{name} is a task without a title.", field=f"{where}.title")
    if step.text:
        raise InvalidSchedule(
            f"{name} is a task; write what it needs in its instructions, not a prompt.",
            field=f"{where}.text",
        )
    if step.assignee is not None and len(step.assignee) > MAX_ASSIGNEE:
        raise InvalidSchedule(
            f"{name}'s assignee is {len(step.assignee)} characters; the limit is {MAX_ASSIGNEE}.",
            field=f"{where}.assignee",
        )
    if len(step.instructions) > max_text:
        raise InvalidSchedule(
            f"{name}'s instructions are {len(step.instructions)} characters; the limit is "
            f"{max_text}.",
            field=f"{where}.instructions",
        )
