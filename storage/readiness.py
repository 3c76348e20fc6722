"""Can Tickler use the database? For `tickler doctor`: the same steps as a start (for a
SQLite file: create the folder and file if missing, migrate, take the write lock once;
for PostgreSQL: connect, migrate, and try a write)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import aiosqlite
import asyncpg

from storage.database import open_database
from storage.postgres.schema import migrate

__all__ = ["DatabaseReadiness", "prepare_database", "prepare_postgres"]

#: Seconds to wait for the PostgreSQL server to accept the connection.
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class DatabaseReadiness:
    created: bool
    #: The schema version found before migrating (0 for a new file).
    version_before: int
    version: int


async def prepare_database(path: Path) -> DatabaseReadiness:
    """Create (if missing) and migrate the database at `path` as a start does
    (`open_database` also takes the write lock once). Raises OSError, sqlite3.Error,
    DatabaseUnavailable or SchemaTooNew when the file cannot be used."""
    created = await asyncio.to_thread(_prepare_folder, path)
    before = 0 if created else await _user_version(path)
    db = await open_database(path)
    try:
        version = await _read_version(db)
    finally:
        await db.close()
    return DatabaseReadiness(created=created, version_before=before, version=version)


def _prepare_folder(path: Path) -> bool:
    """Create the database's folder if missing; True when the file is not there yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return not path.exists()


async def _user_version(path: Path) -> int:
    async with aiosqlite.connect(str(path)) as db:
        return await _read_version(db)


async def _read_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def prepare_postgres(url: str) -> DatabaseReadiness:
    """Connect to the PostgreSQL database at `url`, migrate it as a start does, and
    write nothing in a transaction that would write (the privileges and a read-only
    server are checked when it is planned). Raises asyncpg's errors, OSError,
    TimeoutError or SchemaTooNew when it cannot be used."""
    raw = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S, statement_cache_size=0)
    try:
        before = 0
        if await raw.fetchval("SELECT to_regclass('tickler_schema') IS NOT NULL"):
            before = await raw.fetchval("SELECT max(version) FROM tickler_schema") or 0
        version = await migrate(raw)
        async with raw.transaction():
            await raw.execute("UPDATE schedules SET updated_at = updated_at WHERE false")
            await raw.execute("UPDATE tickler_schema SET version = version WHERE false")
    finally:
        await raw.close()
    return DatabaseReadiness(created=before == 0, version_before=before, version=version)
