"""SQL for notification sinks (scheduler/sinks.py) and their deliveries (bot/sinks.py)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from datetime import datetime

from scheduler.repositories import Notification
from scheduler.sinks import MAX_SINKS, Delivery, Sink, SinkKind, SinkStatus, event_of
from storage.codec import from_db_time, opt_time, to_db_time
from storage.sql import Connection, Db, Row, fetch_all, fetch_one

_COLUMNS = (
    "id, chat_id, kind, target, secret, events, status, failing_since, last_error, "
    "created_by, created_at"
)
_TAG = re.compile(r"<[^>]+>")


def _sink(row: Row) -> Sink:
    created_at = from_db_time(row[10])
    assert created_at is not None
    return Sink(
        id=row[0],
        chat_id=int(row[1]),
        kind=SinkKind(row[2]),
        target=row[3],
        secret=row[4],
        events=tuple(json.loads(row[5])),
        status=SinkStatus(row[6]),
        failing_since=from_db_time(row[7]),
        last_error=row[8],
        created_by=row[9],
        created_at=created_at,
    )


def plain(text: str, parse_mode: str | None) -> str:
    """The chat's message as plain text: a sink gets the facts, not Telegram's HTML."""
    if parse_mode != "HTML":
        return text
    return html.unescape(_TAG.sub("", text))


async def enqueue(db: Db, notifications: Sequence[Notification]) -> None:
    """Each notice for every active sink of its chat that takes its event, in the
    caller's transaction (the chat's own notification is written in it too)."""
    for n in notifications:
        event = event_of(n.kind)
        if event is None:
            continue
        await db.execute(
            "INSERT INTO sink_deliveries (sink_id, notification_id, chat_id, event, text, "
            "schedule_id, schedule_name, run_id, created_at, status, attempts, "
            "next_attempt_at) SELECT id, ?, ?, ?, ?, ?, "
            "(SELECT name FROM schedules WHERE id = ?), ?, ?, 'pending', 0, ? "
            "FROM sinks WHERE chat_id = ? AND status = 'active' AND events LIKE ?",
            (
                n.id,
                n.chat_id,
                event,
                plain(n.text, n.parse_mode),
                n.schedule_id,
                n.schedule_id,
                n.run_id,
                to_db_time(n.created_at),
                to_db_time(n.created_at),
                n.chat_id,
                f'%"{event}"%',
            ),
        )


def _delivery(row: Row) -> Delivery:
    created_at = from_db_time(row[8])
    assert created_at is not None
    return Delivery(
        sink_id=row[0],
        notification_id=row[1],
        chat_id=int(row[2]),
        event=row[3],
        text=row[4],
        schedule_id=row[5],
        schedule_name=row[6],
        run_id=row[7],
        created_at=created_at,
        attempts=row[9],
        next_attempt_at=from_db_time(row[10]),
    )


_DELIVERY = (
    "sink_id, notification_id, chat_id, event, text, schedule_id, schedule_name, run_id, "
    "created_at, attempts, next_attempt_at"
)


class SqlSinks:
    """A chat's sinks (`scheduler.sinks.SinkRepository`) and the deliveries' queue."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def add(self, sink: Sink) -> bool:
        async with self._conn.write() as db:
            row = await fetch_one(
                db, "SELECT COUNT(*) FROM sinks WHERE chat_id = ?", (sink.chat_id,)
            )
            if row is not None and int(row[0]) >= MAX_SINKS:
                return False
            await db.execute(
                f"INSERT INTO sinks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sink.id,
                    sink.chat_id,
                    sink.kind.value,
                    sink.target,
                    sink.secret,
                    json.dumps(list(sink.events)),
                    sink.status.value,
                    opt_time(sink.failing_since),
                    sink.last_error,
                    sink.created_by,
                    to_db_time(sink.created_at),
                ),
            )
            return True

    async def list_for_chat(self, chat_id: int) -> list[Sink]:
        async with self._conn.read() as db:
            rows = await fetch_all(
                db, f"SELECT {_COLUMNS} FROM sinks WHERE chat_id = ? ORDER BY id", (chat_id,)
            )
        return [_sink(r) for r in rows]

    async def get(self, sink_id: str) -> Sink | None:
        async with self._conn.read() as db:
            row = await fetch_one(db, f"SELECT {_COLUMNS} FROM sinks WHERE id = ?", (sink_id,))
        return None if row is None else _sink(row)

    async def remove(self, chat_id: int, sink_id: str) -> bool:
        async with self._conn.write() as db:
            cur = await db.execute(
                "DELETE FROM sinks WHERE id = ? AND chat_id = ?", (sink_id, chat_id)
            )
            if cur.rowcount == 0:
                return False
            await db.execute("DELETE FROM sink_deliveries WHERE sink_id = ?", (sink_id,))
            return True

    async def set_events(self, chat_id: int, sink_id: str, events: Sequence[str]) -> bool:
        async with self._conn.write() as db:
            cur = await db.execute(
                "UPDATE sinks SET events = ? WHERE id = ? AND chat_id = ?",
                (json.dumps(list(events)), sink_id, chat_id),
            )
            return cur.rowcount > 0

    # --- the delivery loop's queue ---------------------------------------------------------
    async def heads(self) -> list[Delivery]:
        """The oldest pending notice of each active sink: a sink's notices go in order,
        so only its head may be sent."""
        async with self._conn.read() as db:
            rows = await fetch_all(
                db,
                f"SELECT {', '.join('d.' + c.strip() for c in _DELIVERY.split(','))} "
                "FROM sink_deliveries d JOIN sinks s ON s.id = d.sink_id "
                "WHERE d.status = 'pending' AND s.status = 'active' AND d.notification_id = "
                "(SELECT MIN(e.notification_id) FROM sink_deliveries e "
                "WHERE e.sink_id = d.sink_id AND e.status = 'pending') ORDER BY d.sink_id",
            )
        return [_delivery(r) for r in rows]

    async def pending_for(self, sink_id: str) -> list[Delivery]:
        async with self._conn.read() as db:
            rows = await fetch_all(
                db,
                f"SELECT {_DELIVERY} FROM sink_deliveries WHERE sink_id = ? "
                "AND status = 'pending' ORDER BY notification_id",
                (sink_id,),
            )
        return [_delivery(r) for r in rows]

    async def delivered(self, sink_id: str, notification_id: str, now: datetime) -> None:
        async with self._conn.write() as db:
            await db.execute(
                "UPDATE sink_deliveries SET status = 'sent', sent_at = ?, attempts = attempts + 1, "
                "next_attempt_at = NULL, last_error = NULL "
                "WHERE sink_id = ? AND notification_id = ?",
                (to_db_time(now), sink_id, notification_id),
            )
            await db.execute(
                "UPDATE sinks SET failing_since = NULL, last_error = NULL WHERE id = ?",
                (sink_id,),
            )

    async def failed(
        self,
        sink_id: str,
        notification_id: str,
        error: str,
        next_attempt_at: datetime,
        now: datetime,
    ) -> datetime:
        """Record a failed attempt; returns since when the sink has been failing."""
        async with self._conn.write() as db:
            await db.execute(
                "UPDATE sink_deliveries SET attempts = attempts + 1, last_error = ?, "
                "next_attempt_at = ? WHERE sink_id = ? AND notification_id = ? "
                "AND status = 'pending'",
                (error, to_db_time(next_attempt_at), sink_id, notification_id),
            )
            await db.execute(
                "UPDATE sinks SET failing_since = COALESCE(failing_since, ?), last_error = ? "
                "WHERE id = ?",
                (to_db_time(now), error, sink_id),
            )
            row = await fetch_one(db, "SELECT failing_since FROM sinks WHERE id = ?", (sink_id,))
        since = from_db_time(row[0]) if row else None
        return since or now

    async def mark_dead(self, sink_id: str, error: str) -> bool:
        """The sink is dead and its undelivered notices with it; True only the once it
        died (the chat is told then)."""
        async with self._conn.write() as db:
            cur = await db.execute(
                "UPDATE sinks SET status = 'dead', last_error = ? "
                "WHERE id = ? AND status = 'active'",
                (error, sink_id),
            )
            if cur.rowcount == 0:
                return False
            await db.execute(
                "UPDATE sink_deliveries SET status = 'dead', next_attempt_at = NULL "
                "WHERE sink_id = ? AND status = 'pending'",
                (sink_id,),
            )
            return True
