"""/edit ID FIELD VALUE: change one thing about a schedule.

    /edit ID name New name          /edit ID prompt New prompt text
    /edit ID cron 0 8 * * 1-5       /edit ID tz Europe/Paris (a cron fires in the new zone;
                                     other kinds are shown in it)
    /edit ID every 2h               (an interval keeps its anchor; anything else starts
                                     at the next full hour)
    /edit ID overlap queue          a policy: missed, catchup, overlap, attempts, backoff,
                                     backoff_cap, timeout, on_timeout, approval
    /edit ID proof link             a task's proof, assignee or instructions

The work, and the rule that a budget is an admin's, is bot/schedule_edits.py's, shared
with the Mini App's edit form.

The schedule is looked up in this chat first, so an id from another chat answers
exactly like one that does not exist.
"""

from __future__ import annotations

import re
from typing import Any

from telegram import Update
from telegram.constants import ParseMode
from telegram.ext import BaseHandler, CommandHandler

from bot.context import Context
from bot.schedule_edits import edit_schedule
from bot.views_new import edited_text
from bot.views_policies import changed_text
from scheduler.errors import TicklerError

__all__ = ["handlers"]

USAGE = (
    "Write /edit ID followed by a setting (name, prompt, cron, tz, every, or a policy "
    "such as overlap) and the new value, like /edit ID every 2h."
)


async def edit(update: Update, context: Context) -> None:
    """/edit ID FIELD VALUE."""
    assert update.effective_chat is not None and update.effective_message is not None
    message = update.effective_message
    chat_id = update.effective_chat.id
    match = re.match(r"/\S+\s*(\S*)\s*(\S*)\s*(.*)", message.text or "", re.DOTALL)
    schedule_id, field, value = match.groups() if match else ("", "", "")
    if not schedule_id:
        await message.reply_text(USAGE)
        return
    user = update.effective_user
    try:
        edited = await edit_schedule(
            context.services, chat_id, schedule_id, field, value, user_id=user.id if user else None
        )
    except TicklerError as error:
        await message.reply_text(str(error))
        return
    if edited.setting:
        await message.reply_text(
            changed_text(edited.schedule, edited.field), parse_mode=ParseMode.HTML
        )
        return
    await message.reply_text(edited_text(edited.schedule), parse_mode=ParseMode.HTML)


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """This family's handlers, in the order PTB tries them."""
    return [
        CommandHandler("edit", edit),
    ]
