"""`tickler migrate-store`: a SQLite installation with every kind of row (real runs, and
some 200 schedules and 2,000 runs with their attempts, proposals, work items and chat
messages) moves to a throwaway PostgreSQL and back, byte-identical, credentials in its
rows and all; a target that holds rows and a source an engine still uses are refused;
a copy that does not match is one sentence and status 1. And the CLI's other database
commands (export, import, backup) on DATABASE_URL."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bench import migrate_store as bench_migrate_store
from bot.cli import main
from bot.demo_kit.agent_stub import AgentStub
from scheduler.chat_agents import ChatAgentService
from scheduler.models import RunStatus
from scheduler.service import ScheduleService
from storage import migrate_store as migrate_module
from storage.database import open_database
from storage.export import export_database, import_export
from storage.locations import Location
from storage.migrate_store import MigrationRefused, parse_location
from storage.sqlite_store import SqliteStore
from tests.test_backup import cli_env, tickler
from tests.test_export_every_row import AGENT_TOKEN, fill

#: Values an export for people would take out, which a migration must carry as they are.
KEY_IN_OUTPUT = "sk-migrate0123456789abcdefXYZ"
BEARER_IN_PROMPT = "Bearer abcdefghijklmnopqrstuvwxyz012345"
SCHEDULES, RUNS_EACH = 200, 10
#: Where `tickler` runs (tests/test_backup.py's helper).
ROOT = Path(__file__).resolve().parents[1]


def bulk(db_path: Path) -> None:
    """SCHEDULES more schedules, RUNS_EACH runs of each (every status) with an attempt,
    a proposal and a work item with history per two schedules, and a chat message per
    run of every fifth: copies of the rows real runs wrote (`fill`), so every value is
    one Tickler writes."""
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row

        def template(sql: str) -> dict[str, Any]:
            row = db.execute(sql).fetchone()
            assert row is not None, sql
            return dict(row)

        schedule = template("SELECT * FROM schedules WHERE name = 'Daily brief'")
        run = template("SELECT * FROM runs WHERE status = 'succeeded' ORDER BY id LIMIT 1")
        attempt = template("SELECT * FROM run_attempts ORDER BY seq LIMIT 1")
        proposal = template("SELECT * FROM proposals LIMIT 1")
        item = template("SELECT * FROM work_items LIMIT 1")
        history = template("SELECT * FROM work_item_history LIMIT 1")
        note = template("SELECT * FROM notifications LIMIT 1")
        for row in (attempt, history):
            del row["seq"]  # numbered by the database
        action = json.loads(schedule["action_json"])
        statuses = list(RunStatus)
        start = datetime(2026, 1, 1, tzinfo=UTC)
        tables: dict[str, list[dict[str, Any]]] = {
            "schedules": [],
            "runs": [],
            "run_attempts": [],
            "proposals": [],
            "work_items": [],
            "work_item_history": [],
            "notifications": [],
        }
        for i in range(SCHEDULES):
            sid = f"bulksched{i:04d}"
            prompt = f"Brief №{i} für Zoë ✓" + (f" with {BEARER_IN_PROMPT}" if i == 7 else "")
            tables["schedules"].append(
                schedule
                | {
                    "id": sid,
                    "name": f"Brief {i}",
                    "number": 100 + i,
                    "action_json": json.dumps(action | {"text": prompt}),
                }
            )
            for j in range(RUNS_EACH):
                n = i * RUNS_EACH + j
                status = statuses[n % len(statuses)]
                rid = f"bulkrun{n:05d}"
                at = (start + timedelta(hours=j)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                output = f"Answer {n}: line one\nline two «quoted»"
                if n % 500 == 3:
                    output += f" (the agent quoted {KEY_IN_OUTPUT})"
                usage: dict[str, object] = {"prompt_tokens": n, "total_tokens": n + 5}
                if n == 11:
                    usage["api_token"] = "kept-as-stored"  # a key an export for people drops
                tables["runs"].append(
                    run
                    | {
                        "id": rid,
                        "schedule_id": sid,
                        "scheduled_for": at,
                        "status": status.value,
                        "attempt": 1 + n % 3,
                        "output": output,
                        "error": None if n % 4 else f"HTTP 50{n % 10}",
                        "token_usage_json": json.dumps(usage),
                        "skip_reason": "missed" if status is RunStatus.SKIPPED else None,
                        "interruptions": n % 2,
                        # A copied run has its attempt row: none of its attempts is
                        # derived (storage/runs.py DERIVED_ATTEMPT).
                        "owner": None,
                    }
                )
                tables["run_attempts"].append(
                    attempt | {"run_id": rid, "attempt": 1, "status": status.value}
                )
                if i % 5 == 0:
                    tables["notifications"].append(
                        note
                        | {
                            "id": f"bulknote{n:05d}",
                            "text": f"✅ Brief {i} ran <b>ok</b>",
                            "run_id": rid,
                            "schedule_id": sid,
                            "item_id": None,
                        }
                    )
            if i % 2 == 0:
                tables["proposals"].append(
                    proposal | {"id": f"bulkprop{i:04d}", "schedule_id": sid}
                )
                wid = f"bulkitem{i:04d}"
                tables["work_items"].append(
                    item | {"id": wid, "title": f"Ask sponsor {i}", "schedule_id": None}
                )
                for k in range(2):
                    tables["work_item_history"].append(
                        history | {"item_id": wid, "note": f"note {k} of {i}"}
                    )
        # A sink: its secret moves with a verbatim copy (an export for people drops it).
        tables["sinks"] = [
            {
                "id": f"bulksink{i}",
                "chat_id": schedule["chat_id"],
                "kind": "webhook",
                "target": f"https://example.com/hook/{i}",
                "secret": f"sink-secret-{i}-5d2a4c6e8f0b1d3a",
                "events": '["failed"]',
                "status": "active",
                "failing_since": None,
                "last_error": None,
                "created_by": None,
                "created_at": "2026-01-01T00:00:00.000000Z",
            }
            for i in range(2)
        ]
        for table, rows in tables.items():
            columns = list(rows[0])
            db.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                [tuple(row[c] for c in columns) for row in rows],
            )


@pytest.fixture
async def installation(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    agent_stub: AgentStub,
    db_path: Path,
) -> Path:
    """A stopped SQLite installation: real runs (every kind of row) plus the bulk."""
    async with HttpAgentDispatcher(url=agent_stub.url, secret=AGENT_TOKEN) as dispatcher:
        await fill(service, store, clock, dispatcher, agent_stub, db_path)
    await ChatAgentService(store.agents, clock).update(
        1, url="https://agent.example/hook", secret="chat-secret-kept-as-stored"
    )
    await store.close()
    await asyncio.to_thread(bulk, db_path)
    return db_path


async def verbatim(where: Location, folder: Path) -> dict[str, bytes]:
    await export_database(where, folder, verbatim=True)
    return await asyncio.to_thread(read, folder)


def read(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def drop_first_run(folder: Path) -> None:
    runs = folder / "runs.jsonl"
    runs.write_bytes(b"".join(runs.read_bytes().splitlines(keepends=True)[1:]))


async def test_sqlite_to_postgresql_and_back_is_byte_identical(
    installation: Path, postgres_url: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path / "unused.db")
    code, out, err = await tickler(
        "migrate-store", "--from", f"sqlite:///{installation}", "--to", postgres_url, env=env
    )
    assert (code, err) == (0, ""), err
    summary, then = out.splitlines()
    assert summary.startswith(f"Moved {installation} to {postgres_url} in ")
    assert "; every count matches and the two exports are byte-identical (14 files). " in summary
    assert re.search(r"Time: export \d+\.\d s, import \d+\.\d s, export of the copy \d", summary)
    assert then == f"Now start Tickler with DATABASE_URL={postgres_url} (with its password)."

    back = tmp_path / "back" / "tickler.db"
    code, out, err = await tickler(
        "migrate-store", "--from", postgres_url, "--to", str(back), env=env
    )
    assert (code, err) == (0, ""), err
    assert (
        out.splitlines()[1]
        == f"Now start Tickler with DATABASE_PATH={back} and DATABASE_URL unset."
    )

    original = await verbatim(installation, tmp_path / "original")
    assert await verbatim(back, tmp_path / "back-export") == original
    assert await verbatim(postgres_url, tmp_path / "pg-export") == original
    counts = json.loads(original["manifest.json"])["counts"]
    listed = ", ".join(f"{count} {name}" for name, count in counts.items())
    assert f" s ({listed}); " in summary
    assert counts["schedules"] > SCHEDULES and counts["runs"] > SCHEDULES * RUNS_EACH
    assert counts["run_attempts"] > SCHEDULES * RUNS_EACH
    assert all(count > 0 for count in counts.values()), counts
    # Carried as stored: what an export for people would have redacted or dropped.
    everything = b"".join(original.values()).decode()
    assert KEY_IN_OUTPUT in everything and BEARER_IN_PROMPT in everything
    assert '"api_token":"kept-as-stored"' in everything
    assert '"secret":"chat-secret-kept-as-stored"' in everything
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval(
            "SELECT count(*) FROM runs WHERE output LIKE $1", f"%{KEY_IN_OUTPUT}%"
        )
        # New attempts get numbers after the copied ones.
        top = await conn.fetchval("SELECT max(seq) FROM run_attempts")
        assert (
            await conn.fetchval("SELECT nextval(pg_get_serial_sequence('run_attempts', 'seq'))")
            > top
        )
    finally:
        await conn.close()
    # The copy opens as a Tickler database.
    async with await SqliteStore.open(back) as restored:
        assert await restored.operations.count_all_schedules() == counts["schedules"]


async def test_a_target_that_holds_rows_is_refused_and_left_as_it_was(
    installation: Path, postgres_url: str, tmp_path: Path
) -> None:
    env = cli_env(tmp_path / "unused.db")
    assert (
        await tickler("migrate-store", "--from", str(installation), "--to", postgres_url, env=env)
    )[0] == 0
    before = await verbatim(postgres_url, tmp_path / "before")
    code, out, err = await tickler(
        "migrate-store", "--from", str(installation), "--to", postgres_url, env=env
    )
    assert (code, out) == (2, "")
    assert err == f"The target {postgres_url} is not empty; migrate into a new, empty database.\n"
    assert await verbatim(postgres_url, tmp_path / "after") == before


async def test_a_source_an_engine_still_uses_is_refused_unless_forced(
    installation: Path, postgres_url: str, tmp_path: Path
) -> None:
    heartbeat = datetime.now(UTC) - timedelta(seconds=10)
    db = await open_database(installation)
    try:
        await db.execute(
            "INSERT INTO engine_instances (id, host, pid, started_at, heartbeat_at) "
            "VALUES ('e1', 'vps', 4242, ?, ?)",
            (heartbeat.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),) * 2,
        )
        await db.commit()
    finally:
        await db.close()
    env = cli_env(tmp_path / "unused.db")
    code, out, err = await tickler(
        "migrate-store", "--from", str(installation), "--to", postgres_url, env=env
    )
    assert (code, out) == (2, "")
    assert err == (
        f"Tickler seems to be running on the source {installation} (an engine on vps pid 4242 "
        "wrote a heartbeat within the last minute): stop every replica first, or add --force "
        "if it is gone.\n"
    )
    conn = await asyncpg.connect(postgres_url)
    try:  # nothing was written: not even the schema
        assert await conn.fetchval("SELECT to_regclass('schedules')") is None
    finally:
        await conn.close()
    code, out, err = await tickler(
        "migrate-store", "--from", str(installation), "--to", postgres_url, "--force", env=env
    )
    assert (code, err) == (0, ""), err


async def test_a_copy_that_differs_is_one_sentence_and_status_1(
    installation: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real = export_database
    calls: list[Location] = []

    async def target_loses_a_row(where: Location, out: Path, **options: Any) -> dict[str, int]:
        calls.append(where)
        counts = await real(where, out, **options)
        if len(calls) == 2:  # the target's export: as if a run had not arrived
            await asyncio.to_thread(drop_first_run, Path(out))
        return counts

    monkeypatch.setattr(migrate_module, "export_database", target_loses_a_row)
    code = await asyncio.to_thread(
        main, ["migrate-store", "--from", str(installation), "--to", postgres_url]
    )
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err == (
        f"The copy in {postgres_url} differs from the source in runs.jsonl (1 file differ); "
        "keep using the source and drop the target.\n"
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("sqlite:///data/tickler.db", Path("data/tickler.db")),
        ("sqlite:////srv/tickler/tickler.db", Path("/srv/tickler/tickler.db")),
        ("/srv/tickler.db", Path("/srv/tickler.db")),
        ("tickler.db", Path("tickler.db")),
        ("postgresql://tickler:pw@db/tickler", "postgresql://tickler:pw@db/tickler"),
        ("postgres://db/tickler", "postgres://db/tickler"),
    ],
)
def test_locations_are_paths_sqlite_urls_or_postgresql_urls(text: str, where: Location) -> None:
    assert parse_location(text) == where


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        (
            "mysql://root@db/tickler",
            "mysql:// is not a database Tickler uses: give a SQLite file (a path or "
            "sqlite:///path) or a postgresql:// URL.",
        ),
        (
            "sqlite://tickler.db",
            "sqlite://tickler.db is not a SQLite URL: write sqlite:///relative/path, "
            "sqlite:////absolute/path or the file's path.",
        ),
    ],
)
def test_other_locations_are_one_sentence(text: str, sentence: str) -> None:
    with pytest.raises(MigrationRefused) as refused:
        parse_location(text)
    assert str(refused.value) == sentence


async def test_a_missing_source_and_one_database_twice_are_refused(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "unused.db")
    missing = tmp_path / "nothing.db"
    assert await tickler("migrate-store", "--from", str(missing), "--to", "t.db", env=env) == (
        2,
        "",
        f"There is no database at {missing}.\n",
    )
    assert not missing.exists()
    same = await tickler(
        "migrate-store", "--from", "x.db", "--to", f"sqlite:///{ROOT / 'x.db'}", env=env
    )
    assert same == (2, "", "--from and --to name the same database; name two.\n")


# --- the other database commands on DATABASE_URL ------------------------------------------
async def test_export_import_and_backup_on_a_postgresql_database(
    installation: Path, make_postgres_url: Callable[[], str], tmp_path: Path
) -> None:
    first, second = make_postgres_url(), make_postgres_url()
    env = cli_env(installation)
    code, out, err = await tickler("export", str(tmp_path / "from-sqlite"), env=env)
    assert (code, err) == (0, ""), err
    on_first = {**env, "DATABASE_URL": first}
    code, out, err = await tickler("import", str(tmp_path / "from-sqlite"), env=on_first)
    assert (code, err) == (0, ""), err
    assert out.startswith(f"Imported {tmp_path / 'from-sqlite'} into {first} (")
    code, out, err = await tickler("export", str(tmp_path / "from-pg"), env=on_first)
    assert (code, err) == (0, ""), err
    assert out.startswith(f"Exported {first} to {tmp_path / 'from-pg'} (")
    files = sorted(p.name for p in (tmp_path / "from-sqlite").iterdir())
    for name in files:
        assert (tmp_path / "from-pg" / name).read_bytes() == (
            tmp_path / "from-sqlite" / name
        ).read_bytes(), name
    on_second = {**env, "DATABASE_URL": second}
    code, out, err = await tickler("import", str(tmp_path / "from-pg"), env=on_second)
    assert (code, err) == (0, ""), err

    code, out, err = await tickler("backup", str(tmp_path / "copy.db"), env=on_first)
    assert (code, out) == (2, "")
    assert err.startswith("The database is PostgreSQL (DATABASE_URL): back it up with pg_dump")
    assert not (tmp_path / "copy.db").exists()


def give_line_the_number_of_the_one_before(folder: Path, line: int) -> None:
    path = folder / "schedules.jsonl"
    rows = [json.loads(text) for text in path.read_text(encoding="utf-8").splitlines()]
    before, row = rows[line - 2], rows[line - 1]
    assert before["chat_id"] == row["chat_id"]
    row["number"] = before["number"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


async def test_an_import_names_the_line_the_database_refuses_in_the_middle_of_a_batch(
    installation: Path, postgres_url: str, tmp_path: Path
) -> None:
    # Two schedules of one chat with one short number: no check of a row alone sees it,
    # the database's unique index does, while a batch of rows is written at once.
    folder = tmp_path / "export"
    await export_database(installation, folder, verbatim=True)
    await asyncio.to_thread(give_line_the_number_of_the_one_before, folder, 150)
    for target in (postgres_url, tmp_path / "target.db"):
        with pytest.raises(ValueError) as refused:
            await import_export(folder, target, verbatim=True)
        assert str(refused.value).startswith(
            f"The export in {folder} cannot be imported: schedules.jsonl:150: "
        )
        exported = await verbatim(target, tmp_path / f"after-{len(str(target))}")
        assert json.loads(exported["manifest.json"])["counts"]["schedules"] == 0


async def test_the_benchmark_runs_on_a_small_installation(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await asyncio.to_thread(
        bench_migrate_store.main, ["--url", postgres_url, "--schedules", "20", "--runs", "200"]
    )
    out = capsys.readouterr().out
    assert out.count("both exports byte-identical: yes") == 2, out
    assert (
        out.count(
            "counts: 0 bundles, 0 chat_agents, 0 chats, 0 event_runs, 0 events, "
            "20 notifications, 0 proposals, 200 run_attempts, 200 runs"
        )
        == 2
    )
