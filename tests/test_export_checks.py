"""`validate-export` and `import` refuse a row Tickler would never have written, with
one sentence naming the file and line, never a traceback; import then writes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from scheduler.service import ScheduleService
from storage.export import export_database, import_export, validate_export
from storage.sqlite_store import SqliteStore
from tests.test_backup import cli_env, tickler
from tests.test_export import rewrite, seed


def break_line(folder: Path, name: str, line: int, raw: bytes) -> None:
    """Replace one line of a file with raw bytes (for what json.dumps cannot write)."""
    path = folder / name
    lines = path.read_bytes().splitlines(keepends=True)
    lines[line - 1] = raw + b"\n"
    path.write_bytes(b"".join(lines))


def bad_trigger(folder: Path) -> None:
    rewrite(
        folder,
        "schedules.jsonl",
        1,
        lambda r: r.update(trigger={"kind": "cron", "expr": "not a cron", "timezone": "Mars/X"}),
    )


def bad_zone(folder: Path) -> None:
    rewrite(folder, "schedules.jsonl", 1, lambda r: r["trigger"].update(timezone="Mars/X"))


def no_name(folder: Path) -> None:
    rewrite(folder, "schedules.jsonl", 2, lambda r: r.pop("name"))


def long_id(folder: Path) -> None:
    rewrite(folder, "notifications.jsonl", 2, lambda r: r.update(id="n" * 31))


def unknown_status(folder: Path) -> None:
    rewrite(folder, "runs.jsonl", 1, lambda r: r.update(status="exploded"))


def huge_integer(folder: Path) -> None:
    rewrite(folder, "schedules.jsonl", 2, lambda r: r.update(chat_id=2**64))


def not_utf8(folder: Path) -> None:
    break_line(folder, "chats.jsonl", 1, b'{"chat_id": 7, "timezone": "Europe/Berl\xefn"}')


def same_instant(folder: Path) -> None:
    runs = [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines()]
    rewrite(folder, "runs.jsonl", 2, lambda r: r.update(scheduled_for=runs[0]["scheduled_for"]))


CASES: list[tuple[Callable[[Path], None], str]] = [
    (
        bad_trigger,
        "schedules.jsonl:1: invalid trigger: The cron expression 'not a cron' has 3 fields: "
        "use five fields (minute hour day-of-month month day-of-week), e.g. '0 9 * * 1-5'.",
    ),
    (
        bad_zone,
        "schedules.jsonl:1: invalid trigger: Unknown time zone 'Mars/X': use an IANA name "
        "such as Europe/Berlin or America/New_York.",
    ),
    (no_name, "schedules.jsonl:2: no name."),
    (long_id, "notifications.jsonl:2: id is longer than 30 characters."),
    (
        unknown_status,
        "runs.jsonl:1: unknown status 'exploded' (known: pending, running, succeeded, failed, "
        "dead, skipped, awaiting_approval, cancelled, unknown).",
    ),
    (huge_integer, "schedules.jsonl:2: chat_id is beyond the 64-bit integer range."),
    (not_utf8, "chats.jsonl:1: not UTF-8 text."),
    (same_instant, "runs.jsonl:2: the same schedule_id and scheduled_for as line 1."),
]


@pytest.mark.parametrize(("breaks", "sentence"), CASES, ids=[c[0].__name__ for c in CASES])
async def test_a_row_tickler_would_not_write_is_refused_in_one_sentence(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
    db_path: Path,
    tmp_path: Path,
    breaks: Callable[[Path], None],
    sentence: str,
) -> None:
    await seed(service, store, clock, dispatcher, db_path)
    folder = tmp_path / "export"
    await export_database(db_path, folder)
    assert validate_export(folder) == []
    breaks(folder)

    assert validate_export(folder) == [sentence]
    restored = tmp_path / "restored.db"
    with pytest.raises(ValueError) as refused:
        await import_export(folder, restored)
    assert str(refused.value) == f"The export in {folder} is not valid: {sentence}"
    assert not restored.exists()

    env = cli_env(restored)
    assert await tickler("validate-export", str(folder), env=env) == (1, sentence + "\n", "")
    code, out, err = await tickler("import", str(folder), env=env)
    assert (code, out, err) == (2, "", f"The export in {folder} is not valid: {sentence}\n")
    assert not restored.exists()


async def test_lines_after_an_unreadable_one_keep_their_numbers(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
    db_path: Path,
    tmp_path: Path,
) -> None:
    await seed(service, store, clock, dispatcher, db_path)
    folder = tmp_path / "export"
    await export_database(db_path, folder)
    rewrite(folder, "runs.jsonl", 2, lambda r: r.update(status="melted"))
    break_line(folder, "runs.jsonl", 1, b"\xff")
    problems = validate_export(folder)
    assert problems[:2] == [
        "runs.jsonl:1: not UTF-8 text.",
        "runs.jsonl:2: unknown status 'melted' (known: pending, running, succeeded, failed, "
        "dead, skipped, awaiting_approval, cancelled, unknown).",
    ]
