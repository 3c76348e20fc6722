"""SQLite's own migration history: files written by an older Tickler are brought up to
date on open. (PostgreSQL's schema begins at version 13, where these had already run;
what both stores must do alike is in tests/test_store_contract.py.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from scheduler.models import SkipReason
from storage.codec import schedule_params
from storage.database import _migrations, _split
from storage.sqlite_store import SqliteStore
from tests.schema_rewind import undo_migrations_after
from tests.test_store_contract import schedule


async def test_schedules_already_stored_are_numbered_in_creation_order(tmp_path: Path) -> None:
    """Migration 0008 numbers the schedules of a version-7 file per chat, oldest first
    (not in id order), and a schedule added afterwards takes the next number."""
    path = tmp_path / "v7.db"
    with sqlite3.connect(path) as raw:
        for number, sql in _migrations():
            if number <= 7:
                for statement in _split(sql):
                    raw.execute(statement)
        raw.execute("PRAGMA user_version = 7")
        old = schedule_params(schedule(1))
        for sid, chat, day in (("A-LATE", 1, 3), ("B-EARLY", 1, 1), ("C-OTHER", 2, 2)):
            row = {
                **old,
                "id": sid,
                "chat_id": chat,
                "created_at": f"2026-11-0{day}T07:00:00.000000Z",
            }
            row.pop("number")
            row.pop("pause_kind")  # added by migration 0012
            marks = ", ".join(":" + k for k in row)
            raw.execute(f"INSERT INTO schedules ({', '.join(row)}) VALUES ({marks})", row)
    store = await SqliteStore.open(path)
    try:
        numbers = {
            s.id: s.number for chat in (1, 2) for s in await store.schedules.list_for_chat(chat)
        }
        assert numbers == {"B-EARLY": 1, "A-LATE": 2, "C-OTHER": 1}
        assert (await store.schedules.add(schedule(1))).number == 3
    finally:
        await store.close()


async def test_runs_closed_before_the_upgrade_get_their_skip_reason_from_their_text(
    tmp_path: Path,
) -> None:
    """Migration 0013 reads the kind of each skipped or cancelled run from the sentence it
    was written with, so /backfill still finds the missed ones in an old ledger."""
    path = tmp_path / "v12.db"
    async with await SqliteStore.open(path) as store:
        s = schedule()
        await store.schedules.add(s)
    texts = {
        "missed: skip policy": SkipReason.MISSED,
        "missed: skipped by the operator": SkipReason.MISSED_BY_OPERATOR,
        "overlap: the previous run was still running": SkipReason.OVERLAP,
        "paused: holiday": SkipReason.PAUSED,
        "circuit breaker tripped": SkipReason.TRIPPED,
        "approval deadline passed": SkipReason.APPROVAL_DEADLINE,
        "dropped by operator": SkipReason.OPERATOR,
    }
    with sqlite3.connect(path) as raw:
        raw.execute("ALTER TABLE runs DROP COLUMN skip_reason")
        # And what 0014 on added, so that the upgrade from 12 runs it again.
        undo_migrations_after(raw, 13)
        for day, text in enumerate(texts, 1):
            raw.execute(
                "INSERT INTO runs (id, schedule_id, chat_id, scheduled_for, trigger, status, "
                "error, created_at, updated_at) VALUES (?, ?, 1, ?, 'schedule', 'skipped', ?, "
                "'2026-11-01T07:00:00.000000Z', '2026-11-01T07:00:00.000000Z')",
                (f"R{day}", s.id, f"2026-11-{day:02d}T07:00:00.000000Z", text),
            )
        raw.execute("PRAGMA user_version = 12")
    async with await SqliteStore.open(path) as store:
        got = {r.error: r.skip_reason for r in await store.runs.list_for_chat(1)}
    assert got == texts
