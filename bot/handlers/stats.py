"""/stats [24h|7d|30d]: how this chat's schedules have been doing."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CommandHandler

from bot.context import services
from bot.handlers.schedules import Context, command_handler, reply
from bot.views_stats import stats_text
from scheduler.stats import chat_stats

__all__ = ["register"]


@command_handler
async def stats(update: Update, context: Context, chat_id: int) -> None:
    """Runs by outcome, fire lag and agent time over a window (default 7 days)."""
    svc = services(context)
    window = context.args[0] if context.args else None
    await reply(
        update,
        stats_text(
            await chat_stats(svc.store.runs, svc.store.schedules, svc.clock, chat_id, window)
        ),
    )


def register(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("stats", stats))
