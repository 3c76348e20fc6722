"""Plain messages go to the agent, so the bot is a conversational front end."""

from __future__ import annotations

from telegram import Update
from telegram.constants import ChatAction
from telegram.ext import Application, ContextTypes, MessageHandler, filters

from bot.context import services
from bot.render import split_message
from scheduler.dispatch import DispatchError

#: The recent turns kept per chat as context for `openai` mode, bounded both ways.
HISTORY_TURNS = 20
HISTORY_CHARS = 12_000


async def forward(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Send a plain message to the agent; in `openai` mode post its answer back."""
    message, chat = update.effective_message, update.effective_chat
    assert message is not None and chat is not None and message.text is not None
    svc = services(context)
    chat_data = context.chat_data if context.chat_data is not None else {}
    history: list[dict[str, str]] = chat_data.setdefault("history", [])
    history.append({"role": "user", "content": message.text})
    _trim(history)
    await context.bot.send_chat_action(chat.id, ChatAction.TYPING)
    try:
        result = await svc.dispatcher.forward_chat(
            update=update.to_dict(),
            history=list(history),
            idempotency_key=f"chat:{chat.id}:{message.message_id}",
        )
    except DispatchError as exc:
        history.pop()
        await message.reply_text(
            f"Your agent did not take that message ({str(exc).rstrip('.')}); try again in a moment."
        )
        return
    if result.output:
        history.append({"role": "assistant", "content": result.output})
        _trim(history)
        # Plain text: whatever the agent writes is shown as written, never parsed.
        for part in split_message(result.output):
            await message.reply_text(part)


def _trim(history: list[dict[str, str]]) -> None:
    del history[:-HISTORY_TURNS]
    while len(history) > 1 and sum(len(t["content"]) for t in history) > HISTORY_CHARS:
        del history[0]


def register(app: Application) -> None:  # type: ignore[type-arg]
    # Non-blocking: an agent that takes a minute must not hold up commands meanwhile.
    app.add_handler(
        MessageHandler(
            filters.TEXT & ~filters.COMMAND & filters.UpdateType.MESSAGE, forward, block=False
        )
    )
