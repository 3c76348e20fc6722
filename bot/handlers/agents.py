"""/agent: this chat's own agent (admins only). `/agent` shows it (the secret masked);
`/agent url|mode|secret|model VALUE` changes one setting (`off` clears it);
`/agent reset` goes back to the default agent (AGENT_URL)."""

from __future__ import annotations

from functools import partial
from typing import Any

from telegram import Update
from telegram.ext import BaseHandler, CommandHandler

from bot.context import Context
from bot.handlers.schedules import command_handler, reply, withdrawn
from bot.views_agents import agent_screen
from scheduler.chat_agents import InvalidAgent

__all__ = ["handlers"]

_USAGE = (
    "Use /agent to see this chat's agent, /agent url URL, /agent mode openai|telegram, "
    "/agent secret SECRET or /agent model NAME to change one setting (off clears it), "
    "/agent reset to go back to the default agent."
)
_FIELDS = ("url", "mode", "secret", "model")


@command_handler
async def agent(update: Update, context: Context, chat_id: int) -> None:
    """/agent [url|mode|secret|model VALUE | reset]: this chat's own agent."""
    svc = context.services
    user = update.effective_user
    args = context.args or []
    # The secret should not stay in the chat's history; the setting applies anyway.
    secret = bool(args) and args[0].lower() == "secret"
    answer = await withdrawn(update) if secret else partial(reply, update)

    if not svc.is_admin(user.id if user else None):
        await answer("Only an admin can see or change this chat's agent.", html=False)
        return
    if not args:
        await answer(agent_screen(await svc.agents.get(chat_id)))
        return
    if args == ["reset"]:
        gone = await svc.agents.reset(chat_id)
        text = "Back to the default agent." if gone else "This chat already uses the default agent."
        await answer(text, html=False)
        return
    field = args[0].lower()
    if field not in _FIELDS or len(args) != 2:
        await answer(_USAGE, html=False)
        return
    value = None if args[1].lower() == "off" else args[1]
    try:
        changed = await svc.agents.update(chat_id, **{field: value})
    except InvalidAgent as exc:
        await answer(str(exc), html=False)
        return
    await answer(agent_screen(changed))


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """This family's handlers, in the order PTB tries them."""
    return [CommandHandler("agent", agent)]
