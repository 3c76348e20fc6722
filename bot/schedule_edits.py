"""Changing one thing about a schedule by name and text value: what `/edit ID FIELD
VALUE` and the Mini App's edit form both do, through the same service calls and the
same role rule (a budget is an admin's).

    name New name          prompt New prompt text
    cron 0 8 * * 1-5       tz Europe/Paris (a cron fires in the new zone; other kinds
                           are shown in it)
    every 2h               (an interval keeps its anchor; anything else starts at the
                           next full hour)
    overlap queue          a policy: missed, catchup, overlap, attempts, backoff,
                           backoff_cap, timeout, on_timeout, approval, budget_runs,
                           budget_tokens
    proof link             a task's proof, assignee or instructions

Policies and a task's details go to ScheduleService.change_setting, which validates them
as the HTTP API and schedules.yaml are validated (scheduler/policy_edits.py); the rest
to ScheduleService.update_schedule. Bad input raises InvalidSchedule with one sentence
and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.context import Services
from bot.views_new import every_spec, parse_duration
from scheduler.errors import AdminOnly, InvalidSchedule
from scheduler.models import Action, Schedule
from scheduler.policy_edits import SETTINGS
from scheduler.service import TriggerSpec
from scheduler.triggers import IntervalTrigger

__all__ = [
    "ADMIN_ONLY",
    "ALIASES",
    "EXAMPLES",
    "FIELDS",
    "Edited",
    "admin_only",
    "edit_schedule",
    "field_of",
]

EXAMPLES = {
    "name": "name Morning brief",
    "prompt": "prompt Prepare my brief",
    "cron": "cron 0 8 * * 1-5",
    "tz": "tz Europe/Paris",
    "every": "every 2h",
    **{name: f"{name} {setting.example}" for name, setting in SETTINGS.items()},
}
FIELDS = (
    f"I can change {', '.join(list(EXAMPLES)[:-1])} or {list(EXAMPLES)[-1]}, "
    "as in /edit {id} name Morning brief."
)
ALIASES = {
    "text": "prompt",
    "timezone": "tz",
    "zone": "tz",
    "interval": "every",
    "missed_run": "missed",
    "catch_up_cap": "catchup",
    "retries": "attempts",
    "max_attempts": "attempts",
    "timeout_seconds": "timeout",
    "timeout_policy": "on_timeout",
    "requires_run_approval": "approval",
}
#: A budget is a spending limit: as its notice's buttons, an admin's to change.
ADMIN_ONLY = frozenset({"budget_runs", "budget_tokens"})


@dataclass(frozen=True)
class Edited:
    schedule: Schedule
    #: The field as changed (aliases resolved).
    field: str
    #: A policy or a task's detail (answered with its card line), else None.
    setting: bool


def field_of(name: str) -> str:
    """The field `name` means (an alias resolved, any letter case)."""
    lowered = name.lower()
    return ALIASES.get(lowered, lowered)


def admin_only(field: str) -> bool:
    return field_of(field) in ADMIN_ONLY


def _action(schedule: Schedule, value: str) -> Action:
    """The new prompt keeps the schedule's kind (a reminder stays a reminder, a task keeps
    its proof, assignee and instructions); a template is replaced by the text."""
    return schedule.action.model_copy(update={"text": value, "template": None})


def _trigger(schedule: Schedule, field: str, value: str, now: datetime) -> TriggerSpec:
    """The new trigger for cron or every, in the schedule's own zone; raise
    InvalidSchedule for a bad value."""
    trigger = schedule.trigger
    zone = schedule.timezone
    if field == "cron":
        expr = value.strip("\"'“”‘’")
        return TriggerSpec(kind="cron", cron=expr, timezone=zone)
    seconds = parse_duration(value)
    if isinstance(trigger, IntervalTrigger):
        return TriggerSpec(
            kind="interval", every_seconds=seconds, start_at=trigger.start_at, timezone=zone
        )
    return every_spec(seconds, now, zone)


async def edit_schedule(
    svc: Services, chat_id: int, ref: str, field: str, value: str, *, user_id: int | None
) -> Edited:
    """Set `field` of the chat's schedule `ref` to `value` (text, as typed after
    `/edit ID FIELD`), as `user_id`. InvalidSchedule for an unknown field or a bad
    value, AdminOnly for a budget asked by someone else than an admin; nothing changed
    then."""
    service = svc.service
    field = field_of(field)
    value = value.strip()
    schedule = await service.get_schedule(chat_id, ref)
    if field not in EXAMPLES:
        raise InvalidSchedule(FIELDS.format(id=ref))
    if not value:
        raise InvalidSchedule(
            f"Write the new value after '{field}', like /edit {ref} {EXAMPLES[field]}."
        )
    if field in SETTINGS:
        if field in ADMIN_ONLY and not svc.is_admin(user_id):
            raise AdminOnly("Only an admin can change a schedule's budget.")
        changed = await service.change_setting(chat_id, schedule.id, field, value)
        return Edited(changed, field, setting=True)
    updated = await service.update_schedule(
        chat_id,
        schedule.id,
        name=value if field == "name" else None,
        action=_action(schedule, value) if field == "prompt" else None,
        trigger=(
            _trigger(schedule, field, value, svc.clock.now())
            if field in ("cron", "every")
            else None
        ),
        timezone=value if field == "tz" else None,
    )
    return Edited(updated, field, setting=False)
