"""/sinks: a chat's notification sinks (webhook, Slack, e-mail; scheduler/sinks.py)."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import BaseHandler, CommandHandler

from bot.context import Context
from bot.handlers.schedules import command_handler, reply, withdrawn
from bot.redact import remember
from bot.views_sinks import USAGE, added_text, sinks_screen
from scheduler.errors import TicklerError

__all__ = ["handlers"]


@command_handler
async def sinks(update: Update, context: Context, chat_id: int) -> None:
    """/sinks [add KIND TARGET [events] [secret] | events ID LIST | remove ID]."""
    service = context.services.sinks
    args = context.args or []
    if not args:
        await reply(update, sinks_screen(await service.list(chat_id)))
        return
    user = update.effective_user
    if not context.services.is_admin(user.id if user else None):
        await reply(update, "Only an admin can change this chat's sinks.", html=False)
        return
    verb = args[0].lower()
    if verb == "add" and 3 <= len(args) <= 5:
        # A Slack URL or a webhook's secret is a credential (the sink is added anyway).
        answer = await withdrawn(update)
        try:
            added = await service.add(
                chat_id,
                args[1],
                args[2],
                events=args[3] if len(args) > 3 else None,
                secret=args[4] if len(args) > 4 else None,
                created_by=user.id if user else None,
            )
        except TicklerError as error:
            await answer(str(error), html=False)
            return
        remember([added.sink.secret])
        await answer(added_text(added), html=True)
    elif verb == "remove" and len(args) == 2:
        await service.remove(chat_id, args[1])
        await reply(update, f"📮 Removed the sink {args[1]}.", html=False)
    elif verb == "events" and len(args) >= 3:
        await service.set_events(chat_id, args[1], ",".join(args[2:]))
        await reply(update, sinks_screen(await service.list(chat_id)))
    else:
        await reply(update, USAGE, html=False)


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    return [CommandHandler("sinks", sinks)]
