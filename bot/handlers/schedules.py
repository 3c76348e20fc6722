"""/schedules, /show, /pause, /resume, /delete, /runnow and the buttons of a schedule's
card (callback data `l:<page>` and `s:<action>:<schedule_id>[:<arg>]`).

Every id is looked up in the chat the command or button came from, so another chat's
schedule answers exactly like an unknown one. The small helpers at the top (replying,
answering a button, editing in place) are shared with bot/handlers/runs.py.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from telegram import InlineKeyboardMarkup, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot import callbacks
from bot.context import Context, Services
from bot.render import esc, local, zone_of
from bot.views_runs import run_now_text, run_now_toast
from bot.views_schedules import (
    CARD_MARK,
    archive_question,
    card_keyboard,
    schedule_card,
    schedules_page,
)
from scheduler.errors import TicklerError
from scheduler.models import ActionKind, Schedule

__all__ = [
    "Outcome",
    "StaleButton",
    "button_handler",
    "chat_of",
    "command_handler",
    "handlers",
    "to_agent",
]

log = logging.getLogger("tickler.bot")

#: Telegram's limit for a callback answer's text.
_MAX_TOAST = 200


# --- shared helpers -----------------------------------------------------------------------
class StaleButton(Exception):
    """The callback data is malformed (an old button or a forged one)."""


@dataclass(frozen=True)
class Outcome:
    """What a button press did: a short answer (toast) and, optionally, a message that
    replaces the pressed one (`edit`) or follows it."""

    toast: str | None = None
    text: str | None = None
    markup: InlineKeyboardMarkup | None = None
    edit: bool = False


def chat_of(update: Update) -> int:
    assert update.effective_chat is not None
    return update.effective_chat.id


def arg(data: callbacks.Callback, index: int) -> str:
    """The `index`-th argument after kind and action, or StaleButton."""
    if index >= len(data.args) or not data.args[index]:
        raise StaleButton
    return data.args[index]


def int_arg(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise StaleButton from None


async def reply(
    update: Update, text: str, markup: InlineKeyboardMarkup | None = None, *, html: bool = True
) -> Message:
    assert update.effective_message is not None
    return await update.effective_message.reply_text(
        text, parse_mode=ParseMode.HTML if html else None, reply_markup=markup
    )


Answer = Callable[..., Awaitable[None]]


async def withdrawn(update: Update) -> Answer:
    """Delete the command message (it carries a credential: it should not stay in the
    chat's history) and give the way to answer it: in the chat once it is gone, as a
    reply if deleting was refused (an old message, no right to delete in a group)."""
    deleted = False
    if update.effective_message is not None:
        with contextlib.suppress(TelegramError):
            deleted = await update.effective_message.delete()

    async def answer(text: str, *, html: bool = True) -> None:
        if deleted and update.effective_chat is not None:
            await update.effective_chat.send_message(
                text, parse_mode=ParseMode.HTML if html else None
            )
        else:
            await reply(update, text, html=html)

    return answer


def command_handler(
    work: Callable[[Update, Context, int], Awaitable[None]],
) -> Callable[[Update, Context], Coroutine[Any, Any, None]]:
    """A command's body; a TicklerError is answered with its one sentence, as plain text."""

    async def handle(update: Update, context: Context) -> None:
        try:
            await work(update, context, chat_of(update))
        except TicklerError as exc:
            await reply(update, str(exc), html=False)

    handle.__name__ = handle.__qualname__ = work.__name__
    handle.__doc__ = work.__doc__
    return handle


def button_handler(
    work: Callable[[Update, Context, callbacks.Callback, int], Awaitable[Outcome]],
) -> Callable[[Update, Context], Coroutine[Any, Any, None]]:
    """A button's body: the service call happens first (it is quick), then the query is
    answered (a TicklerError's sentence or the outcome's toast), then the message is
    edited or a new one sent."""

    async def handle(update: Update, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        data = callbacks.parse(query.data)
        if update.effective_chat is None or data is None:
            await query.answer(callbacks.STALE_BUTTON)
            return
        try:
            outcome = await work(update, context, data, update.effective_chat.id)
        except TicklerError as exc:
            outcome = Outcome(toast=str(exc))
        except StaleButton:
            outcome = Outcome(toast=callbacks.STALE_BUTTON)
        except Exception:
            # Never leave the button spinning; the error handler logs the rest.
            await query.answer("Something went wrong; please try again.")
            raise
        toast = outcome.toast
        if toast is not None and len(toast) > _MAX_TOAST:
            toast = toast[: _MAX_TOAST - 1] + "…"
        await query.answer(toast)
        if outcome.text is not None:
            await show(update, context, outcome.text, outcome.markup, edit=outcome.edit)

    handle.__name__ = handle.__qualname__ = work.__name__
    handle.__doc__ = work.__doc__
    return handle


def pressed_message(update: Update) -> Message | None:
    """The message whose button was pressed, if the bot can still see and edit it."""
    query = update.callback_query
    if query is None or not isinstance(query.message, Message):
        return None
    return query.message


async def show(
    update: Update,
    context: Context,
    text: str,
    markup: InlineKeyboardMarkup | None = None,
    *,
    edit: bool,
) -> None:
    """Edit the pressed message in place (when asked and possible), else send a new one."""
    message = pressed_message(update)
    if edit and message is not None:
        try:
            await message.edit_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)
        except BadRequest as exc:
            if "not modified" not in exc.message.lower():
                raise
        return
    await context.bot.send_message(
        chat_of(update), text, parse_mode=ParseMode.HTML, reply_markup=markup
    )


def has_button(message: Message | None, data: str) -> bool:
    """Whether `message` still carries a button with this callback data."""
    markup = message.reply_markup if message is not None else None
    if markup is None:
        return False
    return any(b.callback_data == data for row in markup.inline_keyboard for b in row)


def user_names(update: Update) -> dict[int, str]:
    user = update.effective_user
    return {user.id: user.first_name} if user is not None else {}


def _which(command: str, extra: str = "") -> str:
    return f"Which schedule? Use /{command} ID{extra}; /schedules lists them."


# --- the card ---------------------------------------------------------------------------
async def _card(update: Update, context: Context, schedule: Schedule) -> str:
    svc = context.services
    runs = await svc.service.history(schedule.chat_id, schedule.id, limit=1)
    return schedule_card(schedule, svc.clock.now(), runs[0] if runs else None, user_names(update))


def _resumed(schedule: Schedule, skipped: int) -> str:
    text = f"▶️ Resumed <b>{esc(schedule.name)}</b>."
    if schedule.next_run_at is not None:
        text += f" Next fire: {local(schedule.next_run_at, zone_of(schedule))}."
    if skipped:
        windows = "window" if skipped == 1 else "windows"
        verb = "was" if skipped == 1 else "were"
        text += (
            f" {skipped} {windows} that passed while it was paused {verb} recorded as "
            "skipped, not run."
        )
    return text


def to_agent(svc: Services, schedule: Schedule | None) -> bool:
    """Whether a run goes to an agent that answers the chat itself (telegram mode)."""
    return (
        svc.settings.agent_mode == "telegram"
        and schedule is not None
        and schedule.action.kind is ActionKind.AGENT
    )


# --- commands -----------------------------------------------------------------------------
@command_handler
async def list_schedules(update: Update, context: Context, chat_id: int) -> None:
    """/schedules: this chat's schedules, five a page."""
    schedules = await context.services.service.list_schedules(chat_id)
    text, markup, _ = schedules_page(schedules, 0, context.services.clock.now())
    await reply(update, text, markup)


@command_handler
async def show_schedule(update: Update, context: Context, chat_id: int) -> None:
    """/show ID: a schedule's card."""
    if not context.args:
        await reply(update, _which("show"), html=False)
        return
    schedule = await context.services.service.get_schedule(chat_id, context.args[0])
    await reply(update, await _card(update, context, schedule), card_keyboard(schedule))


@command_handler
async def pause(update: Update, context: Context, chat_id: int) -> None:
    """/pause ID [reason]."""
    if not context.args:
        await reply(update, _which("pause"), html=False)
        return
    user = update.effective_user
    reason = " ".join(context.args[1:]).strip() or None
    schedule = await context.services.service.pause(
        chat_id, context.args[0], by=user.id if user else None, reason=reason
    )
    await reply(
        update,
        f"⏸ Paused <b>{esc(schedule.name)}</b>. It will not fire until "
        f"/resume {esc(schedule.ref)}; its history is kept.",
    )


@command_handler
async def resume(update: Update, context: Context, chat_id: int) -> None:
    """/resume ID: fires again from now on; passed windows are recorded as skipped."""
    if not context.args:
        await reply(update, _which("resume"), html=False)
        return
    resumed = await context.services.service.resume(chat_id, context.args[0])
    await reply(update, _resumed(resumed.schedule, resumed.skipped_while_paused))


@command_handler
async def delete(update: Update, context: Context, chat_id: int) -> None:
    """/delete ID: asks to confirm, then archives (history is kept)."""
    if not context.args:
        await reply(update, _which("delete"), html=False)
        return
    schedule = await context.services.service.get_schedule(chat_id, context.args[0])
    text, markup = archive_question(schedule)
    await reply(update, text, markup)


@command_handler
async def run_now(update: Update, context: Context, chat_id: int) -> None:
    """/runnow ID: one extra run, now."""
    if not context.args:
        await reply(update, _which("runnow"), html=False)
        return
    svc = context.services
    requested = await svc.service.request_run(chat_id, context.args[0])
    sends = to_agent(svc, requested.schedule)
    text = run_now_text(requested.schedule, requested.run, requested.behind, to_agent=sends)
    message = await reply(update, text)
    if sends and svc.notifier is not None:
        await svc.notifier.follow_sent_run(chat_id, message.message_id, text, requested.run.id)


# --- buttons ------------------------------------------------------------------------------
@button_handler
async def on_list_page(
    update: Update, context: Context, data: callbacks.Callback, chat_id: int
) -> Outcome:
    """l:<page>: another page of /schedules, in place."""
    page = int_arg(data.action)
    schedules = await context.services.service.list_schedules(chat_id)
    text, markup, _ = schedules_page(schedules, page, context.services.clock.now())
    return Outcome(text=text, markup=markup, edit=True)


@button_handler
async def on_schedule_button(
    update: Update, context: Context, data: callbacks.Callback, chat_id: int
) -> Outcome:
    """s:<action>:<schedule_id>[:c]: the card's buttons (and the alerts' Resume/Run now)."""
    service = context.services.service
    sid = arg(data, 0)
    on_card = data.args[1:2] == (CARD_MARK,)
    user = update.effective_user
    action = data.action
    if action == "show":
        schedule = await service.get_schedule(chat_id, sid)
        return Outcome(text=await _card(update, context, schedule), markup=card_keyboard(schedule))
    if action == "pause":
        schedule = await service.pause(chat_id, sid, by=user.id if user else None)
        return Outcome(
            toast=f"Paused '{schedule.name}'.",
            text=await _card(update, context, schedule),
            markup=card_keyboard(schedule),
            edit=on_card,
        )
    if action == "resume":
        resumed = await service.resume(chat_id, sid)
        schedule, skipped = resumed.schedule, resumed.skipped_while_paused
        toast = f"Resumed '{schedule.name}'."
        if skipped:
            toast += f" {skipped} passed window{'s' if skipped != 1 else ''} recorded as skipped."
        if on_card:
            card = await _card(update, context, schedule)
            return Outcome(toast=toast, text=card, markup=card_keyboard(schedule), edit=True)
        return Outcome(toast=toast, text=_resumed(schedule, skipped))
    if action == "run":
        requested = await service.request_run(chat_id, sid)
        schedule, behind = requested.schedule, requested.behind
        sends = to_agent(context.services, schedule)
        toast = run_now_toast(behind, to_agent=sends)
        if on_card:
            card = await _card(update, context, schedule)
            return Outcome(toast=toast, text=card, markup=card_keyboard(schedule), edit=True)
        return Outcome(
            toast=toast, text=run_now_text(schedule, requested.run, behind, to_agent=sends)
        )
    if action == "edit":
        schedule = await service.get_schedule(chat_id, sid)
        ident = esc(schedule.ref)
        return Outcome(
            text=f"To change <b>{esc(schedule.name)}</b>, send "
            f"<code>/edit {ident} field value</code>, for example "
            f"<code>/edit {ident} name Morning brief</code>."
        )
    if action == "del":
        schedule = await service.get_schedule(chat_id, sid)
        text, markup = archive_question(schedule)
        return Outcome(text=text, markup=markup)
    if action == "arch":
        schedule = await service.archive(chat_id, sid)
        return Outcome(
            toast="Archived.",
            text=f"🗄 Archived <b>{esc(schedule.name)}</b>. It no longer fires; its history "
            "is kept.",
            edit=True,
        )
    if action == "keep":
        schedule = await service.get_schedule(chat_id, sid)
        return Outcome(
            toast="Kept.",
            text=f"Kept <b>{esc(schedule.name)}</b>; nothing changed.",
            edit=True,
        )
    raise StaleButton


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """This family's handlers, in the order PTB tries them."""
    return [
        CommandHandler("schedules", list_schedules),
        CommandHandler("show", show_schedule),
        CommandHandler("pause", pause),
        CommandHandler("resume", resume),
        CommandHandler("delete", delete),
        CommandHandler("runnow", run_now),
        CallbackQueryHandler(on_list_page, pattern=r"^l:"),
        # s:hist belongs to bot/handlers/runs.py, which renders histories.
        CallbackQueryHandler(on_schedule_button, pattern=r"^s:(?!hist(:|$))"),
    ]
