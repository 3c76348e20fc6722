"""Export, validate-export and import: JSONL files that round-trip byte for byte."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, OLGA, BotHarness
from scheduler.engine import Engine, EngineConfig
from scheduler.models import Action, Owner
from scheduler.repositories import Notification, NotificationStatus
from scheduler.service import ScheduleService, TriggerSpec
from scheduler.work_items import WorkItemService
from storage.database import open_database
from storage.export import export_database, import_export, validate_export
from storage.export_secrets import secret_key
from storage.sqlite_store import SqliteStore
from tests.engine_calls import list_notifications
from tests.test_backup import cli_env, tickler

FILES = (
    "bundles.jsonl",
    "chat_agents.jsonl",
    "chats.jsonl",
    "event_runs.jsonl",
    "events.jsonl",
    "manifest.json",
    "notifications.jsonl",
    "proposals.jsonl",
    "run_attempts.jsonl",
    "runs.jsonl",
    "schedules.jsonl",
    "sinks.jsonl",
    "work_item_history.jsonl",
    "work_items.jsonl",
)


def read(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


PROPOSED = {
    "name": "brief",
    "reason": "asked",
    "trigger": {"kind": "cron", "cron": "0 9 * * *", "timezone": "Europe/Berlin"},
    "action": {"text": "brief me"},
}


async def add_proposal(db_path: Path, proposal_id: str, schedule_id: str | None) -> None:
    db = await open_database(db_path)
    try:
        await db.execute(
            "INSERT INTO proposals (id, chat_id, request_json, tier, status, schedule_id, "
            "proposed_by, created_at) VALUES (?, 7, ?, 'low', 'active', ?, 'agent', "
            "'2026-11-23T07:00:00.000000Z')",
            (proposal_id, json.dumps(PROPOSED), schedule_id),
        )
    finally:
        await db.close()


async def seed(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    db_path: Path,
) -> str:
    made = await service.create_schedule(
        7,
        Owner(id=1, first_name="Ada"),
        name="Daily brief",
        trigger=TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin"),
        action=Action(text="brief me"),
    )
    await service.create_schedule(
        8,
        Owner(id=2),
        name="Other chat",
        trigger=TriggerSpec(kind="cron", cron="30 9 * * 1", timezone="UTC"),
        action=Action(text="hello"),
    )
    await service.set_chat_timezone(7, "Europe/Berlin")
    engine = Engine(store.engine, clock, dispatcher, config=EngineConfig())
    await service.run_now(7, made.id)
    await engine.run_until_idle()
    await clock.set(datetime(2026, 11, 23, 8, 0, 0, 250_000, tzinfo=UTC))
    await engine.run_until_idle()
    await engine.shutdown()
    await add_proposal(db_path, "p1", made.id)
    await add_proposal(db_path, "p2", None)
    items = WorkItemService(store.work_items, clock)
    await items.create_from_fire(made, clock.now(), "Back up the list")
    follow = await items.add_followup(
        7, "Sponsor X about the invoice", clock.now() + timedelta(days=3), actor="ada"
    )
    await items.followup_sent(follow, clock.now() + timedelta(days=5), actor="ada", note="mailed")
    [run] = await store.runs.list_for_chat(7, schedule_id=made.id, limit=1)
    await store.outbox.queue(
        [
            Notification(
                "n1",
                7,
                "alert",
                "❌ <b>Daily brief</b> failed",
                clock.now(),
                reply_markup={"inline_keyboard": [[{"text": "Retry", "callback_data": "r:1"}]]},
                run_id=run.id,
                schedule_id=made.id,
                proposal_id="p1",
            ),
            Notification("n2", 7, "followup", "⏰ Follow-up due", clock.now(), item_id=follow.id),
        ]
    )
    await store.outbox.mark_sent("n1", 42, clock.now())
    await store.outbox.postpone("n2", "Bad Gateway", clock.now() + timedelta(seconds=2))
    return made.id


async def test_round_trip_is_byte_identical(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
    db_path: Path,
    tmp_path: Path,
) -> None:
    sid = await seed(service, store, clock, dispatcher, db_path)
    first, second = tmp_path / "first", tmp_path / "second"
    counts = await export_database(db_path, first)
    assert counts["schedules"] == 2 and counts["proposals"] == 2 and counts["chats"] == 1
    assert counts["runs"] >= 2 and counts["run_attempts"] >= 2
    assert counts["notifications"] == 2
    assert tuple(read(first)) == FILES
    assert validate_export(first) == []
    again = tmp_path / "again"
    await export_database(db_path, again)
    assert read(again) == read(first)

    [schedule] = [
        json.loads(line)
        for line in (first / "schedules.jsonl").read_text().splitlines()
        if json.loads(line)["id"] == sid
    ]
    assert schedule["trigger"]["expr"] == "0 9 * * *"
    assert schedule["created_at"] == "2026-11-23T07:00:00Z"
    assert schedule["enabled"] is True
    runs = [json.loads(line) for line in (first / "runs.jsonl").read_text().splitlines()]
    assert all(r["schedule_id"] == sid for r in runs)
    assert any(".250000Z" in (r["finished_at"] or "") for r in runs)
    sent, waiting = [
        json.loads(line) for line in (first / "notifications.jsonl").read_text().splitlines()
    ]
    assert sent["status"] == "sent" and sent["message_id"] == 42
    assert sent["reply_markup"]["inline_keyboard"][0][0]["text"] == "Retry"
    assert (waiting["status"], waiting["attempts"], waiting["last_error"]) == (
        "pending",
        1,
        "Bad Gateway",
    )

    fresh = tmp_path / "fresh.db"
    assert await import_export(first, fresh) == counts
    await export_database(fresh, second)
    assert read(second) == read(first)
    async with await SqliteStore.open(fresh) as restored:
        assert (await restored.schedules.get(7, sid)) == (await store.schedules.get(7, sid))
        assert await list_notifications(restored, 7) == await list_notifications(store, 7)
        assert [n.status for n in await list_notifications(restored, 7)] == [
            NotificationStatus.SENT,
            NotificationStatus.PENDING,
        ]

    with pytest.raises(ValueError, match="is not empty"):
        await import_export(first, fresh)
    merged = await import_export(first, fresh, merge=True)
    assert set(merged.values()) == {0}


async def test_imported_schedules_keep_or_get_their_chat_numbers(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
    db_path: Path,
    tmp_path: Path,
) -> None:
    sid = await seed(service, store, clock, dispatcher, db_path)
    exported = tmp_path / "exported"
    await export_database(db_path, exported)
    [row] = [r for r in _lines(exported / "schedules.jsonl") if r["id"] == sid]
    assert row["number"] == 1

    # An export from before schedules had numbers: they are given in creation order.
    old = tmp_path / "old"
    old.mkdir()
    for source in exported.iterdir():
        (old / source.name).write_bytes(source.read_bytes())
    rows = [{k: v for k, v in r.items() if k != "number"} for r in _lines(old / "schedules.jsonl")]
    (old / "schedules.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    await import_export(old, tmp_path / "restored.db")
    async with await SqliteStore.open(tmp_path / "restored.db") as restored:
        assert (await restored.schedules.get(7, sid)).number == 1  # type: ignore[union-attr]

    # Merged into a database whose chat has a #1 of its own: numbered after it.
    mine = tmp_path / "mine.db"
    async with await SqliteStore.open(mine) as other:
        own = await ScheduleService(other, clock).create_schedule(
            7,
            Owner(id=1),
            name="Mine",
            trigger=TriggerSpec(kind="cron", cron="0 8 * * *"),
            action=Action(text="mine"),
        )
    assert (await import_export(exported, mine, merge=True))["schedules"] == 2
    async with await SqliteStore.open(mine) as merged:
        numbers = {s.id: s.number for s in await merged.schedules.list_for_chat(7)}
    assert numbers == {own.id: 1, sid: 2}


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_export(folder: Path, files: dict[str, list[dict[str, object]]]) -> None:
    folder.mkdir()
    counts = {name.removesuffix(".jsonl"): len(rows) for name, rows in files.items()}
    for name, rows in files.items():
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = {"format": "tickler-export", "format_version": 1, "schema_version": 1}
    (folder / "manifest.json").write_text(json.dumps({**manifest, "counts": counts}))


def rewrite(
    folder: Path, name: str, line: int | None, change: Callable[[dict[str, Any]], object]
) -> None:
    """Change one row of a sound export in place (line counts from 1), or every row."""
    path = folder / name
    rows = [json.loads(text) for text in path.read_text().splitlines()]
    for row in rows if line is None else [rows[line - 1]]:
        change(row)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


async def test_validate_catches_dangling_references_bad_times_and_secrets(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
    db_path: Path,
    tmp_path: Path,
) -> None:
    await seed(service, store, clock, dispatcher, db_path)
    folder = tmp_path / "bad"
    await export_database(db_path, folder)
    rewrite(folder, "runs.jsonl", 1, lambda r: r.update(created_at="2026-11-23 07:00"))
    rewrite(folder, "runs.jsonl", 2, lambda r: r.update(schedule_id="gone"))
    rewrite(folder, "run_attempts.jsonl", 1, lambda r: r.update(finished_at="x"))
    rewrite(folder, "proposals.jsonl", 1, lambda r: r["request"].update(api_token="t"))
    rewrite(folder, "runs.jsonl", 1, lambda r: r.update(output="Bearer abcdefghijklmnopqrstu"))
    problems = validate_export(folder)
    assert problems == [
        "runs.jsonl:1: created_at '2026-11-23 07:00' is not an ISO-8601 UTC time.",
        "runs.jsonl:1: a secret-looking value.",
        "run_attempts.jsonl:1: finished_at 'x' is not an ISO-8601 UTC time.",
        "proposals.jsonl:1: invalid request: api_token: Extra inputs are not permitted.",
        "proposals.jsonl:1: secret-looking key 'api_token'.",
        "runs.jsonl:2: schedule_id 'gone' does not match any of schedules.",
    ]


def test_secret_keys_are_credentials_not_token_counts() -> None:
    for key in ("api_token", "token", "clientSecret", "password", "apiKey", "AGENT_TOKEN"):
        assert secret_key(key), key
    for key in ("prompt_tokens", "completion_tokens", "total_tokens", "token_count", "usage"):
        assert not secret_key(key), key


async def test_the_cli_exports_validates_and_imports(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
    db_path: Path,
    tmp_path: Path,
) -> None:
    await seed(service, store, clock, dispatcher, db_path)
    env = cli_env(db_path)
    out_dir = tmp_path / "out"
    code, out, err = await tickler("export", str(out_dir), env=env)
    assert code == 0, err
    assert out.startswith(f"Exported {db_path} to {out_dir}")
    code, out, err = await tickler("export", str(out_dir), env=env)
    assert (code, out) == (2, "")
    assert err == f"{out_dir} is not an empty folder; choose a new one.\n"

    assert await tickler("validate-export", str(out_dir), env=env) == (0, "ok\n", "")
    runs = out_dir / "runs.jsonl"
    runs.write_text(runs.read_text().replace('"schedule_id":"', '"schedule_id":"x', 1))
    code, out, _ = await tickler("validate-export", str(out_dir), env=env)
    assert code == 1 and "does not match any of schedules" in out
    await export_database(db_path, tmp_path / "good")

    restored = tmp_path / "restored.db"
    env_restored = {**env, "DATABASE_PATH": str(restored)}
    code, out, err = await tickler("import", str(tmp_path / "good"), env=env_restored)
    assert code == 0, err
    assert out.startswith(f"Imported {tmp_path / 'good'} into {restored}")
    code, out, err = await tickler("import", str(tmp_path / "good"), env=env_restored)
    assert (code, out) == (2, "")
    assert "is not empty" in err
    code, out, err = await tickler("import", str(tmp_path / "good"), "--merge", env=env_restored)
    assert code == 0, err


async def test_export_command_sends_only_this_chats_data(bot: BotHarness) -> None:
    service = bot.services.service
    trigger = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="UTC")
    mine = await service.create_schedule(
        ALICE, Owner(id=ALICE), name="Alice brief", trigger=trigger, action=Action(text="a")
    )
    theirs = await service.create_schedule(
        OLGA, Owner(id=OLGA), name="Olga brief", trigger=trigger, action=Action(text="o")
    )
    await bot.alice.send("/export")
    reply = await bot.alice.wait_reply()
    assert reply.document_name == f"tickler-export-{ALICE}.zip"
    assert reply.document_data is not None
    with zipfile.ZipFile(io.BytesIO(reply.document_data)) as archive:
        assert sorted(archive.namelist()) == list(FILES)
        schedules = archive.read("schedules.jsonl").decode()
        manifest = json.loads(archive.read("manifest.json"))
    assert mine.id in schedules and "Alice brief" in schedules
    assert theirs.id not in schedules and "Olga brief" not in schedules
    assert manifest["counts"]["schedules"] == 1


async def test_a_failed_export_is_answered_in_the_chat(bot: BotHarness) -> None:
    service = bot.services.service
    trigger = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="UTC")
    mine = await service.create_schedule(
        ALICE, Owner(id=ALICE), name="Alice brief", trigger=trigger, action=Action(text="a")
    )
    await service.run_now(ALICE, mine.id)
    # Bytes where text belongs (written by something other than Tickler): the export
    # cannot write them as JSON and stops.
    db = await open_database(bot.services.settings.database_path)
    try:
        await db.execute("UPDATE runs SET output = X'00ff'")
    finally:
        await db.close()
    await bot.alice.send("/export")
    reply = await bot.alice.wait_reply()
    assert reply.document_name is None
    assert reply.text == (
        "The export failed (refusing to export binary data in runs.output); nothing was "
        "sent, try again later or see the log."
    )
