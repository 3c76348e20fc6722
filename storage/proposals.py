"""SQL for the proposal aggregate: what the agent proposed and who decided. Every
operator-facing query is scoped by chat_id; the expiry sweep reads across chats.

A proposal and its schedule change together: `insert_with_schedule` adds both,
`decide` transitions the proposal and adds or changes its schedule; each runs inside
the caller's one transaction, so a failure part-way leaves neither."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from enum import Enum
from typing import Any

from scheduler.errors import ScheduleNotFound
from scheduler.models import Schedule
from scheduler.proposal_model import Proposal, ProposalStatus
from scheduler.repositories import ScheduleChange
from storage import runs, schedules
from storage.codec import (
    PROPOSAL_COLUMNS,
    from_db_time,
    proposal_from_row,
    proposal_params,
    to_db_time,
)
from storage.sql import Db, fetch_all, fetch_one

_PLACEHOLDERS = ", ".join(":" + c.strip() for c in PROPOSAL_COLUMNS.split(","))
#: Columns a decision may change through `transition`.
_MUTABLE = {"status", "schedule_id", "decided_by", "decided_at", "refusal"}


async def insert(db: Db, proposal: Proposal) -> None:
    await db.execute(
        f"INSERT INTO proposals ({PROPOSAL_COLUMNS}) VALUES ({_PLACEHOLDERS})",
        proposal_params(proposal),
    )


async def insert_with_schedule(
    db: Db, proposal: Proposal, schedule: Schedule | None
) -> Schedule | None:
    """Insert the proposal and the schedule it made (if any): the schedule first, as the
    proposal points at it. The schedule as stored (with its number)."""
    stored = None
    if schedule is not None:
        number = await schedules.insert(db, schedule)
        stored = schedule.model_copy(update={"number": number})
    await insert(db, proposal)
    return stored


async def decide(
    db: Db,
    chat_id: int,
    proposal_id: str,
    *,
    expected: Collection[ProposalStatus],
    changes: dict[str, Any],
    add_schedule: Schedule | None,
    change_schedule: Callable[[Schedule], ScheduleChange] | None,
    archive_at: datetime | None,
) -> Proposal | None:
    """`transition`, and with it the proposal's schedule added, changed or archived;
    None (and nothing else done) when the proposal is no longer at `expected`.
    ScheduleNotFound when the schedule to change is gone."""
    if not await transition(db, chat_id, proposal_id, expected=expected, changes=changes):
        return None
    decided = await get(db, chat_id, proposal_id)
    assert decided is not None
    if add_schedule is not None:
        await schedules.insert(db, add_schedule)
    if change_schedule is not None:
        current = None
        if decided.schedule_id is not None:
            current = await schedules.get(db, chat_id, decided.schedule_id)
        if current is None:
            raise ScheduleNotFound("The proposal's schedule is gone.")
        result = change_schedule(current)
        await schedules.replace(db, result.schedule)
        await runs.insert_many(db, result.new_runs)
    if archive_at is not None and decided.schedule_id is not None:
        await schedules.archive(db, chat_id, decided.schedule_id, archive_at)
    return decided


async def get(db: Db, chat_id: int, proposal_id: str) -> Proposal | None:
    row = await fetch_one(
        db,
        f"SELECT {PROPOSAL_COLUMNS} FROM proposals WHERE id = ? AND chat_id = ?",
        (proposal_id, chat_id),
    )
    return None if row is None else proposal_from_row(row)


async def list_for_chat(
    db: Db,
    chat_id: int,
    *,
    statuses: Collection[ProposalStatus] | None,
    limit: int,
    offset: int,
) -> list[Proposal]:
    where = ["chat_id = ?"]
    params: list[Any] = [chat_id]
    if statuses:
        where.append(f"status IN ({','.join('?' * len(statuses))})")
        params.extend(s.value for s in statuses)
    params += [limit, offset]
    rows = await fetch_all(
        db,
        f"SELECT {PROPOSAL_COLUMNS} FROM proposals WHERE {' AND '.join(where)} "
        "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
        params,
    )
    return [proposal_from_row(r) for r in rows]


async def transition(
    db: Db,
    chat_id: int,
    proposal_id: str,
    *,
    expected: Collection[ProposalStatus],
    changes: dict[str, Any],
) -> bool:
    unknown = set(changes) - _MUTABLE
    if unknown:
        raise ValueError(f"proposal columns not changeable: {sorted(unknown)}")
    if not expected:
        return False
    values: dict[str, Any] = {}
    for key, value in changes.items():
        if isinstance(value, datetime):
            value = to_db_time(value)
        elif isinstance(value, Enum):
            value = value.value
        values[key] = value
    sets = ", ".join(f"{k} = :{k}" for k in values)
    marks = ", ".join(f":s{i}" for i in range(len(expected)))
    params = {**values, "id": proposal_id, "chat_id": chat_id}
    params.update({f"s{i}": s.value for i, s in enumerate(expected)})
    cur = await db.execute(
        f"UPDATE proposals SET {sets} "
        f"WHERE id = :id AND chat_id = :chat_id AND status IN ({marks})",
        params,
    )
    return cur.rowcount == 1


async def pending_expired(db: Db, now: datetime) -> list[Proposal]:
    rows = await fetch_all(
        db,
        f"SELECT {PROPOSAL_COLUMNS} FROM proposals "
        "WHERE status = 'pending' AND expires_at IS NOT NULL AND expires_at <= ? "
        "ORDER BY expires_at",
        (to_db_time(now),),
    )
    return [proposal_from_row(r) for r in rows]


async def earliest_expiry(db: Db) -> datetime | None:
    row = await fetch_one(
        db,
        "SELECT MIN(expires_at) FROM proposals WHERE status = 'pending' AND expires_at IS NOT NULL",
    )
    return from_db_time(row[0]) if row else None
