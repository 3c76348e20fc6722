"""The allow-list: only ADMIN_IDS and OPERATOR_IDS are served."""

from __future__ import annotations

from telegram import Update
from telegram.ext import ApplicationHandlerStop

from bot.context import Context

REFUSAL = "Sorry, this bot is private. Ask its owner to add your Telegram id to the allow-list."


async def gate(update: Update, context: Context) -> None:
    """Stop every update from a user who is not allow-listed, with one polite refusal."""
    user = update.effective_user
    svc = context.services
    if svc.is_allowed(user.id if user else None):
        chat = update.effective_chat
        if chat is not None and (await svc.store.chats.get(chat.id)).blocked_at is not None:
            # They wrote to us, so they unblocked the bot: deliver alerts again.
            await svc.store.chats.set_blocked(chat.id, None, svc.clock.now())
        return
    if update.callback_query is not None:
        await update.callback_query.answer(REFUSAL, show_alert=True)
    elif update.effective_message is not None and update.effective_chat is not None:
        await update.effective_message.reply_text(REFUSAL)
    raise ApplicationHandlerStop
