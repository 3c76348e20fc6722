"""Every schedule keeps the zone it was made in, whatever its trigger kind: an interval
or a one-time schedule made in a New York chat is shown, rendered and exported in New
York time, and rows stored before interval and once triggers had a zone still work.

The fake clock starts Monday 2026-11-23 07:00 UTC = 02:00 in New York (-05:00).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapters.clocks import FakeClock
from bot.schedules_file import apply_schedules_file
from scheduler.models import Action, Owner
from scheduler.service import ScheduleService, TriggerSpec
from scheduler.triggers import IntervalTrigger, OnceTrigger
from storage.export import export_database, import_export
from storage.sqlite_store import SqliteStore
from tests.schema_rewind import undo_migrations_after

CHAT = 7
ADA = Owner(id=CHAT, first_name="Ada")
NEW_YORK = "America/New_York"
EVERY_2H = TriggerSpec(kind="interval", every_seconds=7200)
TOMORROW_9 = TriggerSpec(kind="once", at=datetime(2026, 11, 24, 14, 0, tzinfo=UTC))


async def _make(service: ScheduleService, trigger: TriggerSpec, name: str = "Zoned") -> str:
    schedule = await service.create_schedule(
        CHAT, ADA, name=name, trigger=trigger, action=Action(text="Brief for {date} {time}")
    )
    return schedule.id


async def test_interval_and_once_keep_the_chats_zone_through_the_store(
    service: ScheduleService, store: SqliteStore
) -> None:
    await service.set_chat_timezone(CHAT, NEW_YORK)
    every = await _make(service, EVERY_2H)
    once = await _make(service, TOMORROW_9)

    stored_every = await store.schedules.get(CHAT, every)
    stored_once = await store.schedules.get(CHAT, once)
    assert stored_every is not None and stored_once is not None
    assert (stored_every.timezone, stored_once.timezone) == (NEW_YORK, NEW_YORK)
    assert stored_every.trigger.describe() == (
        "every 2 hours from 2026-11-23T02:00:00-05:00 (America/New_York)"
    )
    assert stored_once.trigger.describe() == "once at 2026-11-24T09:00:00-05:00 (America/New_York)"


async def test_a_zone_given_with_the_trigger_wins_over_the_chats(
    service: ScheduleService, store: SqliteStore
) -> None:
    await service.set_chat_timezone(CHAT, NEW_YORK)
    sid = await _make(service, EVERY_2H.model_copy(update={"timezone": "Asia/Kolkata"}))
    schedule = await store.schedules.get(CHAT, sid)
    assert schedule is not None and schedule.timezone == "Asia/Kolkata"


async def test_moving_an_interval_to_another_zone_keeps_its_grid(
    service: ScheduleService, store: SqliteStore, clock: FakeClock
) -> None:
    await service.set_chat_timezone(CHAT, NEW_YORK)
    sid = await _make(service, EVERY_2H)
    before = await service.get_schedule(CHAT, sid)
    await clock.advance(timedelta(minutes=30))

    moved = await service.update_schedule(CHAT, sid, timezone="Europe/Berlin")

    assert moved.timezone == "Europe/Berlin"
    assert isinstance(moved.trigger, IntervalTrigger) and isinstance(
        before.trigger, IntervalTrigger
    )
    assert moved.trigger.start_at == before.trigger.start_at
    assert moved.next_run_at == before.next_run_at


async def test_a_new_prompt_or_length_keeps_the_schedules_zone(
    service: ScheduleService, store: SqliteStore
) -> None:
    await service.set_chat_timezone(CHAT, NEW_YORK)
    sid = await _make(service, EVERY_2H)
    await service.set_chat_timezone(CHAT, "Europe/Berlin")
    updated = await service.update_schedule(
        CHAT, sid, trigger=TriggerSpec(kind="interval", every_seconds=3600)
    )
    assert updated.timezone == NEW_YORK


async def test_rows_without_a_zone_take_their_chats_zone_on_migration(
    db_path: Path, clock: FakeClock
) -> None:
    store = await SqliteStore.open(db_path)
    service = ScheduleService(store, clock)
    await service.set_chat_timezone(CHAT, NEW_YORK)
    zoned_chat = await _make(service, TOMORROW_9)
    no_zone_chat = (
        await service.create_schedule(
            CHAT + 1, ADA, name="Plain", trigger=EVERY_2H, action=Action(text="hi")
        )
    ).id
    await store.close()
    # As written before interval and once triggers had a zone, at schema version 10.
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE schedules SET trigger_json = json_remove(trigger_json, '$.timezone')")
        raw.execute("ALTER TABLE schedules DROP COLUMN pause_kind")
        undo_migrations_after(raw, 13)
        raw.execute("PRAGMA user_version = 10")
        raw.execute("ALTER TABLE runs DROP COLUMN skip_reason")

    store = await SqliteStore.open(db_path)
    try:
        migrated = await store.schedules.get(CHAT, zoned_chat)
        plain = await store.schedules.get(CHAT + 1, no_zone_chat)
    finally:
        await store.close()
    assert migrated is not None and isinstance(migrated.trigger, OnceTrigger)
    assert migrated.timezone == NEW_YORK
    assert plain is not None and plain.timezone == "UTC"


async def test_the_zone_round_trips_through_export_and_import(
    service: ScheduleService, store: SqliteStore, db_path: Path, tmp_path: Path
) -> None:
    await service.set_chat_timezone(CHAT, NEW_YORK)
    sid = await _make(service, EVERY_2H)
    await export_database(db_path, tmp_path / "out")
    await import_export(tmp_path / "out", tmp_path / "copy.db")
    copy = await SqliteStore.open(tmp_path / "copy.db")
    try:
        schedule = await copy.schedules.get(CHAT, sid)
    finally:
        await copy.close()
    assert schedule is not None and schedule.timezone == NEW_YORK


YAML = """\
schedules:
  - id: inbox
    chat_id: 7
    name: Inbox
    every: 2h
    timezone: {zone}
    remind: Check the inbox.
"""


async def test_schedules_yaml_keeps_and_changes_an_intervals_zone(
    service: ScheduleService, store: SqliteStore, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(YAML.format(zone=NEW_YORK), encoding="utf-8")
    await apply_schedules_file(path, service, now=clock.now(), chats=[CHAT])
    first = await service.get_schedule(CHAT, "inbox")
    assert first.timezone == NEW_YORK

    again = await apply_schedules_file(path, service, now=clock.now(), chats=[CHAT])
    assert again.unchanged == ["inbox"]

    await clock.advance(timedelta(minutes=30))
    path.write_text(YAML.format(zone="Asia/Kolkata"), encoding="utf-8")
    report = await apply_schedules_file(path, service, now=clock.now(), chats=[CHAT])
    moved = await service.get_schedule(CHAT, "inbox")
    assert report.updated == ["inbox"] and moved.timezone == "Asia/Kolkata"
    assert isinstance(moved.trigger, IntervalTrigger) and isinstance(first.trigger, IntervalTrigger)
    assert moved.trigger.start_at == first.trigger.start_at  # the grid did not move
