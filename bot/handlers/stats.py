"""/stats [24h|7d|30d]: how this chat's schedules have been doing."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import BaseHandler, CommandHandler

from bot.context import Context
from bot.handlers.schedules import command_handler, reply
from bot.views_stats import stats_text
from scheduler.stats import chat_stats

__all__ = ["handlers"]


@command_handler
async def stats(update: Update, context: Context, chat_id: int) -> None:
    """Runs by outcome, fire lag and agent time over a window (default 7 days)."""
    svc = context.services
    window = context.args[0] if context.args else None
    await reply(
        update,
        stats_text(
            await chat_stats(svc.store.runs, svc.store.schedules, svc.clock, chat_id, window)
        ),
    )


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """This family's handlers, in the order PTB tries them."""
    return [
        CommandHandler("stats", stats),
    ]
