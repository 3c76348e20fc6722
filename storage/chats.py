"""SQL for per-chat preferences and delivery state."""

from __future__ import annotations

from datetime import datetime

from scheduler.repositories import ChatPrefs
from storage.codec import from_db_time, to_db_time
from storage.sql import Db, fetch_one


async def get(db: Db, chat_id: int) -> ChatPrefs:
    row = await fetch_one(
        db,
        "SELECT timezone, blocked_at, block_reason, budget_runs_per_week, "
        "budget_tokens_per_week FROM chats WHERE chat_id = ?",
        (chat_id,),
    )
    if row is None:
        return ChatPrefs(chat_id)
    return ChatPrefs(chat_id, row[0], from_db_time(row[1]), row[2], row[3], row[4])


async def set_timezone(db: Db, chat_id: int, zone: str, now: datetime) -> None:
    when = to_db_time(now)
    await db.execute(
        "INSERT INTO chats (chat_id, timezone, created_at, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (chat_id) DO UPDATE SET timezone = excluded.timezone, "
        "updated_at = excluded.updated_at",
        (chat_id, zone, when, when),
    )


async def set_blocked(db: Db, chat_id: int, reason: str | None, now: datetime) -> None:
    when = to_db_time(now)
    blocked_at = when if reason is not None else None
    await db.execute(
        "INSERT INTO chats (chat_id, blocked_at, block_reason, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (chat_id) DO UPDATE SET "
        "blocked_at = excluded.blocked_at, block_reason = excluded.block_reason, "
        "updated_at = excluded.updated_at",
        (chat_id, blocked_at, reason, when, when),
    )
