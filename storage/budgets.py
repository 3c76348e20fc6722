"""SQL for spend and volume control (scheduler/budgets.py decides; this reads and writes).

A schedule's use is read only for schedules that have a budget, and only when one of
their fires is claimed: schedules without one cost nothing here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from scheduler.budgets import BudgetLimits, BudgetUse, UseRow, total_tokens
from scheduler.models import PauseKind
from storage.codec import from_db_time, to_db_time
from storage.sql import Db, fetch_all, fetch_one

__all__ = [
    "BudgetSummary",
    "allowance",
    "chat_budgets",
    "chat_use",
    "chat_use_rows",
    "grant_allowance",
    "schedule_use",
    "set_chat_budget",
    "spend_allowance",
    "summary",
]


def _tokens(text: str | None) -> int:
    if not text:
        return 0
    try:
        usage = json.loads(text)
    except ValueError:
        return 0
    return total_tokens(usage) if isinstance(usage, dict) else 0


async def schedule_use(db: Db, schedule_id: str, since: datetime) -> BudgetUse:
    """Runs of the schedule started at or after `since`, and their tokens."""
    rows = await fetch_all(
        db,
        "SELECT token_usage_json FROM runs WHERE schedule_id = ? AND started_at IS NOT NULL "
        "AND started_at >= ?",
        (schedule_id, to_db_time(since)),
    )
    return BudgetUse(runs=len(rows), tokens=sum(_tokens(r[0]) for r in rows))


async def chat_use(db: Db, chat_id: int, since: datetime) -> BudgetUse:
    """Runs of the chat's schedules started at or after `since`, and their tokens."""
    rows = await fetch_all(
        db,
        "SELECT token_usage_json FROM runs WHERE chat_id = ? AND started_at IS NOT NULL "
        "AND started_at >= ?",
        (chat_id, to_db_time(since)),
    )
    return BudgetUse(runs=len(rows), tokens=sum(_tokens(r[0]) for r in rows))


async def chat_budgets(db: Db) -> dict[int, BudgetLimits]:
    """Every chat that has a budget, with it."""
    rows = await fetch_all(
        db,
        "SELECT chat_id, budget_runs_per_week, budget_tokens_per_week FROM chats "
        "WHERE budget_runs_per_week IS NOT NULL OR budget_tokens_per_week IS NOT NULL",
    )
    return {int(r[0]): BudgetLimits(r[1], r[2]) for r in rows}


async def chat_use_rows(db: Db, chat_id: int, since: datetime) -> list[UseRow]:
    """Every run of the chat started at or after `since`: what /budget sums."""
    rows = await fetch_all(
        db,
        "SELECT schedule_id, started_at, token_usage_json FROM runs WHERE chat_id = ? "
        "AND started_at IS NOT NULL AND started_at >= ?",
        (chat_id, to_db_time(since)),
    )
    out: list[UseRow] = []
    for schedule_id, started_at, usage in rows:
        started = from_db_time(started_at)
        assert started is not None
        out.append(UseRow(schedule_id, started, _tokens(usage)))
    return out


@dataclass(frozen=True)
class BudgetSummary:
    """What `tickler doctor` says about budgets."""

    schedules: int  # active schedules with a budget of their own
    chats: int  # chats with a budget (/budget)
    paused: list[tuple[int, str]]  # (chat, name) of schedules paused at a budget


async def summary(db: Db) -> BudgetSummary:
    rows = await fetch_all(
        db,
        "SELECT chat_id, name, policies_json, enabled, pause_kind FROM schedules "
        "WHERE archived_at IS NULL",
    )
    budgeted = 0
    paused: list[tuple[int, str]] = []
    for chat_id, name, policies_json, enabled, pause_kind in rows:
        try:
            policies = json.loads(policies_json)
        except ValueError:
            continue  # unreadable: the engine quarantines it and says so
        if isinstance(policies, dict) and (
            policies.get("budget_runs_per_week") is not None
            or policies.get("budget_tokens_per_week") is not None
        ):
            budgeted += 1
        if not enabled and pause_kind == PauseKind.BUDGET.value:
            paused.append((int(chat_id), str(name)))
    return BudgetSummary(budgeted, len(await chat_budgets(db)), paused)


async def allowance(db: Db, schedule_id: str) -> int:
    """Extra runs an operator allowed the schedule past its budget."""
    row = await fetch_one(
        db, "SELECT extra_runs FROM budget_allowances WHERE schedule_id = ?", (schedule_id,)
    )
    return int(row[0]) if row else 0


async def spend_allowance(db: Db, schedule_id: str, now: datetime) -> None:
    await db.execute(
        "UPDATE budget_allowances SET extra_runs = extra_runs - 1, updated_at = ? "
        "WHERE schedule_id = ? AND extra_runs > 0",
        (to_db_time(now), schedule_id),
    )


async def grant_allowance(db: Db, schedule_id: str, extra_runs: int, now: datetime) -> None:
    """Set (not add to) the schedule's allowance: pressing twice grants it once."""
    when = to_db_time(now)
    await db.execute(
        "INSERT INTO budget_allowances (schedule_id, extra_runs, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (schedule_id) DO UPDATE SET extra_runs = excluded.extra_runs, "
        "updated_at = excluded.updated_at",
        (schedule_id, extra_runs, when),
    )


async def set_chat_budget(
    db: Db, chat_id: int, runs: int | None, tokens: int | None, now: datetime
) -> None:
    when = to_db_time(now)
    await db.execute(
        "INSERT INTO chats (chat_id, budget_runs_per_week, budget_tokens_per_week, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (chat_id) DO UPDATE SET "
        "budget_runs_per_week = excluded.budget_runs_per_week, "
        "budget_tokens_per_week = excluded.budget_tokens_per_week, "
        "updated_at = excluded.updated_at",
        (chat_id, runs, tokens, when, when),
    )
