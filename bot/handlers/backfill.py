"""/backfill ID FROM TO: preview the past fires a range would create, then [Confirm]
[Cancel] (callback data `b:ok:<schedule_id>:<from>:<to>` in epoch seconds, `b:no`).
For a workflow template the range is days (its zone) and the preview counts bundles,
one per fire day (`b:bundles:<schedule_id>:<from>:<to>`, dates as YYYYMMDD).

Confirming twice creates nothing the second time: a fire instant has at most one run,
and a template's anchor date at most one bundle.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot import callbacks
from bot.context import Context
from bot.handlers.schedules import (
    Outcome,
    StaleButton,
    arg,
    button_handler,
    command_handler,
    int_arg,
    reply,
)
from bot.render import esc, local, zone_of
from scheduler.errors import InvalidSchedule, shown
from scheduler.models import ActionKind, Schedule

__all__ = ["handlers", "parse_range"]

USAGE = (
    "Use /backfill ID FROM TO with dates like 2026-11-01 2026-11-07 (TO is included) "
    "or ISO instants; /schedules lists the ids."
)
#: How many of the instants the preview lists.
_SHOWN = 5


def _parse_point(text: str, zone: ZoneInfo, *, end: bool) -> tuple[datetime, bool]:
    """An instant, and whether it was a bare date."""
    try:
        return _point(text, zone, end=end)
    except OverflowError:
        # 9999-12-31 as an end, or 0001-01-01 east of UTC: off the calendar's edge.
        raise InvalidSchedule(
            f"'{shown(text)}' is too close to the ends of the calendar; pick a recent date."
        ) from None


def _point(text: str, zone: ZoneInfo, *, end: bool) -> tuple[datetime, bool]:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if end:
            day += timedelta(days=1)
        moment = datetime.combine(day, time(), tzinfo=zone)
        if end:
            moment -= timedelta(seconds=1)
        return moment.astimezone(UTC), True
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidSchedule(
            f"'{shown(text)}' is neither a date like 2026-11-01 nor an ISO instant."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC), False


def parse_range(start: str, end: str, zone: str, now: datetime) -> tuple[datetime, datetime]:
    """FROM and TO as UTC instants; a TO date means the end of that day (or now, if the
    day is today)."""
    tz = ZoneInfo(zone)
    first, _ = _parse_point(start, tz, end=False)
    last, was_date = _parse_point(end, tz, end=True)
    if was_date and last > now >= last - timedelta(days=1):
        last = now  # TO is today: up to now
    return first, last


def _epoch(instant: datetime) -> int:
    return int(instant.timestamp())


@command_handler
async def backfill(update: Update, context: Context, chat_id: int) -> None:
    """/backfill ID FROM TO: a preview with [Confirm] [Cancel]."""
    args = context.args or []
    if len(args) != 3:
        await reply(update, USAGE, html=False)
        return
    svc = context.services
    service = svc.service
    schedule = await service.get_schedule(chat_id, args[0])
    if schedule.action.kind is ActionKind.BUNDLE:
        await _preview_bundles(update, context, schedule, args[1], args[2])
        return
    zone = await service.chat_timezone(chat_id)
    start, end = parse_range(args[1], args[2], zone, svc.clock.now())
    # Whole seconds, as the buttons carry them; fire instants are whole seconds.
    if start.microsecond:
        start = start.replace(microsecond=0) + timedelta(seconds=1)
    end = datetime.fromtimestamp(_epoch(end), UTC)
    preview = await service.backfill_preview(chat_id, schedule.id, start, end)
    shown = zone_of(schedule)
    name = esc(schedule.name)
    if not preview.instants:
        await reply(update, f"<b>{name}</b> has no fires in that range; nothing to backfill.")
        return
    fires = "fire" if preview.missing == 1 else "fires"
    exist = "exists" if preview.existing == 1 else "exist"
    lines = [
        f"Backfill <b>{name}</b>: {preview.missing} {fires} would be created "
        f"({preview.existing} already {exist}).",
        *(f"• {local(t, shown)}" for t in preview.instants[:_SHOWN]),
    ]
    if len(preview.instants) > _SHOWN:
        lines.append(f"… and {len(preview.instants) - _SHOWN} more.")
    if preview.missing == 0:
        lines.append("Every fire in that range already has a run; nothing to do.")
        await reply(update, "\n".join(lines))
        return
    markup = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    "Confirm",
                    callback_data=callbacks.make(
                        "b", "ok", schedule.id, _epoch(start), _epoch(end)
                    ),
                ),
                InlineKeyboardButton("Cancel", callback_data=callbacks.make("b", "no")),
            ]
        ]
    )
    await reply(update, "\n".join(lines), markup)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidSchedule(
            f"'{shown(text)}' is not a date like 2026-11-01; a template's backfill covers "
            "whole days."
        ) from None


async def _preview_bundles(
    update: Update, context: Context, template: Schedule, start: str, end: str
) -> None:
    first, last = _day(start), _day(end)
    preview = await context.services.bundles.backfill(template, first, last, preview=True)
    name = esc(template.name)
    if not preview.anchors:
        await reply(update, f"<b>{name}</b> has no fires in that window; nothing to backfill.")
        return
    lines = [
        f"Backfill <b>{name}</b>: {preview.created} bundles would be created "
        f"({preview.skipped} already exist), for the dates:",
        *(f"• {a:%a %d %b %Y}" for a in preview.anchors[:_SHOWN]),
    ]
    if len(preview.anchors) > _SHOWN:
        lines.append(f"… and {len(preview.anchors) - _SHOWN} more.")
    if preview.created == 0:
        lines.append("Every day in that window already has its bundle; nothing to do.")
        await reply(update, "\n".join(lines))
        return
    data = callbacks.make("b", "bundles", template.id, f"{first:%Y%m%d}", f"{last:%Y%m%d}")
    markup = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Confirm", callback_data=data),
                InlineKeyboardButton("Cancel", callback_data=callbacks.make("b", "no")),
            ]
        ]
    )
    await reply(update, "\n".join(lines), markup)


async def _backfill_bundles(context: Context, chat_id: int, data: callbacks.Callback) -> Outcome:
    try:
        first = datetime.strptime(arg(data, 1), "%Y%m%d").date()
        last = datetime.strptime(arg(data, 2), "%Y%m%d").date()
    except ValueError:
        raise StaleButton from None
    template = await context.services.service.get_schedule(chat_id, arg(data, 0))
    done = await context.services.bundles.backfill(template, first, last)
    text = (
        f"⏪ Backfill of <b>{esc(template.name)}</b>: {done.created} bundles created, "
        f"{done.skipped} skipped (they existed)."
    )
    return Outcome(toast=f"Created {done.created}, skipped {done.skipped}.", text=text, edit=True)


@button_handler
async def on_backfill_button(
    update: Update, context: Context, data: callbacks.Callback, chat_id: int
) -> Outcome:
    """b:ok:<schedule_id>:<from>:<to> creates the runs; b:no cancels."""
    if data.action == "no":
        return Outcome(toast="Cancelled.", text="Backfill cancelled; nothing created.", edit=True)
    if data.action == "bundles":
        return await _backfill_bundles(context, chat_id, data)
    if data.action != "ok":
        raise StaleButton
    sid = arg(data, 0)
    start = datetime.fromtimestamp(int_arg(arg(data, 1)), UTC)
    end = datetime.fromtimestamp(int_arg(arg(data, 2)), UTC)
    service = context.services.service
    schedule = await service.get_schedule(chat_id, sid)
    created, existing = await service.backfill(chat_id, sid, start, end)
    name = esc(schedule.name)
    if created == 0:
        return Outcome(
            toast="Nothing created: those fires already have runs.",
            text=f"Nothing created for <b>{name}</b>: all {existing} fires in that range "
            "already have runs.",
        )
    runs = "run" if created == 1 else "runs"
    text = f"⏪ Created {created} backfill {runs} for <b>{name}</b>; they run now."
    if existing:
        text += f" {existing} fires already had runs and were left alone."
    return Outcome(toast=f"Created {created} {runs}.", text=text, edit=True)


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """This family's handlers, in the order PTB tries them."""
    return [
        CommandHandler("backfill", backfill),
        CallbackQueryHandler(on_backfill_button, pattern=r"^b:"),
    ]
