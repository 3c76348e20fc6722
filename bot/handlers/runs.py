"""/history, /run, /deadletters, /retry and the buttons about runs:

    h:<page>, s:hist:<schedule_id>[:<page>]   history pages
    r:show:<run_id>                           a run's detail (/run RUN_ID)
    r:<retry|done|drop|approve|skip>:<run_id> a run (alerts, /deadletters, approvals)
    m:<latest|all|skip>:<schedule_id>:<a>:<b> missed fires between epoch seconds a and b

Every id is looked up in the chat the command or button came from.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot import callbacks, views_runs
from bot.context import Context
from bot.handlers.schedules import (
    Outcome,
    StaleButton,
    arg,
    button_handler,
    command_handler,
    has_button,
    int_arg,
    pressed_message,
    reply,
    to_agent,
)
from bot.render import MAX_MESSAGE, esc, zone_of
from bot.views_schedules import (
    HISTORY_PAGE,
    dead_letter,
    dead_letters_header,
    history_page,
    missed_already,
    missed_outcome,
)
from scheduler.errors import InvalidState
from scheduler.models import Run

__all__ = ["handlers"]

Choice = Literal["latest", "all", "skip"]

#: How many dead letters /deadletters shows, one message each.
DEAD_LETTERS_SHOWN = 10


# --- history ------------------------------------------------------------------------------
async def _history(
    context: Context, chat_id: int, schedule_id: str | None, page: int
) -> tuple[str, InlineKeyboardMarkup | None]:
    service = context.services.service
    page = max(page, 0)
    schedule = await service.get_schedule(chat_id, schedule_id) if schedule_id else None
    runs = await service.history(
        chat_id, schedule_id, limit=HISTORY_PAGE + 1, offset=page * HISTORY_PAGE
    )
    if schedule is not None:
        zones = {schedule.id: zone_of(schedule)}
        names = {schedule.id: schedule.name}
        default_zone = zone_of(schedule)
    else:
        schedules = await service.list_schedules(chat_id)
        zones = {s.id: zone_of(s) for s in schedules}
        names = {s.id: s.name for s in schedules}
        default_zone = await service.chat_timezone(chat_id)
    return history_page(
        runs[:HISTORY_PAGE],
        page=page,
        has_more=len(runs) > HISTORY_PAGE,
        zones=zones,
        default_zone=default_zone,
        names=names,
        schedule=schedule,
    )


@command_handler
async def history(update: Update, context: Context, chat_id: int) -> None:
    """/history [ID]: the newest runs of the chat, or of one schedule."""
    schedule_id = context.args[0] if context.args else None
    text, markup = await _history(context, chat_id, schedule_id, 0)
    await reply(update, text, markup)


@button_handler
async def on_history_page(
    update: Update, context: Context, data: callbacks.Callback, chat_id: int
) -> Outcome:
    """h:<page> (the chat) and s:hist:<id>[:<page>] (a schedule, from a card or alert)."""
    if data.kind == "h":
        text, markup = await _history(context, chat_id, None, int_arg(data.action))
        return Outcome(text=text, markup=markup, edit=True)
    schedule_id = arg(data, 0)
    page = int_arg(data.args[1]) if len(data.args) > 1 else None
    text, markup = await _history(context, chat_id, schedule_id, page or 0)
    # A page button turns the page in place; History on a card or alert opens a new one.
    return Outcome(text=text, markup=markup, edit=page is not None)


# --- one run ------------------------------------------------------------------------------
@command_handler
async def run_detail(update: Update, context: Context, chat_id: int) -> None:
    """/run RUN_ID: one run in detail."""
    if not context.args:
        await reply(
            update, "Which run? Use /run RUN_ID; /history has a button for each.", html=False
        )
        return
    detail = await context.services.service.run_detail(chat_id, context.args[0])
    await reply(update, views_runs.run_detail(detail.run, detail.attempts, detail.schedule))


@button_handler
async def on_run_detail(
    update: Update, context: Context, data: callbacks.Callback, chat_id: int
) -> Outcome:
    """r:show:<run_id>: a /history line's button opens the run's detail (a new message)."""
    detail = await context.services.service.run_detail(chat_id, arg(data, 0))
    return Outcome(text=views_runs.run_detail(detail.run, detail.attempts, detail.schedule))


# --- dead letters --------------------------------------------------------------------------
@command_handler
async def dead_letters(update: Update, context: Context, chat_id: int) -> None:
    """/deadletters: dead and uncertain runs, each with its buttons."""
    service = context.services.service
    runs = await service.dead_letters(chat_id, limit=DEAD_LETTERS_SHOWN + 1)
    shown = runs[:DEAD_LETTERS_SHOWN]
    await reply(update, dead_letters_header(len(shown), len(runs) > len(shown)))
    if not shown:
        return
    schedules = {s.id: s for s in await service.list_schedules(chat_id)}
    chat_zone = await service.chat_timezone(chat_id)
    for run in shown:
        schedule = schedules.get(run.schedule_id)
        name = schedule.name if schedule else f"Archived schedule {run.schedule_id}"
        zone = zone_of(schedule) if schedule else chat_zone
        text, markup = dead_letter(run, name, zone)
        await reply(update, text, markup)


@command_handler
async def retry(update: Update, context: Context, chat_id: int) -> None:
    """/retry RUN_ID: send a dead or uncertain run again."""
    if not context.args:
        await reply(update, "Which run? Use /retry RUN_ID; /deadletters lists them.", html=False)
        return
    svc = context.services
    run = await svc.service.retry(chat_id, context.args[0])
    sends = to_agent(svc, (await svc.service.run_detail(chat_id, run.id)).schedule)
    text = (
        f"🔁 Sending run <code>{esc(run.id)}</code> again with the same idempotency key; "
        + views_runs.answer_where(sends)
    )
    message = await reply(update, text)
    if sends and svc.notifier is not None:
        await svc.notifier.follow_sent_run(chat_id, message.message_id, text, run.id)


# --- run buttons ----------------------------------------------------------------------------
_DONE = {
    "retry": ("Sent again.", "🔁 Sent again by {who}; {where}"),
    "done": ("Marked done.", "✅ Marked done by {who}."),
    "drop": ("Dropped.", "🚫 Dropped by {who}; it will not run."),
    "approve": ("Approved.", "👍 Approved by {who}; it runs now."),
    "skip": ("Skipped.", "⏭ Skipped by {who}; it will not run."),
}


def _without(markup: InlineKeyboardMarkup | None, suffix: str) -> InlineKeyboardMarkup | None:
    """The keyboard minus the buttons whose data ends with `suffix` (one run's or one
    window's buttons); None when nothing is left."""
    if markup is None:
        return None
    rows: list[list[InlineKeyboardButton]] = [
        [
            b
            for b in row
            if not (isinstance(b.callback_data, str) and b.callback_data.endswith(suffix))
        ]
        for row in markup.inline_keyboard
    ]
    kept = [row for row in rows if row]
    return InlineKeyboardMarkup(kept) if kept else None


def _settled(update: Update, toast: str, line: str, suffix: str) -> Outcome:
    """The pressed message with what happened appended and the buttons it answered
    removed; a new message if the pressed one does not carry the pressed button (or
    cannot be edited)."""
    message: Message | None = pressed_message(update)
    query = update.callback_query
    pressed = query.data if query is not None else None
    if message is None or not message.text or not pressed or not has_button(message, pressed):
        return Outcome(toast=toast, text=line)
    text = f"{message.text_html}\n\n{line}"
    if len(text) > MAX_MESSAGE:  # no room to append: say it in a message of its own
        return Outcome(toast=toast, text=line)
    return Outcome(
        toast=toast,
        text=text,
        markup=_without(message.reply_markup, suffix),
        edit=True,
    )


def _who(update: Update) -> str:
    user = update.effective_user
    return esc(user.first_name) if user is not None else "an operator"


@button_handler
async def on_run_button(
    update: Update, context: Context, data: callbacks.Callback, chat_id: int
) -> Outcome:
    """r:<action>:<run_id>: applied once; a second press says what the run already is."""
    service = context.services.service
    run_id = arg(data, 0)
    actions = {
        "retry": service.retry,
        "done": service.mark_done,
        "drop": service.drop,
        "approve": service.approve_run,
        "skip": service.skip_run,
    }
    act = actions.get(data.action)
    if act is None:
        raise StaleButton
    try:
        await act(chat_id, run_id)
    except InvalidState:
        if data.action != "retry":
            raise  # "That run is already <status>."
        current: Run = await service.get_run(chat_id, run_id)
        return Outcome(toast=f"That run is already {current.status.value}.")
    toast, line = _DONE[data.action]
    where = ""
    if data.action == "retry":
        schedule = (await service.run_detail(chat_id, run_id)).schedule
        where = views_runs.answer_where(to_agent(context.services, schedule))
    return _settled(update, toast, line.format(who=_who(update), where=where), f":{run_id}")


# --- missed fires ----------------------------------------------------------------------------
@button_handler
async def on_missed_button(
    update: Update, context: Context, data: callbacks.Callback, chat_id: int
) -> Outcome:
    """m:<latest|all|skip>:<schedule_id>:<a>:<b>: the operator's answer to missed fires."""
    if data.action not in ("latest", "all", "skip"):
        raise StaleButton
    choice = cast(Choice, data.action)
    schedule_id = arg(data, 0)
    a, b = int_arg(arg(data, 1)), int_arg(arg(data, 2))
    try:
        first = datetime.fromtimestamp(a, UTC)
        # The data holds whole seconds: the last fire may be a fraction later.
        last = datetime.fromtimestamp(b + 1, UTC) - timedelta(microseconds=1)
    except (OverflowError, OSError, ValueError):
        raise StaleButton from None
    service = context.services.service
    changed = await service.settle_missed(chat_id, schedule_id, first, last, choice)
    runs = await service.history(chat_id, schedule_id, limit=1000)
    window = [r for r in runs if first <= r.scheduled_for <= last]
    text = missed_outcome(choice, window)
    query = update.callback_query
    if query is None or not has_button(pressed_message(update), query.data or ""):
        # Answered before (its buttons are gone) or forged: say where things stand.
        return Outcome(toast=missed_already(window) if changed == 0 else text)
    return _settled(update, text, f"{esc(text)} (chosen by {_who(update)})", f":{a}:{b}")


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """This family's handlers, in the order PTB tries them."""
    return [
        CommandHandler("history", history),
        CommandHandler("deadletters", dead_letters),
        CommandHandler("retry", retry),
        CommandHandler("run", run_detail),
        CallbackQueryHandler(on_history_page, pattern=r"^(h:|s:hist(:|$))"),
        # Before on_run_button, which takes every other r: button.
        CallbackQueryHandler(on_run_detail, pattern=r"^r:show:"),
        CallbackQueryHandler(on_run_button, pattern=r"^r:"),
        CallbackQueryHandler(on_missed_button, pattern=r"^m:"),
    ]
