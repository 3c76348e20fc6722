"""/start, /help and /tz."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.constants import ParseMode
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.callbacks import STALE_BUTTON
from bot.commands import COMMANDS
from bot.context import Context
from bot.render import esc
from scheduler.errors import TicklerError


async def start(update: Update, context: Context) -> None:
    """Welcome and the shortest path to a first schedule."""
    assert update.effective_chat is not None and update.effective_message is not None
    zone = await context.services.service.chat_timezone(update.effective_chat.id)
    await update.effective_message.reply_text(
        "Hi! I keep your agent's recurring work on time.\n\n"
        f"This chat's time zone is <b>{esc(zone)}</b> (change it with /tz).\n"
        "Create a schedule with /new, list them with /schedules, and /help shows "
        "everything. Anything you write that is not a command goes to your agent.",
        parse_mode=ParseMode.HTML,
    )


async def help_command(update: Update, context: Context) -> None:
    """Every command with its one-line description."""
    assert update.effective_message is not None
    lines = [f"/{name} — {esc(text)}" for name, text in COMMANDS]
    await update.effective_message.reply_text("\n".join(lines), parse_mode=ParseMode.HTML)


async def tz(update: Update, context: Context) -> None:
    """Show the chat's zone, or set it: /tz Europe/Berlin."""
    assert update.effective_chat is not None and update.effective_message is not None
    service = context.services.service
    chat_id = update.effective_chat.id
    if not context.args:
        zone = await service.chat_timezone(chat_id)
        await update.effective_message.reply_text(
            f"This chat's time zone is {zone}. Set another with /tz followed by an IANA "
            "name, like /tz Europe/Berlin."
        )
        return
    try:
        zone = await service.set_chat_timezone(chat_id, " ".join(context.args))
    except TicklerError as exc:
        await update.effective_message.reply_text(str(exc))
        return
    await update.effective_message.reply_text(
        f"Time zone set to {zone}. New schedules in this chat use it."
    )


async def unknown_command(update: Update, context: Context) -> None:
    """Any command no handler took."""
    assert update.effective_message is not None
    await update.effective_message.reply_text("I don't know that command; /help lists them.")


async def unknown_button(update: Update, context: Context) -> None:
    """A button press no handler took (data no keyboard of ours carries): answered, so
    the user's button does not spin until Telegram gives up."""
    assert update.callback_query is not None
    await update.callback_query.answer(STALE_BUTTON)


def fallbacks() -> list[BaseHandler[Any, Context, Any]]:
    """Registered after every other handler: only what nothing else matched lands here."""
    return [
        MessageHandler(filters.COMMAND, unknown_command),
        CallbackQueryHandler(unknown_button),
    ]


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """This family's handlers, in the order PTB tries them."""
    return [
        CommandHandler("start", start),
        CommandHandler("help", help_command),
        CommandHandler("tz", tz),
    ]
