"""Opening the SQLite file: pragmas, forward-only migrations, schema version check."""

from __future__ import annotations

import functools
import os
import sqlite3
from importlib import resources
from pathlib import Path

import aiosqlite

__all__ = [
    "CONNECTION_PRAGMAS",
    "SCHEMA_VERSION",
    "DatabaseUnavailable",
    "SchemaTooNew",
    "describe_failure",
    "is_unavailable",
    "migrate",
    "open_database",
    "schema_columns",
]

#: Seconds a writer waits for another writer (a second engine, a backup) before failing.
BUSY_TIMEOUT_MS = 15_000
#: Settings of each connection (the file's WAL mode is set once, in open_database): NORMAL
#: sync is durable across process crashes (the case we design for) and much faster than
#: FULL.
CONNECTION_PRAGMAS = ("PRAGMA synchronous = NORMAL", "PRAGMA foreign_keys = ON")


class SchemaTooNew(RuntimeError):
    """The file was written by a newer Tickler; running old code on it could corrupt it."""


class DatabaseUnavailable(RuntimeError):
    """The database file cannot be opened for writing; the message is the one line to
    print (what SQLite said, the path, and what to do)."""


#: SQLite's primary result codes for a file that is there but cannot be written now
#: (locked, read-only, full, I/O error, unopenable): faults of the environment, not of
#: the SQL, and they pass once the environment is fixed.
_UNAVAILABLE = {
    sqlite3.SQLITE_PERM: "the operating system refused access to it",
    sqlite3.SQLITE_BUSY: "another process (a backup?) holds its write lock past the "
    "busy timeout; it works again once that process lets go",
    sqlite3.SQLITE_LOCKED: "another connection holds its write lock",
    sqlite3.SQLITE_READONLY: "make the file and its directory writable by the user "
    "Tickler runs as (uid {uid}), or point DATABASE_PATH at a writable place",
    sqlite3.SQLITE_IOERR: "the file system refused a write (full, read-only or failing); "
    "check the volume",
    sqlite3.SQLITE_FULL: "the disk is full; free space on its volume",
    sqlite3.SQLITE_CANTOPEN: "check that its directory exists and that the user Tickler "
    "runs as (uid {uid}) may create files in it",
}


#: Codes of a file that is there but is no SQLite database (or a damaged one): start-up
#: stops on them with one line; retrying cannot help, a backup can.
_UNREADABLE = {
    sqlite3.SQLITE_NOTADB: "it is not a SQLite database; point DATABASE_PATH at Tickler's "
    "database file, or move this file away to start afresh",
    sqlite3.SQLITE_CORRUPT: "the file is damaged; restore a backup (made by `tickler backup`) "
    "or move it away to start afresh",
}


def is_unavailable(exc: BaseException) -> bool:
    """True for an error of the file or its volume (see `_UNAVAILABLE`), not of the SQL."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in _UNAVAILABLE


def describe_failure(exc: BaseException, path: str | Path) -> str:
    """One sentence for the operator: which file, what SQLite said, what to do."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _UNREADABLE:
        return f"The database {path} cannot be read ({exc}): {_UNREADABLE[code & 0xFF]}."
    fix = _UNAVAILABLE.get(code & 0xFF, "") if code is not None else ""
    fix = fix.format(uid=os.geteuid()) or "check the file and its volume"
    return f"The database {path} cannot be written ({exc}): {fix}."


@functools.cache
def _migrations() -> tuple[tuple[int, str], ...]:
    """The numbered migrations shipped with the package, read once per process."""
    folder = resources.files("storage") / "migrations"
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text(encoding="utf-8")))
    return tuple(sorted(found))


SCHEMA_VERSION = max(number for number, _ in _migrations())


def backfill_statement(number: int, only_where: str) -> str:
    """The last statement of migration `number` (its backfill UPDATE, which ends in a
    WHERE), limited to the rows matching `only_where`: for rows that arrive after it ran
    (an import of an export made before it), so the rule is written once."""
    last = next(_split(sql) for n, sql in _migrations() if n == number)[-1]
    return f"{last} AND {only_where}"


async def open_database(path: str | Path) -> aiosqlite.Connection:
    """Open (creating if needed) and migrate the database at `path`; DatabaseUnavailable
    if it cannot be written (read-only, full, locked past the busy timeout)."""
    try:
        db = await aiosqlite.connect(str(path), isolation_level=None)
    except sqlite3.Error as exc:
        raise DatabaseUnavailable(describe_failure(exc, path)) from exc
    db.row_factory = aiosqlite.Row
    try:
        # WAL lets readers proceed while the engine writes.
        await db.execute("PRAGMA journal_mode = WAL")
        for pragma in CONNECTION_PRAGMAS:
            await db.execute(pragma)
        await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await migrate(db)
        # An up-to-date file is opened without writing a byte: take the write lock
        # once, so a read-only file stops start-up instead of every later write.
        await db.execute("BEGIN IMMEDIATE")
        await db.execute("ROLLBACK")
    except BaseException as exc:
        await db.close()
        code = getattr(exc, "sqlite_errorcode", None)
        if is_unavailable(exc) or (code is not None and code & 0xFF in _UNREADABLE):
            raise DatabaseUnavailable(describe_failure(exc, path)) from exc
        raise
    return db


async def migrate(db: aiosqlite.Connection) -> int:
    """Apply the migrations newer than the file's `user_version`, each atomically."""
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    current = int(row[0]) if row else 0
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"The database schema is version {current} but this Tickler knows only up to "
            f"{SCHEMA_VERSION}; upgrade Tickler or use a backup."
        )
    for number, sql in _migrations():
        if number <= current:
            continue
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the write lock: a second process may have migrated meanwhile.
            async with db.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            if row and int(row[0]) >= number:
                await db.execute("ROLLBACK")
                continue
            for statement in _split(sql):
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {number}")
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


def _split(script: str) -> list[str]:
    # executescript() would COMMIT our transaction; split on statement ends instead.
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


@functools.cache
def schema_columns() -> dict[str, dict[str, tuple[str, bool]]]:
    """Each table's columns as {column: (declared type, NOT NULL)}, read from the
    migrations applied to an in-memory database, so checks follow the schema."""
    db = sqlite3.connect(":memory:")
    try:
        for _, sql in _migrations():
            db.executescript(sql)
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            table: {
                row[1]: (str(row[2]).upper(), bool(row[3]))
                for row in db.execute(f"PRAGMA table_info({table})")
            }
            for table in tables
        }
    finally:
        db.close()
