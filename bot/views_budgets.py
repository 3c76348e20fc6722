"""How budgets read in the chat: the notice of a schedule paused at its budget (with its
buttons, callback data `bg:<choice>:<schedule_id>:<stamp>:<[c]r|[c]t>`: c for the chat's
budget, r or t for runs or tokens) and the /budget screen."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import callbacks
from bot.render import esc, local
from scheduler.budgets import PERIODS, BudgetKind, BudgetScope, BudgetUse, UseReport, amount
from scheduler.engine_store import BudgetPause
from scheduler.models import PauseKind, RunTrigger, Schedule
from scheduler.repositories import ChatPrefs

__all__ = ["budget_buttons", "budget_notice", "budget_screen", "limits_line"]


def budget_buttons(
    schedule: Schedule, kind: BudgetKind, limit: int, scope: BudgetScope
) -> InlineKeyboardMarkup:
    """[Raise to 2×limit] [Run once more] [Keep paused], bound to this very pause: its
    `updated_at` (epoch seconds) makes a notice of an older pause, or a second press,
    change nothing."""
    stamp = int(schedule.updated_at.timestamp())
    k = ("c" if scope is BudgetScope.CHAT else "") + ("r" if kind is BudgetKind.RUNS else "t")

    def data(choice: str) -> str:
        return callbacks.make("bg", choice, schedule.id, stamp, k)

    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(f"Raise to {limit * 2:,}", callback_data=data("raise")),
                InlineKeyboardButton("Run once more", callback_data=data("once")),
                InlineKeyboardButton("Keep paused", callback_data=data("keep")),
            ]
        ]
    )


def budget_notice(paused: BudgetPause) -> tuple[str, InlineKeyboardMarkup]:
    """⏸ 'Nightly report' reached its budget: 10 runs this week. [Raise to 20] ..."""
    schedule = paused.schedule
    whose = "this chat's budget" if paused.scope is BudgetScope.CHAT else "its budget"
    what = "the run an event fired" if paused.run.trigger is RunTrigger.EVENT else "the fire"
    text = (
        f"⏸ '{esc(schedule.name)}' reached {whose}: "
        f"{amount(paused.kind, paused.limit)} this week. It is paused; {what} at "
        f"{local(paused.run.scheduled_for, schedule.timezone)} was skipped."
    )
    return text, budget_buttons(schedule, paused.kind, paused.limit, paused.scope)


def limits_line(runs: int | None, tokens: int | None) -> str:
    parts = []
    if runs is not None:
        parts.append(f"{amount(BudgetKind.RUNS, runs)}/week")
    if tokens is not None:
        parts.append(f"{amount(BudgetKind.TOKENS, tokens)}/week")
    return ", ".join(parts) if parts else "none"


def _use(use: dict[str, BudgetUse]) -> str:
    return " · ".join(
        f"{period} {u.runs} run{'s' if u.runs != 1 else ''}, {u.tokens:,} tokens"
        for period, u in ((p, use.get(p, BudgetUse())) for p, _ in PERIODS)
    )


def budget_screen(prefs: ChatPrefs, report: UseReport, schedules: list[Schedule]) -> str:
    """/budget: the chat's limits, its use (day, week, month: the last 1, 7 and 30
    days), and each schedule's use and budget."""
    chat_limit = limits_line(prefs.budget_runs_per_week, prefs.budget_tokens_per_week)
    lines = [
        "<b>Budget</b> (a week is the last 7 days)",
        f"This chat's limit: {chat_limit}",
        f"Used: {_use(report.chat)}",
    ]
    for schedule in schedules:
        used = report.by_schedule.get(schedule.id, {})
        policies = schedule.policies
        limit = limits_line(policies.budget_runs_per_week, policies.budget_tokens_per_week)
        if not used and limit == "none":
            continue
        paused = (
            " ⏸ paused at its budget"
            if not schedule.enabled and schedule.pause_kind is PauseKind.BUDGET
            else ""
        )
        lines.append(
            f"\n<b>{esc(schedule.ref)} {esc(schedule.name)}</b>{paused}\n"
            f"  limit: {limit}\n  used: {_use(used)}"
        )
    lines.append(
        "\nSet the chat's limit with <code>/budget runs 50</code>, "
        "<code>/budget tokens 200000</code> or <code>/budget off</code>; a schedule's with "
        "<code>/edit ID budget_runs 10</code>."
    )
    return "\n".join(lines)
