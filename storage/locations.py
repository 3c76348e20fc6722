"""Where Tickler's data lives: a SQLite file (a path, the default) or a PostgreSQL
database (a `postgresql://` URL), opened as a whole store or as one transaction."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from storage import database
from storage.bundle import SqlStore
from storage.database import open_database
from storage.postgres import connection as postgres
from storage.postgres.store import PostgresStore
from storage.sql import Db
from storage.sqlite_store import SqliteStore

__all__ = [
    "Location",
    "exclusive",
    "is_constraint_error",
    "is_postgres",
    "is_unavailable",
    "open_store",
    "shown",
    "snapshot",
]

#: A SQLite file's path, or a PostgreSQL URL.
Location = str | Path

_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(where: Location) -> bool:
    return isinstance(where, str) and where.startswith(_SCHEMES)


def shown(where: Location) -> str:
    """The location as logs and messages may show it (no password)."""
    return postgres.redact(str(where)) if is_postgres(where) else str(where)


async def open_store(where: Location) -> SqlStore:
    if is_postgres(where):
        return await PostgresStore.open(str(where))
    return await SqliteStore.open(where)


@asynccontextmanager
async def snapshot(where: Location) -> AsyncIterator[Db]:
    """One read snapshot of the database, on a connection of its own (an export)."""
    if is_postgres(where):
        async with postgres.snapshot(str(where)) as db:
            yield db
        return
    lite = await open_database(where)
    try:
        await lite.execute("BEGIN")
        try:
            yield lite
        finally:
            await lite.execute("ROLLBACK")
    finally:
        await lite.close()


@asynccontextmanager
async def exclusive(where: Location) -> AsyncIterator[Db]:
    """One write transaction that every other writer waits for (an import)."""
    if is_postgres(where):
        async with postgres.exclusive(str(where)) as db:
            yield db
        return
    lite = await open_database(where)
    try:
        await lite.execute("BEGIN IMMEDIATE")
        try:
            yield lite
        except BaseException:
            with contextlib.suppress(Exception):
                await lite.execute("ROLLBACK")
            raise
        await lite.execute("COMMIT")
    finally:
        await lite.close()


def is_constraint_error(exc: BaseException) -> bool:
    """A row refused by a constraint (a unique key, a foreign key, NOT NULL)."""
    return isinstance(
        exc, sqlite3.IntegrityError | asyncpg.exceptions.IntegrityConstraintViolationError
    )


def is_unavailable(exc: BaseException) -> bool:
    """An error of the database's file, server or volume, not of the SQL."""
    return database.is_unavailable(exc) or postgres.is_unavailable(exc)
