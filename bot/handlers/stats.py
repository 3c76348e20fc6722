"""/stats [24h|7d|30d]: how this chat's schedules have been doing, in words and a chart."""

from __future__ import annotations

import logging
from typing import Any

from telegram import Update
from telegram.ext import BaseHandler, CommandHandler

from bot.context import Context
from bot.handlers.schedules import command_handler, reply
from bot.stats_chart import render_png_async
from bot.views_stats import chart_caption, chart_failed_text, stats_text
from scheduler.stats import chat_stats

__all__ = ["handlers"]

log = logging.getLogger("tickler.stats")


@command_handler
async def stats(update: Update, context: Context, chat_id: int) -> None:
    """Runs by outcome, fire lag, agent time and tokens over a window (default 7 days),
    then the same days as a picture."""
    svc = context.services
    window = context.args[0] if context.args else None
    zone = await svc.service.chat_timezone(chat_id)
    store = svc.store
    figures = await chat_stats(store.runs, store.schedules, svc.clock, chat_id, window, zone)
    await reply(update, stats_text(figures))
    message = update.effective_message
    assert message is not None
    try:
        png = await render_png_async(figures)
        await message.reply_photo(photo=png, filename="stats.png", caption=chart_caption(figures))
    except Exception as exc:
        # The text above already has every figure: say the picture is missing and why.
        log.exception("/stats chart failed", extra={"chat_id": chat_id})
        await reply(update, chart_failed_text(exc), html=False)


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """This family's handlers, in the order PTB tries them."""
    return [
        CommandHandler("stats", stats),
    ]
