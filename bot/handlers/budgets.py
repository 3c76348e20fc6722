"""/budget (the chat's limits and its use) and the buttons of a budget notice (callback
data `bg:<raise|once|keep>:<schedule_id>:<stamp>:<[c]r|[c]t>`, bot/views_budgets.py)."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot import callbacks
from bot.context import Context
from bot.handlers.schedules import (
    Outcome,
    StaleButton,
    arg,
    button_handler,
    command_handler,
    int_arg,
    reply,
)
from bot.render import esc
from bot.views_budgets import budget_screen, limits_line
from scheduler.budgets import BudgetKind, BudgetScope, amount
from scheduler.errors import InvalidSchedule
from scheduler.service import BudgetChoice

__all__ = ["handlers"]

_USAGE = (
    "Use /budget to see this chat's use, /budget runs N or /budget tokens N to set the "
    "chat's weekly limit, /budget runs off to remove one, /budget off to remove both."
)


def _number(text: str) -> int | None:
    if text.lower() in {"off", "none"}:
        return None
    try:
        return int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise InvalidSchedule(f"'{text}' is not a number; {_USAGE}") from None


@command_handler
async def budget(update: Update, context: Context, chat_id: int) -> None:
    """/budget [runs N|tokens N|off]: the chat's budget and its use."""
    svc = context.services.service
    args = context.args or []
    if args:
        user = update.effective_user
        if not context.services.is_admin(user.id if user else None):
            # The budget's own buttons are an admin's; so is the limit they guard.
            await reply(update, "Only an admin can change this chat's budget.", html=False)
            return
        prefs, _, _ = await svc.budget_use(chat_id)
        runs, tokens = prefs.budget_runs_per_week, prefs.budget_tokens_per_week
        if args == ["off"]:
            runs = tokens = None
        elif len(args) == 2 and args[0].lower() in {"runs", "tokens"}:
            if args[0].lower() == "runs":
                runs = _number(args[1])
            else:
                tokens = _number(args[1])
        else:
            await reply(update, _USAGE, html=False)
            return
        await svc.set_chat_budget(chat_id, runs, tokens)
        await reply(update, f"This chat's weekly limit: {esc(limits_line(runs, tokens))}.")
        return
    prefs, report, schedules = await svc.budget_use(chat_id)
    await reply(update, budget_screen(prefs, report, schedules))


@button_handler
async def on_budget_button(
    update: Update, context: Context, data: callbacks.Callback, chat_id: int
) -> Outcome:
    """bg:<choice>:<schedule_id>:<stamp>:<r|t>: a budget notice's buttons (admins only)."""
    try:
        choice = BudgetChoice(data.action)
    except ValueError:
        raise StaleButton from None
    sid, stamp = arg(data, 0), int_arg(arg(data, 1))
    code = arg(data, 2)
    scope = BudgetScope.CHAT if code.startswith("c") else BudgetScope.SCHEDULE
    kind = {"r": BudgetKind.RUNS, "t": BudgetKind.TOKENS}.get(code.removeprefix("c"))
    if kind is None:
        raise StaleButton
    user = update.effective_user
    if not context.services.is_admin(user.id if user else None):
        return Outcome(toast="Only an admin can answer a budget notice.")
    answered = await context.services.service.budget_choice(
        chat_id, sid, choice, stamp=stamp, kind=kind, scope=scope
    )
    schedule = answered.schedule
    name = esc(schedule.name)
    if choice is BudgetChoice.KEEP:
        text = f"⏸ '{name}' stays paused; /resume {esc(schedule.ref)} starts it again."
        return Outcome(toast="Kept paused.", text=text, edit=True)
    if choice is BudgetChoice.RAISE:
        limit = answered.limit
        assert limit is not None
        whose = "This chat's" if scope is BudgetScope.CHAT else f"'{name}'"
        text = f"▶️ {whose} budget raised to {amount(kind, limit)} a week; '{name}' fires again."
        return Outcome(toast="Budget raised.", text=text, edit=True)
    text = f"▶️ '{name}' runs once more past its budget, then pauses again."
    return Outcome(toast="Resumed for one more run.", text=text, edit=True)


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """This family's handlers, in the order PTB tries them."""
    return [
        CommandHandler("budget", budget),
        CallbackQueryHandler(on_budget_button, pattern=r"^bg:"),
    ]
