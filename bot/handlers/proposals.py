"""The buttons on the agent's proposals: p:<approve|reject|undo>:<proposal_id>.

Only an admin's press counts; anyone else is told so and nothing changes. Each answer
is a guarded transition in the store, so a second press (or one after expiry) is
answered with what the proposal already is, and applied once. The id is looked up in
the chat the button was pressed in: forged data for another chat's proposal finds
nothing ("That proposal does not exist here.").
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, ContextTypes

from bot import callbacks
from bot.context import services
from bot.handlers.schedules import (
    Outcome,
    StaleButton,
    arg,
    button_handler,
    has_button,
    pressed_message,
)
from bot.render import MAX_MESSAGE, esc
from bot.views_proposals import settled_line
from scheduler.errors import InvalidSchedule

__all__ = ["register"]

Context = ContextTypes.DEFAULT_TYPE

_TOASTS = {"approve": "Approved.", "reject": "Rejected.", "undo": "Undone."}


def _settled(update: Update, toast: str, line: str) -> Outcome:
    """The pressed message with what happened appended and its buttons gone; a new
    message if the pressed one does not carry the pressed button."""
    message = pressed_message(update)
    query = update.callback_query
    pressed = query.data if query is not None else None
    if message is None or not message.text or not pressed or not has_button(message, pressed):
        return Outcome(toast=toast, text=line)
    text = f"{message.text_html}\n\n{line}"
    if len(text) > MAX_MESSAGE:
        return Outcome(toast=toast, text=line)
    return Outcome(toast=toast, text=text, edit=True)


@button_handler
async def on_proposal_button(
    update: Update, context: Context, data: callbacks.Callback, chat_id: int
) -> Outcome:
    """p:<approve|reject|undo>:<proposal_id>: an admin's answer, applied once."""
    svc = services(context)
    proposals = svc.proposals
    if proposals is None or data.action not in _TOASTS:
        raise StaleButton
    proposal_id = arg(data, 0)
    user = update.effective_user
    if user is None or not svc.is_admin(user.id):
        return Outcome(toast=f"Only an admin can {data.action} this.")
    act = {
        "approve": proposals.approve,
        "reject": proposals.reject,
        "undo": proposals.undo,
    }[data.action]
    try:
        proposal = await act(chat_id, proposal_id, by=user.id)
    except InvalidSchedule as exc:
        # Approved, but it can no longer be created (a limit, a moment that passed).
        return _settled(update, "Could not activate it.", f"⚠️ {esc(str(exc))}")
    who = esc(user.first_name)
    return _settled(update, _TOASTS[data.action], settled_line(data.action, who, proposal))


def register(app: Application) -> None:  # type: ignore[type-arg]
    """Add this family's handlers."""
    app.add_handler(CallbackQueryHandler(on_proposal_button, pattern=r"^p:"))
