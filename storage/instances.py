"""SQL for engine instances: who is alive, so runs of a dead process can be reaped."""

from __future__ import annotations

from datetime import datetime

from scheduler.engine_store import EngineInstance
from storage.codec import instance_from_row, opt_time, to_db_time
from storage.sql import Db, fetch_all


async def upsert(db: Db, inst: EngineInstance) -> None:
    await db.execute(
        "INSERT INTO engine_instances (id, host, pid, started_at, heartbeat_at, stopped_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
        "heartbeat_at = excluded.heartbeat_at, stopped_at = excluded.stopped_at",
        (
            inst.id,
            inst.host,
            inst.pid,
            to_db_time(inst.started_at),
            to_db_time(inst.heartbeat_at),
            opt_time(inst.stopped_at),
        ),
    )


async def heartbeat(db: Db, instance_id: str, now: datetime) -> None:
    await db.execute(
        "UPDATE engine_instances SET heartbeat_at = ? WHERE id = ?",
        (to_db_time(now), instance_id),
    )


async def stop(db: Db, instance_id: str, now: datetime) -> None:
    await db.execute(
        "UPDATE engine_instances SET stopped_at = ?, heartbeat_at = ? WHERE id = ?",
        (to_db_time(now), to_db_time(now), instance_id),
    )


async def list_all(db: Db) -> list[EngineInstance]:
    rows = await fetch_all(
        db, "SELECT id, host, pid, started_at, heartbeat_at, stopped_at FROM engine_instances"
    )
    return [instance_from_row(r) for r in rows]
