"""Why a schedule is paused is a kind (PauseKind) beside the reason shown: stored by
migration 0012 (backfilled from the reason texts code used to compare), carried by the
export, and derived the same way when an older export without it is imported."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from scheduler.models import AWAITING_APPROVAL_REASON, Action, CreatedBy, Owner, PauseKind
from scheduler.schedules_file import REMOVED_REASON
from scheduler.service import ScheduleService, TriggerSpec
from storage.export import export_database, import_export
from storage.sqlite_store import SqliteStore
from tests.schema_rewind import undo_migrations_after
from tests.test_export import rewrite

CHAT = 7
DAILY = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="UTC")
#: (schedule name, pause reason as stored before kinds, the kind it stands for)
BEFORE_KINDS = [
    ("proposal", AWAITING_APPROVAL_REASON, PauseKind.AWAITING_APPROVAL),
    ("from file", REMOVED_REASON, PauseKind.REMOVED_FROM_FILE),
    ("broken", "cannot be read: its trigger is invalid.", PauseKind.UNREADABLE),
    ("holiday", "holiday", PauseKind.OPERATOR),
    ("no reason", None, PauseKind.OPERATOR),
]


async def _paused_before_kinds(service: ScheduleService) -> dict[str, str]:
    """One paused schedule per row of BEFORE_KINDS, and one active; their ids by name."""
    ids: dict[str, str] = {}
    for name, reason, _ in [*BEFORE_KINDS, ("active", None, None)]:
        made = await service.create_schedule(
            CHAT, Owner(id=1), name=name, trigger=DAILY, action=Action(text="hi")
        )
        ids[name] = made.id
        if name != "active":
            await service.pause(CHAT, made.id, by=None, reason=reason)
    return ids


async def _kinds(path: Path, ids: dict[str, str]) -> dict[str, PauseKind | None]:
    store = await SqliteStore.open(path)
    try:
        found = {}
        for name, sid in ids.items():
            schedule = await store.schedules.get(CHAT, sid)
            assert schedule is not None
            found[name] = schedule.pause_kind
        return found
    finally:
        await store.close()


EXPECTED = {**{name: kind for name, _, kind in BEFORE_KINDS}, "active": None}


async def test_migration_0012_gives_paused_schedules_the_kind_their_reason_meant(
    service: ScheduleService, store: SqliteStore, db_path: Path
) -> None:
    ids = await _paused_before_kinds(service)
    await store.close()
    # As written at schema version 11: no kind column.
    with sqlite3.connect(db_path) as raw:
        raw.execute("ALTER TABLE schedules DROP COLUMN pause_kind")
        raw.execute("ALTER TABLE runs DROP COLUMN skip_reason")
        undo_migrations_after(raw, 13)
        raw.execute("PRAGMA user_version = 11")
    assert await _kinds(db_path, ids) == EXPECTED


async def test_the_kind_round_trips_through_export_and_import(
    service: ScheduleService, store: SqliteStore, db_path: Path, tmp_path: Path
) -> None:
    made = await service.create_schedule(
        CHAT,
        Owner(id=1),
        name="yaml",
        trigger=DAILY,
        action=Action(text="hi"),
        created_by=CreatedBy.CONFIG,
    )
    # A kind its reason alone would not give: the export must carry it.
    await service.pause(CHAT, made.id, by=None, reason="gone", kind=PauseKind.REMOVED_FROM_FILE)
    await export_database(db_path, tmp_path / "out")
    [line] = (tmp_path / "out" / "schedules.jsonl").read_text().splitlines()
    assert json.loads(line)["pause_kind"] == "removed_from_file"
    await import_export(tmp_path / "out", tmp_path / "copy.db")
    assert await _kinds(tmp_path / "copy.db", {"yaml": made.id}) == {
        "yaml": PauseKind.REMOVED_FROM_FILE
    }


async def test_an_export_from_before_kinds_imports_with_the_kind_its_reason_meant(
    service: ScheduleService, store: SqliteStore, db_path: Path, tmp_path: Path
) -> None:
    ids = await _paused_before_kinds(service)
    await export_database(db_path, tmp_path / "out")
    rewrite(tmp_path / "out", "schedules.jsonl", None, lambda row: row.pop("pause_kind"))
    await import_export(tmp_path / "out", tmp_path / "copy.db")
    assert await _kinds(tmp_path / "copy.db", ids) == EXPECTED


async def test_an_unknown_kind_in_an_export_is_refused(
    service: ScheduleService, store: SqliteStore, db_path: Path, tmp_path: Path
) -> None:
    await _paused_before_kinds(service)
    await export_database(db_path, tmp_path / "out")
    rewrite(tmp_path / "out", "schedules.jsonl", 1, lambda row: row.update(pause_kind="holiday"))
    with pytest.raises(ValueError, match="unknown pause_kind 'holiday'"):
        await import_export(tmp_path / "out", tmp_path / "copy.db")
