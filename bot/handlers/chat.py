"""Plain messages go to the agent, so the bot is a conversational front end.

In `openai` mode the agent may call tools (scheduler/agent_tools.py): propose a
schedule, list the chat's schedules, pause one. Each call runs for this chat (a
proposal goes through the same policy and approvals as one made over the HTTP API),
its result goes back as a `tool` message and the model is asked again; at most
MAX_TOOL_ROUNDS answers have their tools run, then the final answer is posted.
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import Message, Update
from telegram.constants import ChatAction, ReactionEmoji
from telegram.error import TelegramError
from telegram.ext import BaseHandler, MessageHandler, filters

from bot.context import Context, Services
from bot.render import split_message
from scheduler.agent_tools import TOOLS, AgentTools
from scheduler.dispatching import DispatchError, DispatchResult

log = logging.getLogger("tickler.bot")

#: The reactions on a plain message forwarded in telegram mode: the agent took it, or not.
DELIVERED = ReactionEmoji.THUMBS_UP
NOT_DELIVERED = ReactionEmoji.THUMBS_DOWN
#: The recent turns kept per chat as context for `openai` mode, bounded both ways.
HISTORY_TURNS = 20
HISTORY_CHARS = 12_000
#: How many answers in a row may have their tool calls run; a model that still asks
#: for tools after that gets no more (its text, if any, is posted).
MAX_TOOL_ROUNDS = 3
TOOLS_STOPPED = (
    f"Your agent kept calling tools, so I stopped after {MAX_TOOL_ROUNDS} rounds; "
    "ask again if something is missing."
)


async def forward(update: Update, context: Context) -> None:
    """Send a plain message to the agent; in `openai` mode post its answer back."""
    message, chat = update.effective_message, update.effective_chat
    assert message is not None and chat is not None and message.text is not None
    svc = context.services
    chat_data = context.chat_data if context.chat_data is not None else {}
    history: list[dict[str, str]] = chat_data.setdefault("history", [])
    history.append({"role": "user", "content": message.text})
    _trim(history)
    await context.bot.send_chat_action(chat.id, ChatAction.TYPING)
    # In telegram mode the agent answers through its own bot, so this chat never sees an
    # answer from Tickler: a reaction on the message says whether the agent got it.
    marks = svc.settings.agent_mode == "telegram"
    try:
        result, exhausted = await _converse(svc, update, message, list(history))
    except DispatchError as exc:
        history.pop()
        if marks:
            await _mark(message, NOT_DELIVERED)
        await message.reply_text(
            f"Your agent did not take that message ({str(exc).rstrip('.')}); try again in a moment."
        )
        return
    if marks:
        await _mark(message, DELIVERED)
    output = result.output
    if not output and exhausted:
        output = TOOLS_STOPPED
    if output:
        history.append({"role": "assistant", "content": output})
        _trim(history)
        # Plain text: whatever the agent writes is shown as written, never parsed.
        for part in split_message(output):
            await message.reply_text(part)


async def _converse(
    svc: Services, update: Update, message: Message, history: list[dict[str, str]]
) -> tuple[DispatchResult, bool]:
    """Ask the agent; run the tool calls of its answer and ask again, up to
    MAX_TOOL_ROUNDS times. The final answer, and whether it still asked for tools
    after the last round. The tool turns are not kept in the chat's history: the next
    message starts from the operator's words and the agent's final answers."""
    chat_id = message.chat_id
    key = f"chat:{chat_id}:{message.message_id}"
    tools = None
    spec = await svc.dispatcher.spec_for(chat_id)
    agent = svc.dispatcher.dispatcher(spec)
    if spec.mode == "openai" and svc.proposals is not None:
        tools = AgentTools(svc.service, svc.proposals)
    turns: list[dict[str, Any]] = list(history)
    zone = await svc.service.chat_timezone(chat_id)
    result = await agent.forward_chat(
        update=update.to_dict(),
        history=turns,
        idempotency_key=key,
        now=svc.clock.now(),
        timezone=zone,
        tools=TOOLS if tools is not None else None,
    )
    for round_ in range(1, MAX_TOOL_ROUNDS + 1):
        if tools is None or not result.tool_calls:
            break
        turns.append(
            {"role": "assistant", "content": result.output, "tool_calls": result.tool_calls}
        )
        for call in result.tool_calls:
            turns.append(
                {
                    "role": "tool",
                    "tool_call_id": str(call.get("id", "")),
                    "content": await tools.call(chat_id, call),
                }
            )
        await message.get_bot().send_chat_action(chat_id, ChatAction.TYPING)
        result = await agent.forward_chat(
            update=update.to_dict(),
            history=turns,
            idempotency_key=f"{key}:{round_}",
            now=svc.clock.now(),
            timezone=zone,
            tools=TOOLS,
        )
    return result, tools is not None and bool(result.tool_calls)


async def _mark(message: Message, emoji: str) -> None:
    try:
        await message.set_reaction(emoji)
    except TelegramError as exc:
        # A chat may allow no reactions; the mark is a courtesy, never worth an error.
        log.info("could not mark a forwarded message: %s", exc, extra={"chat_id": message.chat_id})


def _trim(history: list[dict[str, str]]) -> None:
    del history[:-HISTORY_TURNS]
    while len(history) > 1 and sum(len(t["content"]) for t in history) > HISTORY_CHARS:
        del history[0]


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """This family's handlers, in the order PTB tries them."""
    return [
        # Non-blocking: an agent that takes a minute must not hold up commands meanwhile.
        MessageHandler(
            filters.TEXT & ~filters.COMMAND & filters.UpdateType.MESSAGE, forward, block=False
        ),
    ]
