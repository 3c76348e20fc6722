"""SQL for spend and volume control (scheduler/budgets.py decides; this reads and writes).

A schedule's use is read only for schedules that have a budget, and only when one of
their fires is claimed: schedules without one cost nothing here.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from scheduler.budgets import (
    NO_LIMITS,
    BudgetLimits,
    BudgetScope,
    BudgetUse,
    UseRow,
    has_budget,
    total_tokens,
    verdict,
    window_start,
)
from scheduler.engine_store import BudgetPause
from scheduler.models import PauseKind, Run, RunStatus, Schedule, SkipReason
from storage import schedules
from storage.codec import from_db_time, to_db_time
from storage.sql import Db, fetch_all, fetch_one

__all__ = [
    "BudgetSummary",
    "allowance",
    "chat_budgets",
    "chat_use",
    "chat_use_rows",
    "gate",
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


async def _use(db: Db, column: str, value: object, since: datetime) -> BudgetUse:
    # Runs written but not started yet (waiting for a slot, for approval, behind a busy
    # schedule) count too: each will start unless someone stops it, and a burst of
    # events must not pass the budget before the first of them has started.
    when = to_db_time(since)
    rows = await fetch_all(
        db,
        f"SELECT token_usage_json FROM runs WHERE {column} = ? AND (started_at >= ? "
        "OR (started_at IS NULL AND status IN ('pending', 'awaiting_approval') "
        "AND created_at >= ?))",
        (value, when, when),
    )
    return BudgetUse(runs=len(rows), tokens=sum(_tokens(r[0]) for r in rows))


async def schedule_use(db: Db, schedule_id: str, since: datetime) -> BudgetUse:
    """Runs of the schedule started (or written to start) at or after `since`, and
    their tokens."""
    return await _use(db, "schedule_id", schedule_id, since)


async def chat_use(db: Db, chat_id: int, since: datetime) -> BudgetUse:
    """Runs of the chat's schedules started (or written to start) at or after `since`,
    and their tokens."""
    return await _use(db, "chat_id", chat_id, since)


async def chat_budgets(db: Db, chat_ids: Collection[int] | None = None) -> dict[int, BudgetLimits]:
    """Every chat that has a budget (of `chat_ids`, when given), with it."""
    sql = (
        "SELECT chat_id, budget_runs_per_week, budget_tokens_per_week FROM chats "
        "WHERE (budget_runs_per_week IS NOT NULL OR budget_tokens_per_week IS NOT NULL)"
    )
    params: tuple[object, ...] = ()
    if chat_ids is not None:
        if not chat_ids:
            return {}
        ids = sorted(chat_ids)
        sql += f" AND chat_id IN ({', '.join('?' * len(ids))})"
        params = tuple(ids)
    rows = await fetch_all(db, sql, params)
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


async def gate(
    db: Db,
    schedule: Schedule,
    fired: Sequence[Run],
    now: datetime,
    chat_limits: dict[int, BudgetLimits],
    counted: dict[int, BudgetUse],
) -> tuple[list[Run], BudgetPause] | None:
    """Whether the runs a fire of `schedule` writes (`fired`) go on within its budget and
    its chat's (`chat_limits`, the chats with one): None when they do (an allowance spent
    if need be), else `fired` written skipped and the schedule paused, for the notice.
    `counted` carries what one claim let through, so the chat's next schedules count it.
    The rule is `scheduler.budgets.verdict`; schedules without a budget, in a chat without
    one, cost no query."""
    starting = sum(1 for r in fired if r.status is not RunStatus.SKIPPED)
    chat = chat_limits.get(schedule.chat_id)
    if not starting or (chat is None and not has_budget(schedule.policies)):
        return None
    since = window_start(now)
    use = (
        await schedule_use(db, schedule.id, since) if has_budget(schedule.policies) else BudgetUse()
    )
    used_by_chat: BudgetUse | None = None
    if chat is not None:
        used_by_chat = counted.get(schedule.chat_id)
        if used_by_chat is None:
            used_by_chat = await chat_use(db, schedule.chat_id, since)
    limits = chat or NO_LIMITS
    decided = verdict(schedule.policies, use, 0, chat=limits, chat_use=used_by_chat)
    if decided.pause and decided.scope is BudgetScope.CHAT:
        # The chat's budget may have been raised since it was read (a claim keeps it a
        # while): pause on the budget as it is now, never on an old one.
        fresh = (await chat_budgets(db, [schedule.chat_id])).get(schedule.chat_id)
        if fresh != chat:
            if fresh is None:
                chat_limits.pop(schedule.chat_id, None)
            else:
                chat_limits[schedule.chat_id] = fresh
            limits = fresh or NO_LIMITS
            decided = verdict(schedule.policies, use, 0, chat=limits, chat_use=used_by_chat)
    if decided.pause:
        decided = verdict(
            schedule.policies,
            use,
            await allowance(db, schedule.id),
            chat=limits,
            chat_use=used_by_chat,
        )
    if decided.spend:
        await spend_allowance(db, schedule.id, now)
    if not decided.pause:
        if used_by_chat is not None:
            counted[schedule.chat_id] = BudgetUse(used_by_chat.runs + starting, used_by_chat.tokens)
        return None
    assert decided.kind is not None and decided.limit is not None
    reason = decided.reason
    await schedules.pause_for_budget(db, schedule.id, reason, now)
    written = [
        r
        if r.status is RunStatus.SKIPPED
        else r.model_copy(
            update={
                "status": RunStatus.SKIPPED,
                "skip_reason": SkipReason.BUDGET,
                "error": reason,
                "next_attempt_at": None,
                "finished_at": now,
            }
        )
        for r in fired
    ]
    if used_by_chat is not None:
        counted[schedule.chat_id] = used_by_chat
    after = schedule.model_copy(
        update={
            "enabled": False,
            "paused_by": None,
            "pause_reason": reason,
            "pause_kind": PauseKind.BUDGET,
            "updated_at": from_db_time(to_db_time(now)),
        }
    )
    skipped = next(r for r in written if r.skip_reason is SkipReason.BUDGET)
    return written, BudgetPause(after, skipped, decided.kind, decided.limit, decided.scope)
