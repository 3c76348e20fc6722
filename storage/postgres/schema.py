"""PostgreSQL's schema: versioned migrations, applied at start as on SQLite, and the
same `SchemaTooNew` refusal of a database written by a newer Tickler.

PostgreSQL support begins at schema version 13 (storage/postgres/migrations/0013 is
SQLite's 0001-0013 in one step); each later version is a pair of migrations, one per
database, with the same number.
"""

from __future__ import annotations

import functools
from importlib import resources

import asyncpg

from storage.database import SCHEMA_VERSION, SchemaTooNew

__all__ = ["migrate", "migrations"]

#: pg_advisory_xact_lock key held while migrating: replicas starting together migrate once.
MIGRATION_LOCK = 0x7469636B6C6D67


@functools.cache
def migrations() -> tuple[tuple[int, str], ...]:
    folder = resources.files("storage.postgres") / "migrations"
    found = [
        (int(entry.name[:4]), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql") and entry.name[:4].isdigit()
    ]
    return tuple(sorted(found))


async def migrate(conn: asyncpg.Connection) -> int:
    """Apply the migrations newer than the database's version, all in one transaction."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS tickler_schema (version INTEGER NOT NULL)")
        current = await conn.fetchval("SELECT max(version) FROM tickler_schema") or 0
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"The database schema is version {current} but this Tickler knows only up "
                f"to {SCHEMA_VERSION}; upgrade Tickler or use a backup."
            )
        for number, sql in migrations():
            if number > current:
                await conn.execute(sql)
                await conn.execute("INSERT INTO tickler_schema (version) VALUES ($1)", number)
    return SCHEMA_VERSION
