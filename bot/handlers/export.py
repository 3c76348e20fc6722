"""/export: this chat's data (schedules, their runs and attempts, proposals, the chat's
preferences) as JSONL files in a zip, sent as a document."""

from __future__ import annotations

import logging
from typing import Any

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import BaseHandler, CommandHandler

from bot.context import Context
from bot.handlers.schedules import command_handler, reply
from bot.redact import secrets_of
from storage.database import DatabaseUnavailable
from storage.export import export_chat

__all__ = ["handlers"]

log = logging.getLogger("tickler.export")


@command_handler
async def export(update: Update, context: Context, chat_id: int) -> None:
    """/export: only this chat's rows; runs and attempts through their schedule's chat."""
    message = update.effective_message
    if message is None:
        return
    settings = context.services.settings
    try:
        data = await export_chat(settings.database, chat_id, secrets=secrets_of(settings))
        await message.reply_document(
            document=data,
            filename=f"tickler-export-{chat_id}.zip",
            caption="This chat's schedules, runs, proposals and settings as JSONL files.",
        )
    except Exception as exc:
        # The operator asked and waits: say why here, not only in the log.
        log.exception("/export failed", extra={"chat_id": chat_id})
        await reply(update, failed_text(exc), html=False)


def failed_text(exc: Exception) -> str:
    """One sentence: the export failed, why, and what to do."""
    if isinstance(exc, ValueError | DatabaseUnavailable | TelegramError):
        why = str(exc).rstrip(".")
        why = why[:1].lower() + why[1:]
    else:
        why = "an unexpected error"
    return f"The export failed ({why}); nothing was sent, try again later or see the log."


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """This family's handlers, in the order PTB tries them."""
    return [
        CommandHandler("export", export),
    ]
