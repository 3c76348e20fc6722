"""/edit ID FIELD VALUE: change one thing about a schedule.

    /edit ID name New name          /edit ID prompt New prompt text
    /edit ID cron 0 8 * * 1-5       /edit ID tz Europe/Paris (a cron fires in the new zone;
                                     other kinds are shown in it)
    /edit ID every 2h               (an interval keeps its anchor; anything else starts
                                     at the next full hour)
    /edit ID overlap queue          a policy: missed, catchup, overlap, attempts, backoff,
                                     backoff_cap, timeout, on_timeout, approval
    /edit ID proof link             a task's proof, assignee or instructions

Policies and a task's details go to ScheduleService.change_setting, which validates them
as the HTTP API and schedules.yaml are validated (scheduler/policy_edits.py).

The schedule is looked up in this chat first, so an id from another chat answers
exactly like one that does not exist.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from telegram import Update
from telegram.constants import ParseMode
from telegram.ext import BaseHandler, CommandHandler

from bot.context import Context
from bot.views_new import edited_text, every_spec, parse_duration
from bot.views_policies import changed_text
from scheduler.errors import InvalidSchedule, InvalidState, TicklerError
from scheduler.models import Action, Schedule
from scheduler.policy_edits import SETTINGS
from scheduler.service import TriggerSpec
from scheduler.triggers import IntervalTrigger

__all__ = ["handlers"]

USAGE = (
    "Write /edit ID followed by a setting (name, prompt, cron, tz, every, or a policy "
    "such as overlap) and the new value, like /edit ID every 2h."
)
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


async def edit(update: Update, context: Context) -> None:
    """/edit ID FIELD VALUE."""
    assert update.effective_chat is not None and update.effective_message is not None
    message = update.effective_message
    service = context.services.service
    chat_id = update.effective_chat.id
    match = re.match(r"/\S+\s*(\S*)\s*(\S*)\s*(.*)", message.text or "", re.DOTALL)
    schedule_id, field, value = match.groups() if match else ("", "", "")
    if not schedule_id:
        await message.reply_text(USAGE)
        return
    field = ALIASES.get(field.lower(), field.lower())
    value = value.strip()
    try:
        schedule = await service.get_schedule(chat_id, schedule_id)
        if field not in EXAMPLES:
            raise InvalidSchedule(FIELDS.format(id=schedule_id))
        if not value:
            raise InvalidSchedule(
                f"Write the new value after '{field}', like /edit {schedule_id} {EXAMPLES[field]}."
            )
        if field in SETTINGS:
            user = update.effective_user
            if field.startswith("budget") and not context.services.is_admin(
                user.id if user else None
            ):
                # A budget is a spending limit: as its notice's buttons, an admin's.
                raise InvalidState("Only an admin can change a schedule's budget.")
            changed = await service.change_setting(chat_id, schedule.id, field, value)
            await message.reply_text(changed_text(changed, field), parse_mode=ParseMode.HTML)
            return
        updated = await service.update_schedule(
            chat_id,
            schedule_id,
            name=value if field == "name" else None,
            action=_action(schedule, value) if field == "prompt" else None,
            trigger=(
                _trigger(schedule, field, value, context.services.clock.now())
                if field in ("cron", "every")
                else None
            ),
            timezone=value if field == "tz" else None,
        )
    except TicklerError as error:
        await message.reply_text(str(error))
        return
    await message.reply_text(edited_text(updated), parse_mode=ParseMode.HTML)


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """This family's handlers, in the order PTB tries them."""
    return [
        CommandHandler("edit", edit),
    ]
