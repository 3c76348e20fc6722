"""SQL for the outbox: chat messages written before they are sent (bot/outbox.py)."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from scheduler.repositories import Notification, NotificationStatus
from storage import sinks
from storage.codec import from_db_time, opt_time, to_db_time
from storage.sql import Db, Row, fetch_all, fetch_one

_COLUMNS = (
    "id, chat_id, kind, text, parse_mode, reply_markup_json, run_id, schedule_id, "
    "proposal_id, item_id, status, attempts, next_attempt_at, created_at, sent_at, "
    "message_id, last_error"
)
_PLACEHOLDERS = ", ".join("?" * len(_COLUMNS.split(",")))


def _params(n: Notification) -> tuple[Any, ...]:
    markup = (
        None
        if n.reply_markup is None
        else json.dumps(n.reply_markup, ensure_ascii=False, sort_keys=True)
    )
    return (
        n.id,
        n.chat_id,
        n.kind,
        n.text,
        n.parse_mode,
        markup,
        n.run_id,
        n.schedule_id,
        n.proposal_id,
        n.item_id,
        n.status.value,
        n.attempts,
        opt_time(n.next_attempt_at),
        to_db_time(n.created_at),
        opt_time(n.sent_at),
        n.message_id,
        n.last_error,
    )


def _from_row(row: Row) -> Notification:
    created_at = from_db_time(row[13])
    assert created_at is not None
    return Notification(
        id=row[0],
        chat_id=row[1],
        kind=row[2],
        text=row[3],
        parse_mode=row[4],
        reply_markup=None if row[5] is None else json.loads(row[5]),
        run_id=row[6],
        schedule_id=row[7],
        proposal_id=row[8],
        item_id=row[9],
        status=NotificationStatus(row[10]),
        attempts=row[11],
        next_attempt_at=from_db_time(row[12]),
        created_at=created_at,
        sent_at=from_db_time(row[14]),
        message_id=row[15],
        last_error=row[16],
    )


async def insert_many(db: Db, notifications: Sequence[Notification]) -> None:
    await db.executemany(
        f"INSERT INTO notifications ({_COLUMNS}) VALUES ({_PLACEHOLDERS})",
        [_params(n) for n in notifications],
    )
    # The chat's sinks get theirs in the same transaction: a notice is never lost to them.
    await sinks.enqueue(db, notifications)


async def status_of(db: Db, notification_id: str) -> NotificationStatus | None:
    row = await fetch_one(db, "SELECT status FROM notifications WHERE id = ?", (notification_id,))
    return None if row is None else NotificationStatus(row[0])


async def queue_of(db: Db, chat_id: int, limit: int) -> list[Notification]:
    rows = await fetch_all(
        db,
        f"SELECT {_COLUMNS} FROM notifications WHERE chat_id = ? AND status = 'pending' "
        "ORDER BY id LIMIT ?",
        (chat_id, limit),
    )
    return [_from_row(r) for r in rows]


async def chats_waiting(db: Db, due_by: datetime | None) -> list[int]:
    where = "status = 'pending'"
    params: tuple[Any, ...] = ()
    if due_by is not None:
        where += " AND next_attempt_at <= ?"
        params = (to_db_time(due_by),)
    rows = await fetch_all(
        db,
        f"SELECT chat_id, MIN(id) AS oldest FROM notifications WHERE {where} "
        "GROUP BY chat_id ORDER BY oldest",
        params,
    )
    return [int(r[0]) for r in rows]


async def earliest_due(db: Db) -> datetime | None:
    row = await fetch_one(
        db, "SELECT MIN(next_attempt_at) FROM notifications WHERE status = 'pending'"
    )
    return from_db_time(row[0]) if row else None


async def mark_sent(db: Db, notification_id: str, message_id: int, now: datetime) -> None:
    await db.execute(
        "UPDATE notifications SET status = 'sent', message_id = ?, sent_at = ?, "
        "attempts = attempts + 1, next_attempt_at = NULL WHERE id = ?",
        (message_id, to_db_time(now), notification_id),
    )


async def postpone(db: Db, notification_id: str, error: str, next_attempt_at: datetime) -> None:
    await db.execute(
        "UPDATE notifications SET attempts = attempts + 1, last_error = ?, "
        "next_attempt_at = ? WHERE id = ? AND status = 'pending'",
        (error, to_db_time(next_attempt_at), notification_id),
    )


async def settle(
    db: Db,
    notification_id: str,
    status: NotificationStatus,
    error: str,
) -> None:
    if status in (NotificationStatus.PENDING, NotificationStatus.SENT):
        raise ValueError(f"a message is not settled as {status.value}")
    await db.execute(
        "UPDATE notifications SET status = ?, last_error = ?, next_attempt_at = NULL "
        "WHERE id = ? AND status = 'pending'",
        (status.value, error, notification_id),
    )


async def block_pending(db: Db, chat_id: int, reason: str) -> int:
    cur = await db.execute(
        "UPDATE notifications SET status = 'blocked', last_error = ?, next_attempt_at = NULL "
        "WHERE chat_id = ? AND status = 'pending'",
        (reason, chat_id),
    )
    return cur.rowcount


async def sent_for_proposal(db: Db, chat_id: int, proposal_id: str) -> Notification | None:
    row = await fetch_one(
        db,
        f"SELECT {_COLUMNS} FROM notifications WHERE proposal_id = ? AND chat_id = ? "
        "AND kind = 'proposal' AND status = 'sent' ORDER BY id DESC LIMIT 1",
        (proposal_id, chat_id),
    )
    return None if row is None else _from_row(row)


async def sent_for_run(db: Db, chat_id: int, run_id: str) -> Notification | None:
    row = await fetch_one(
        db,
        f"SELECT {_COLUMNS} FROM notifications WHERE run_id = ? AND chat_id = ? "
        "AND kind = 'run_sent' AND status = 'sent' ORDER BY id DESC LIMIT 1",
        (run_id, chat_id),
    )
    return None if row is None else _from_row(row)


async def list_for_chat(
    db: Db,
    chat_id: int,
    *,
    statuses: Collection[NotificationStatus] | None,
    limit: int,
) -> list[Notification]:
    where = "chat_id = ?"
    params: list[Any] = [chat_id]
    if statuses:
        where += f" AND status IN ({','.join('?' * len(statuses))})"
        params.extend(s.value for s in statuses)
    rows = await fetch_all(
        db,
        f"SELECT {_COLUMNS} FROM notifications WHERE {where} ORDER BY id LIMIT ?",
        [*params, limit],
    )
    return [_from_row(r) for r in rows]
