"""SQL for the bundle aggregate (scheduler/bundle_model.py), and its repository. A
bundle's task steps are work items (storage/work_items.py) carrying its id and step
number; its prompt steps are one-time schedules (storage/schedules.py)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError

from scheduler.bundle_model import Bundle, BundleSnapshot, BundleStatus, Instantiation
from scheduler.repositories import Notification
from scheduler.work_item_model import WorkItem
from storage import notifications, schedules, work_items
from storage.codec import from_db_time, req_time, to_db_time
from storage.sql import Connection, Db, Row, fetch_all, fetch_one

__all__ = ["SqlBundles"]

COLUMNS = (
    "id, chat_id, template_id, anchor_date, title, snapshot_json, status, error, "
    "created_at, updated_at, completed_at"
)
_PLACEHOLDERS = ", ".join(":" + c.strip() for c in COLUMNS.split(","))


def _params(bundle: Bundle) -> dict[str, Any]:
    assert bundle.snapshot is not None, "a new bundle has its snapshot"
    return {
        "id": bundle.id,
        "chat_id": bundle.chat_id,
        "template_id": bundle.template_id,
        "anchor_date": bundle.anchor_date.isoformat(),
        "title": bundle.title,
        "snapshot_json": bundle.snapshot.model_dump_json(),
        "status": bundle.status.value,
        "error": bundle.error,
        "created_at": to_db_time(bundle.created_at),
        "updated_at": to_db_time(bundle.updated_at),
        "completed_at": None if bundle.completed_at is None else to_db_time(bundle.completed_at),
    }


def _bundle(row: Row) -> Bundle:
    snapshot: BundleSnapshot | None
    error = row["error"]
    try:
        snapshot = BundleSnapshot.model_validate_json(row["snapshot_json"])
    except ValidationError as exc:
        # Written around Tickler (a hand edit, a damaged import): the start-up finish
        # reports it instead of failing on it.
        snapshot = None
        first = exc.errors()[0]
        error = error or f"its stored steps cannot be read ({first['msg']})"
    return Bundle(
        id=row["id"],
        chat_id=row["chat_id"],
        template_id=row["template_id"],
        anchor_date=date.fromisoformat(row["anchor_date"]),
        title=row["title"],
        snapshot=snapshot,
        status=BundleStatus(row["status"]),
        error=error,
        created_at=req_time(row["created_at"]),
        updated_at=req_time(row["updated_at"]),
        completed_at=from_db_time(row["completed_at"]),
    )


async def insert(db: Db, bundle: Bundle) -> bool:
    """False when the template already has a bundle for that anchor date."""
    cur = await db.execute(
        f"INSERT OR IGNORE INTO bundles ({COLUMNS}) VALUES ({_PLACEHOLDERS})", _params(bundle)
    )
    return cur.rowcount == 1


async def by_anchor(db: Db, template_id: str, anchor: date) -> Bundle | None:
    row = await fetch_one(
        db,
        f"SELECT {COLUMNS} FROM bundles WHERE template_id = ? AND anchor_date = ?",
        (template_id, anchor.isoformat()),
    )
    return None if row is None else _bundle(row)


async def get(db: Db, chat_id: int, bundle_id: str) -> Bundle | None:
    row = await fetch_one(
        db, f"SELECT {COLUMNS} FROM bundles WHERE id = ? AND chat_id = ?", (bundle_id, chat_id)
    )
    return None if row is None else _bundle(row)


async def _leave(db: Db, bundle_id: str, status: BundleStatus, now: datetime, **extra: Any) -> bool:
    """Move an instantiating bundle on. The UPDATE is also the lock: a second finisher
    (another replica's start) waits for the first and then finds nothing to do."""
    sets = ", ".join(f"{column} = :{column}" for column in extra)
    cur = await db.execute(
        "UPDATE bundles SET status = :status, updated_at = :now"
        + (f", {sets}" if sets else "")
        + " WHERE id = :id AND status = 'instantiating'",
        {"status": status.value, "now": to_db_time(now), "id": bundle_id, **extra},
    )
    return cur.rowcount == 1


class SqlBundles:
    """Bundles (`scheduler.bundle_model.BundleRepository`)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def add_bundle(self, bundle: Bundle) -> Bundle:
        async with self._conn.write() as db:
            if await insert(db, bundle):
                return bundle
            existing = await by_anchor(db, bundle.template_id, bundle.anchor_date)
        assert existing is not None, "the insert was ignored for this template and date"
        return existing

    async def instantiate(self, bundle_id: str, steps: Instantiation, now: datetime) -> bool:
        async with self._conn.write() as db:
            if not await _leave(db, bundle_id, BundleStatus.ACTIVE, now):
                return False
            for item, entry in steps.items:
                await work_items.insert(db, item, entry)
            for schedule in steps.schedules:
                taken = await fetch_one(db, "SELECT 1 FROM schedules WHERE id = ?", (schedule.id,))
                if taken is None:
                    await schedules.insert(db, schedule)
            return True

    async def fail_bundle(
        self, bundle_id: str, error: str, notice: Notification, now: datetime
    ) -> bool:
        async with self._conn.write() as db:
            if not await _leave(db, bundle_id, BundleStatus.FAILED, now, error=error):
                return False
            await notifications.insert_many(db, [notice])
            return True

    async def remake_bundle(self, bundle: Bundle) -> bool:
        async with self._conn.write() as db:
            cur = await db.execute(
                "UPDATE bundles SET status = 'instantiating', snapshot_json = ?, title = ?, "
                "error = NULL, updated_at = ? WHERE id = ? AND status = 'failed'",
                (
                    _params(bundle)["snapshot_json"],
                    bundle.title,
                    to_db_time(bundle.updated_at),
                    bundle.id,
                ),
            )
            return cur.rowcount == 1

    async def complete_bundle(self, bundle_id: str, now: datetime) -> bool:
        async with self._conn.write() as db:
            cur = await db.execute(
                "UPDATE bundles SET status = 'done', completed_at = ?, updated_at = ? "
                "WHERE id = ? AND status = 'active'",
                (to_db_time(now), to_db_time(now), bundle_id),
            )
            return cur.rowcount == 1

    async def get_bundle(self, chat_id: int, bundle_id: str) -> Bundle | None:
        async with self._conn.read() as db:
            return await get(db, chat_id, bundle_id)

    async def find_bundle(self, template_id: str, anchor_date: date) -> Bundle | None:
        async with self._conn.read() as db:
            return await by_anchor(db, template_id, anchor_date)

    async def list_bundles(self, chat_id: int, statuses: Collection[BundleStatus]) -> list[Bundle]:
        marks = ",".join("?" * len(statuses))
        async with self._conn.read() as db:
            rows = await fetch_all(
                db,
                f"SELECT {COLUMNS} FROM bundles WHERE chat_id = ? AND status IN ({marks}) "
                "ORDER BY anchor_date, id",
                (chat_id, *(s.value for s in statuses)),
            )
        return [_bundle(r) for r in rows]

    async def instantiating_bundles(self) -> list[Bundle]:
        async with self._conn.read() as db:
            rows = await fetch_all(
                db,
                f"SELECT {COLUMNS} FROM bundles WHERE status = 'instantiating' "
                "ORDER BY created_at, id",
            )
        return [_bundle(r) for r in rows]

    async def bundle_items(self, bundle_id: str) -> list[WorkItem]:
        async with self._conn.read() as db:
            return await work_items.for_bundle(db, bundle_id)

    async def bundle_anchors(self, template_id: str, anchors: Sequence[date]) -> set[date]:
        if not anchors:
            return set()
        marks = ",".join("?" * len(anchors))
        async with self._conn.read() as db:
            rows = await fetch_all(
                db,
                f"SELECT anchor_date FROM bundles WHERE template_id = ? "
                f"AND anchor_date IN ({marks}) AND status <> 'failed'",
                (template_id, *(a.isoformat() for a in anchors)),
            )
        return {date.fromisoformat(r[0]) for r in rows}
