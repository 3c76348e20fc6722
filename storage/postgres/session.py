"""One PostgreSQL connection as the SQL functions of storage/ use a database (`Db`)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

import asyncpg

from storage.postgres.dialect import Statement, to_postgres

__all__ = ["PgCursor", "PgSession"]


class PgCursor:
    __slots__ = ("rowcount",)

    def __init__(self, rowcount: int) -> None:
        self.rowcount = rowcount


class PgSession:
    """Statements in storage/'s SQL, each rewritten (storage/postgres/dialect.py) and
    prepared once per connection, then run with one round trip each; `executemany` runs
    all its rows in one round trip (a pipeline of binds, one sync)."""

    def __init__(self, raw: asyncpg.Connection) -> None:
        self.raw = raw
        self._prepared: dict[str, tuple[Statement, asyncpg.prepared_stmt.PreparedStatement]] = {}
        #: Rows written through this connection (inserted, updated or deleted).
        self.total_changes = 0

    async def _prepare(self, sql: str) -> tuple[Statement, asyncpg.prepared_stmt.PreparedStatement]:
        entry = self._prepared.get(sql)
        if entry is None:
            statement = to_postgres(sql)
            entry = (statement, await self.raw.prepare(statement.text))
            self._prepared[sql] = entry
        return entry

    async def _run(self, sql: str, parameters: Any) -> tuple[list[asyncpg.Record], int]:
        statement, prepared = await self._prepare(sql)
        rows = await prepared.fetch(*statement.arguments(parameters))
        # "UPDATE 3", "INSERT 0 1", "DELETE 0", "SELECT 2": the count is the last word.
        status = prepared.get_statusmsg() or ""
        verb, _, count = status.partition(" ")
        rowcount = int(count.rpartition(" ")[2]) if count else -1
        if verb in ("INSERT", "UPDATE", "DELETE"):
            self.total_changes += rowcount
        return rows, rowcount

    async def execute(self, sql: str, parameters: Any = ()) -> PgCursor:
        _, rowcount = await self._run(sql, parameters)
        return PgCursor(rowcount)

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> PgCursor:
        """Every row's statement in one round trip. A pipeline answers with rows, not
        with each statement's count: the statement returns a row per row it wrote
        (`RETURNING 1`, added when it returns nothing), and their number is the count.
        A statement that writes nothing runs a row at a time."""
        rows = list(parameters)
        counted = _counted(sql)
        if counted is None:
            total = 0
            for one in rows:
                total += max((await self._run(sql, one))[1], 0)
            return PgCursor(total)
        if not rows:
            return PgCursor(0)
        statement, prepared = await self._prepare(counted)
        written = len(await prepared.fetchmany([statement.arguments(one) for one in rows]))
        self.total_changes += written
        return PgCursor(written)

    async def execute_fetchall(self, sql: str, parameters: Any = ()) -> list[asyncpg.Record]:
        rows, _ = await self._run(sql, parameters)
        return rows


_WRITES = re.compile(r"\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
_RETURNING = re.compile(r"\sRETURNING\s", re.IGNORECASE)


@functools.cache
def _counted(sql: str) -> str | None:
    """`sql` returning a row per row it writes, or None for a statement that writes
    nothing (its rows would not count anything)."""
    if not _WRITES.match(sql):
        return None
    if _RETURNING.search(sql):
        return sql
    return f"{sql} RETURNING 1"
