"""A database that cannot be written (here: another process holds the write lock past
the busy timeout) is named in one sentence with the fix, and the store remembers it
until a write goes through again. The process-level cases (read-only file, full
disk) are in tests/reliability/test_database_faults.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage import database
from storage.database import DatabaseUnavailable, describe_failure, is_unavailable
from storage.sqlite_store import SqliteStore

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 50)


@pytest.fixture
def locked(db_path: Path) -> Iterator[sqlite3.Connection]:
    """Another client (a backup, say) holding the write lock until the test ends."""
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("PRAGMA journal_mode = WAL")
    other.execute("BEGIN EXCLUSIVE")
    yield other
    other.execute("ROLLBACK")
    other.close()


async def test_opening_a_locked_file_is_refused_in_one_sentence_naming_it(
    db_path: Path, locked: sqlite3.Connection
) -> None:
    with pytest.raises(DatabaseUnavailable) as refused:
        await SqliteStore.open(db_path)
    assert str(refused.value) == (
        f"The database {db_path} cannot be written (database is locked): another process "
        "(a backup?) holds its write lock past the busy timeout; it works again once that "
        "process lets go."
    )


async def test_a_failed_write_is_remembered_and_reported_until_a_write_succeeds(
    db_path: Path,
) -> None:
    store = await SqliteStore.open(db_path)
    told: list[str | None] = []
    store.on_write_health = told.append
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        for _ in range(2):
            with pytest.raises(sqlite3.OperationalError) as failed:
                await store.chats.set_timezone(7, "Europe/Berlin", NOW)
            assert is_unavailable(failed.value)
        assert store.write_failure == describe_failure(failed.value, db_path)
        other.execute("ROLLBACK")
        # A transaction that changes nothing writes nothing: no proof of health.
        await store.engine.heartbeat("no such engine", NOW)
        assert store.write_failure == describe_failure(failed.value, db_path)
        await store.chats.set_timezone(7, "Europe/Berlin", NOW)
        assert store.write_failure is None
        # Told once when it broke, once when it healed: not once per failed retry.
        assert told == [describe_failure(failed.value, db_path), None]
    finally:
        other.close()
        await store.close()


def test_errors_of_the_sql_itself_are_not_called_unavailable() -> None:
    with sqlite3.connect(":memory:") as db, pytest.raises(sqlite3.Error) as bad:
        db.execute("SELECT * FROM no_such_table")
    assert not is_unavailable(bad.value)
