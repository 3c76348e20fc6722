"""SQL for the work-item aggregate: the operator's duties and their history. Every
operator-facing query is scoped by chat_id; the follow-up sweep reads across chats."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from scheduler.work_item_model import HistoryEntry, Proof, WorkItem, WorkItemStatus
from storage.codec import from_db_time, opt_time, req_time, to_db_time
from storage.sql import Db, Row, fetch_all, fetch_one

COLUMNS = (
    "id, chat_id, title, instructions, due_at, assignee, schedule_id, fire_date, proof, "
    "proof_value, status, waiting_for, follow_up_at, pinged_at, created_at, updated_at, "
    "bundle_id, bundle_step"
)
_PLACEHOLDERS = ", ".join(":" + c.strip() for c in COLUMNS.split(","))
_MUTABLE = (
    "title",
    "instructions",
    "assignee",
    "proof_value",
    "status",
    "waiting_for",
    "follow_up_at",
    "pinged_at",
    "updated_at",
)


def _params(item: WorkItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "chat_id": item.chat_id,
        "title": item.title,
        "instructions": item.instructions,
        "due_at": to_db_time(item.due_at),
        "assignee": item.assignee,
        "schedule_id": item.schedule_id,
        "fire_date": item.fire_date,
        "proof": None if item.proof is None else item.proof.value,
        "proof_value": item.proof_value,
        "status": item.status.value,
        "waiting_for": item.waiting_for,
        "follow_up_at": opt_time(item.follow_up_at),
        "pinged_at": opt_time(item.pinged_at),
        "created_at": to_db_time(item.created_at),
        "updated_at": to_db_time(item.updated_at),
        "bundle_id": item.bundle_id,
        "bundle_step": item.bundle_step,
    }


def _item(row: Row) -> WorkItem:
    return WorkItem(
        id=row["id"],
        chat_id=row["chat_id"],
        title=row["title"],
        instructions=row["instructions"],
        due_at=req_time(row["due_at"]),
        assignee=row["assignee"],
        schedule_id=row["schedule_id"],
        fire_date=row["fire_date"],
        proof=None if row["proof"] is None else Proof(row["proof"]),
        proof_value=row["proof_value"],
        status=WorkItemStatus(row["status"]),
        waiting_for=row["waiting_for"],
        follow_up_at=from_db_time(row["follow_up_at"]),
        pinged_at=from_db_time(row["pinged_at"]),
        created_at=req_time(row["created_at"]),
        updated_at=req_time(row["updated_at"]),
        bundle_id=row["bundle_id"],
        bundle_step=row["bundle_step"],
    )


async def add_history(db: Db, entry: HistoryEntry) -> None:
    await db.execute(
        "INSERT INTO work_item_history (item_id, at, actor, action, note) VALUES (?, ?, ?, ?, ?)",
        (entry.item_id, to_db_time(entry.at), entry.actor, entry.action, entry.note),
    )


async def insert(db: Db, item: WorkItem, entry: HistoryEntry) -> bool:
    """False when the schedule already made an item for that local date."""
    cur = await db.execute(
        f"INSERT OR IGNORE INTO work_items ({COLUMNS}) VALUES ({_PLACEHOLDERS})", _params(item)
    )
    if cur.rowcount != 1:
        return False
    await add_history(db, entry)
    return True


async def update(db: Db, item: WorkItem, entry: HistoryEntry) -> None:
    params = _params(item)
    sets = ", ".join(f"{c} = :{c}" for c in _MUTABLE)
    await db.execute(f"UPDATE work_items SET {sets} WHERE id = :id AND chat_id = :chat_id", params)
    await add_history(db, entry)


async def get(db: Db, chat_id: int, item_id: str) -> WorkItem | None:
    row = await fetch_one(
        db, f"SELECT {COLUMNS} FROM work_items WHERE id = ? AND chat_id = ?", (item_id, chat_id)
    )
    return None if row is None else _item(row)


async def list_for_chat(
    db: Db, chat_id: int, statuses: Collection[WorkItemStatus]
) -> list[WorkItem]:
    marks = ",".join("?" * len(statuses))
    rows = await fetch_all(
        db,
        f"SELECT {COLUMNS} FROM work_items WHERE chat_id = ? AND status IN ({marks}) "
        "ORDER BY due_at, id",
        (chat_id, *(s.value for s in statuses)),
    )
    return [_item(r) for r in rows]


async def history(db: Db, item_id: str) -> list[HistoryEntry]:
    rows = await fetch_all(
        db,
        "SELECT item_id, at, actor, action, note FROM work_item_history "
        "WHERE item_id = ? ORDER BY seq",
        (item_id,),
    )
    return [
        HistoryEntry(
            item_id=r["item_id"],
            at=req_time(r["at"]),
            actor=r["actor"],
            action=r["action"],
            note=r["note"],
        )
        for r in rows
    ]


async def unpinged_followups(db: Db, now: datetime) -> list[WorkItem]:
    rows = await fetch_all(
        db,
        f"SELECT {COLUMNS} FROM work_items WHERE status = 'waiting' AND pinged_at IS NULL "
        "AND follow_up_at IS NOT NULL AND follow_up_at <= ? ORDER BY follow_up_at, id",
        (to_db_time(now),),
    )
    return [_item(r) for r in rows]


async def mark_pinged(db: Db, item_id: str, follow_up_at: datetime, now: datetime) -> bool:
    """Claim the one ping for this follow-up date. The item must still be waiting on the
    very date the sweep read: a "sent" or "received" meanwhile makes this a no-op."""
    cur = await db.execute(
        "UPDATE work_items SET pinged_at = ? WHERE id = ? AND pinged_at IS NULL "
        "AND status = 'waiting' AND follow_up_at = ? AND follow_up_at <= ?",
        (to_db_time(now), item_id, to_db_time(follow_up_at), to_db_time(now)),
    )
    return cur.rowcount == 1


async def unmark_pinged(db: Db, item_id: str, pinged_at: datetime) -> None:
    """Give a ping that could not be delivered back, so the sweep tries again."""
    await db.execute(
        "UPDATE work_items SET pinged_at = NULL WHERE id = ? AND pinged_at = ?",
        (item_id, to_db_time(pinged_at)),
    )


async def earliest_followup(db: Db) -> datetime | None:
    row = await fetch_one(
        db,
        "SELECT MIN(follow_up_at) FROM work_items "
        "WHERE status = 'waiting' AND pinged_at IS NULL AND follow_up_at IS NOT NULL",
    )
    return from_db_time(row[0]) if row else None


async def for_bundle(db: Db, bundle_id: str) -> list[WorkItem]:
    rows = await fetch_all(
        db,
        f"SELECT {COLUMNS} FROM work_items WHERE bundle_id = ? ORDER BY bundle_step",
        (bundle_id,),
    )
    return [_item(r) for r in rows]
