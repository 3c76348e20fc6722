"""/approve, and the buttons on the agent's proposals: p:<approve|reject|undo>:<proposal_id>.

Only an admin's press counts; anyone else is told so and nothing changes. Each answer
is a guarded transition in the store, so a second press (or one after expiry) is
answered with what the proposal already is, and applied once. The id is looked up in
the chat the button was pressed in: forged data for another chat's proposal finds
nothing ("That proposal does not exist here.").
"""

from __future__ import annotations

from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot import callbacks
from bot.context import Context
from bot.handlers.schedules import (
    Outcome,
    StaleButton,
    arg,
    button_handler,
    command_handler,
    has_button,
    pressed_message,
    reply,
)
from bot.render import MAX_MESSAGE, esc, local, zone_of
from bot.views_proposals import settled_line
from scheduler.errors import InvalidSchedule, InvalidState, ProposalNotFound, RunNotFound, shown
from scheduler.models import Run, Schedule
from scheduler.proposals import Proposal

__all__ = ["handlers"]


#: Items /approve lists of each kind, and the length of a button's label.
SHOWN = 10
LABEL = 40

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
    svc = context.services
    proposals = svc.proposals
    if proposals is None or data.action not in _TOASTS:
        raise StaleButton
    proposal_id = arg(data, 0)
    user = update.effective_user
    if user is None:
        raise StaleButton
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


def _waiting_list(
    proposals: list[Proposal], runs: list[Run], schedules: dict[str, Schedule]
) -> tuple[str, InlineKeyboardMarkup | None]:
    if not proposals and not runs:
        return "Nothing is waiting for approval.", None
    lines = ["<b>Waiting for approval</b>"]
    buttons: list[list[InlineKeyboardButton]] = []
    for proposal in proposals[:SHOWN]:
        lines.append(
            f"• {esc(proposal.name)}: your agent's proposal ({proposal.tier.value}), "
            f"/approve {proposal.id}"
        )
        label = f"Approve {proposal.name}"[:LABEL]
        buttons.append(
            [InlineKeyboardButton(label, callback_data=callbacks.make("p", "approve", proposal.id))]
        )
    for run in runs[:SHOWN]:
        schedule = schedules.get(run.schedule_id)
        if schedule is None:
            continue  # archived meanwhile; the engine skips it at its deadline
        when = local(run.scheduled_for, zone_of(schedule))
        lines.append(f"• {esc(schedule.name)}: the run of {when}, /approve {run.id}")
        label = f"Run {schedule.name}"[:LABEL]
        buttons.append(
            [InlineKeyboardButton(label, callback_data=callbacks.make("r", "approve", run.id))]
        )
    return "\n".join(lines), InlineKeyboardMarkup(buttons)


@command_handler
async def approve(update: Update, context: Context, chat_id: int) -> None:
    """/approve lists what waits for an answer; /approve ID approves that proposal or run."""
    svc = context.services
    proposals = svc.proposals
    if proposals is None:
        raise InvalidState("Approvals are not running yet; try again in a moment.")
    if not context.args:
        pending, runs = await proposals.awaiting_approval(chat_id)
        schedules = {s.id: s for s in await svc.service.list_schedules(chat_id)}
        text, markup = _waiting_list(pending, runs, schedules)
        await reply(update, text, markup)
        return
    item_id = context.args[0]
    try:
        await proposals.get(chat_id, item_id)
    except ProposalNotFound:
        await _approve_run(update, context, chat_id, item_id)
        return
    user = update.effective_user
    if user is None:
        raise InvalidState("Only an admin can approve a proposal.")
    proposal = await proposals.approve(chat_id, item_id, by=user.id)
    await reply(update, settled_line("approve", esc(user.first_name), proposal))


async def _approve_run(update: Update, context: Context, chat_id: int, run_id: str) -> None:
    service = context.services.service
    try:
        run = await service.approve_run(chat_id, run_id)
    except RunNotFound:
        raise InvalidState(
            f"Nothing waits for approval as '{shown(run_id)}' here; /approve lists what does."
        ) from None
    schedule = await service.get_schedule(chat_id, run.schedule_id)
    when = local(run.scheduled_for, zone_of(schedule))
    await reply(update, f"👍 Approved; the run of {esc(schedule.name)} for {when} runs now.")


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """This family's handlers, in the order PTB tries them."""
    return [
        CommandHandler("approve", approve),
        CallbackQueryHandler(on_proposal_button, pattern=r"^p:"),
    ]
