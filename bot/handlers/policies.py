"""The [Policies] button of a schedule's card: a menu of the enumerated policies
(`o:menu:<id>`), and a press on one of its choices (`o:set:<id>:<setting>:<value>`),
which edits the menu in place. The numbers are set with /edit (bot/handlers/edit.py);
both go through ScheduleService.change_setting, which validates.
"""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler

from bot import callbacks
from bot.context import Context
from bot.handlers.schedules import Outcome, StaleButton, arg, button_handler
from bot.schedule_edits import admin_only
from bot.views_policies import policies_menu, setting_line
from scheduler.errors import AdminOnly

__all__ = ["handlers"]


@button_handler
async def on_policy_button(
    update: Update, context: Context, data: callbacks.Callback, chat_id: int
) -> Outcome:
    """o:menu:<id> opens the menu; o:set:<id>:<setting>:<value> changes one policy."""
    service = context.services.service
    sid = arg(data, 0)
    if data.action == "menu":
        schedule = await service.get_schedule(chat_id, sid)
        text, markup = policies_menu(schedule)
        return Outcome(text=text, markup=markup)
    if data.action == "set":
        setting, value = arg(data, 1), arg(data, 2)
        user = update.effective_user
        if admin_only(setting) and not context.services.is_admin(user.id if user else None):
            # The menu has no budget button; forged data gets the same answer as /edit.
            raise AdminOnly("Only an admin can change a schedule's budget.")
        schedule = await service.change_setting(chat_id, sid, setting, value)
        text, markup = policies_menu(schedule)
        # The menu's settings are enumerations: their line holds no user text to escape.
        toast = f"{setting_line(schedule, setting)}."
        return Outcome(toast=toast, text=text, markup=markup, edit=True)
    raise StaleButton


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """This family's handlers, in the order PTB tries them."""
    return [
        CallbackQueryHandler(on_policy_button, pattern=r"^o:"),
    ]
