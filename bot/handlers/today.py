"""/today (the operator's home), /followup, /wait, /done, and the buttons of /today
(callback data `w:<action>:<item_id>`: done, wait).

Every item id is looked up in the chat the command or button came from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update, WebAppInfo
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot import callbacks
from bot.context import Context, Services
from bot.handlers.schedules import (
    Outcome,
    arg,
    button_handler,
    command_handler,
    reply,
)
from bot.render import esc, local
from bot.views_bundles import risk_lines
from scheduler.errors import InvalidState
from scheduler.home import is_follow_up_date, parse_follow_up
from scheduler.work_item_model import WorkItem
from scheduler.work_items import FILE_PROOF, WorkItemService

__all__ = ["handlers", "parse_date", "today_text"]

_GROUP_LIMIT = 15

#: `3d`, `2w`, `12h` or `YYYY-MM-DD` (the Mini App parses the same way).
parse_date = parse_follow_up


def _items(svc: Services) -> WorkItemService:
    if svc.work_items is None:
        raise InvalidState("The task list is not running; try again in a moment.")
    return svc.work_items


def _actor(update: Update) -> str:
    user = update.effective_user
    return str(user.id) if user is not None else "operator"


def _item_line(item: WorkItem, zone: str, *, waiting: bool = False) -> str:
    line = f"• <code>{esc(item.id)}</code> {esc(item.title)} — due {local(item.due_at, zone)}"
    if item.proof is not None:
        line += f" (needs a {item.proof.value})"
    if waiting and item.follow_up_at is not None:
        line += (
            f"\n  waiting for {esc(item.waiting_for or '?')}, "
            f"follow up {local(item.follow_up_at, zone)}"
        )
    return line


def _group(title: str, lines: list[str], empty: str) -> str:
    body = "\n".join(lines[:_GROUP_LIMIT]) if lines else f"<i>{empty}</i>"
    if len(lines) > _GROUP_LIMIT:
        body += f"\n… and {len(lines) - _GROUP_LIMIT} more"
    return f"<b>{title}</b>\n{body}"


async def today_text(
    svc: Services, chat_id: int, now: datetime
) -> tuple[str, InlineKeyboardMarkup | None]:
    home = await svc.home.gather(chat_id, now)
    zone, today = home.zone, home.today

    def name(schedule_id: str) -> str:
        return esc(home.name(schedule_id))

    def item_line(i: WorkItem, *, waiting: bool = False) -> str:
        return _item_line(i, home.zone_for(i.schedule_id), waiting=waiting)

    approvals = [f"• proposal <code>{esc(p.id)}</code> {esc(p.name)}" for p in home.proposals] + [
        f"• run <code>{esc(r.id)}</code> of {name(r.schedule_id)} "
        f"({local(r.scheduled_for, home.zone_for(r.schedule_id))})"
        for r in home.awaiting
    ]
    parts = [
        f"📋 <b>Today</b> — {local(now, zone)}",
        _group("Due today", [item_line(i) for i in today.due_today], "Nothing due today"),
        _group("Overdue", [item_line(i) for i in today.overdue], "Nothing overdue"),
        _group(
            "Follow-ups due",
            [item_line(i, waiting=True) for i in today.followups_due],
            "No follow-ups due",
        ),
        _group(
            "Waiting",
            [item_line(i, waiting=True) for i in today.waiting],
            "Not waiting on anyone",
        ),
        _group("Active bundles", [risk_lines(c) for c in home.bundles], "No active bundles"),
        _group("Pending approvals", approvals, "No pending approvals"),
        _group(
            "Tripped schedules",
            [f"• <code>{esc(s.id)}</code> {esc(s.name)}" for s in home.tripped],
            "No tripped schedules",
        ),
        _group(
            "Failed runs (last 24 h)",
            [
                f"• run <code>{esc(r.id)}</code> of {name(r.schedule_id)}: {r.status.value}"
                for r in home.failed
            ],
            "No failed runs",
        ),
    ]
    rows: list[list[InlineKeyboardButton]] = []
    for item in [*today.overdue, *today.due_today, *today.followups_due][:_GROUP_LIMIT]:
        short = item.title if len(item.title) <= 20 else item.title[:19] + "…"
        rows.append(
            [
                InlineKeyboardButton(
                    f"✅ Done: {short}", callback_data=callbacks.make("w", "done", item.id)
                ),
                InlineKeyboardButton("⏳ Wait", callback_data=callbacks.make("w", "wait", item.id)),
            ]
        )
    url = svc.settings.webapp_url
    if url and chat_id > 0:  # Telegram takes a web_app button in private chats only
        rows.append([InlineKeyboardButton("Open Operations Home", web_app=WebAppInfo(url))])
    return "\n\n".join(parts), InlineKeyboardMarkup(rows) if rows else None


@command_handler
async def today(update: Update, context: Context, chat_id: int) -> None:
    """/today: what needs the operator now."""
    svc = context.services
    text, markup = await today_text(svc, chat_id, svc.clock.now())
    await reply(update, text, markup)


@command_handler
async def followup(update: Update, context: Context, chat_id: int) -> None:
    """/followup ITEM sent 3d | /followup ITEM received | /followup 3d WHAT."""
    svc = context.services
    items = _items(svc)
    args = list(context.args or [])
    usage = (
        "Use /followup ITEM sent 3d, /followup ITEM received, "
        "or /followup 3d Sponsor X about the invoice."
    )
    if len(args) < 2:
        raise InvalidState(usage)
    now = svc.clock.now()
    zone = await svc.service.chat_timezone(chat_id)
    if is_follow_up_date(args[0]):
        when = parse_date(args[0], now, zone)
        item = await items.add_followup(chat_id, " ".join(args[1:]), when, actor=_actor(update))
        await reply(
            update,
            f"Follow-up <code>{esc(item.id)}</code> created: {esc(item.title)}, "
            f"due {local(when, zone)}.",
        )
        return
    item = await items.get(chat_id, args[0])
    verb = args[1].lower()
    if verb == "sent":
        if len(args) < 3:
            raise InvalidState("When is the next follow-up? Use /followup ITEM sent 3d.")
        when = parse_date(args[2], now, zone)
        item = await items.followup_sent(item, when, actor=_actor(update), note=" ".join(args[3:]))
        await reply(
            update,
            f"Noted. <code>{esc(item.id)}</code> stays waiting; next follow-up "
            f"{local(when, zone)}.",
        )
    elif verb == "received":
        item = await items.response_received(item, actor=_actor(update), note=" ".join(args[2:]))
        await reply(update, f"<code>{esc(item.id)}</code> is back on your list (todo).")
    else:
        raise InvalidState(usage)


@command_handler
async def wait(update: Update, context: Context, chat_id: int) -> None:
    """/wait ITEM WHO DATE NOTE."""
    svc = context.services
    args = list(context.args or [])
    if len(args) < 4:
        raise InvalidState("Use /wait ITEM WHO DATE NOTE, like /wait ITEM Sponsor 3d asked for it.")
    items = _items(svc)
    item = await items.get(chat_id, args[0])
    zone = await svc.service.chat_timezone(chat_id)
    when = parse_date(args[2], svc.clock.now(), zone)
    item = await items.mark_waiting(item, args[1], when, " ".join(args[3:]), actor=_actor(update))
    await reply(
        update,
        f"<code>{esc(item.id)}</code> waits for {esc(args[1])}; follow up {local(when, zone)}.",
    )


@command_handler
async def done(update: Update, context: Context, chat_id: int) -> None:
    """/done ITEM [link]."""
    svc = context.services
    args = list(context.args or [])
    if not args:
        raise InvalidState("Which item? Use /done ITEM [link]; /today lists them.")
    items = _items(svc)
    item = await items.get(chat_id, args[0])
    item = await items.done(item, " ".join(args[1:]) or None, actor=_actor(update))
    await reply(update, f"Done: {esc(item.title)}.")


@command_handler
async def done_with_file(update: Update, context: Context, chat_id: int) -> None:
    """A file (document or photo) sent with the caption /done ITEM: the file is the proof."""
    message = update.effective_message
    assert message is not None
    words = (message.caption or "").split()
    if len(words) < 2:
        raise InvalidState("Which item? Put /done ITEM in the file's caption.")
    attachment = message.document or (message.photo[-1] if message.photo else None)
    assert attachment is not None
    name = getattr(attachment, "file_name", None) or "photo"
    items = _items(context.services)
    item = await items.get(chat_id, words[1])
    item = await items.done(item, f"{FILE_PROOF}{attachment.file_id} {name}", actor=_actor(update))
    await reply(update, f"Done: {esc(item.title)} (proof: {esc(name)}).")


@button_handler
async def on_item_button(
    update: Update, context: Context, data: callbacks.Callback, chat_id: int
) -> Outcome:
    svc = context.services
    items = _items(svc)
    item = await items.get(chat_id, arg(data, 0))
    if data.action == "done":
        item = await items.done(item, actor=_actor(update))
        return Outcome(toast=f"Done: {item.title}")
    if data.action == "wait":
        return Outcome(toast=f"Use /wait {item.id} WHO DATE NOTE to park it.")
    return Outcome(toast="That button is out of date; send the command again.")


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """This family's handlers, in the order PTB tries them."""
    return [
        CommandHandler("today", today),
        CommandHandler("followup", followup),
        CommandHandler("wait", wait),
        CommandHandler("done", done),
        MessageHandler(
            (filters.Document.ALL | filters.PHOTO) & filters.CaptionRegex(r"^/done(@\w+)?\s"),
            done_with_file,
        ),
        CallbackQueryHandler(on_item_button, pattern=r"^w:"),
    ]
