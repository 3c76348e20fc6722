"""Can Tickler use the database file? For `tickler doctor`: the same steps as a start
(create the folder and file if missing, migrate, take the write lock once)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from storage.database import open_database

__all__ = ["DatabaseReadiness", "prepare_database"]


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
