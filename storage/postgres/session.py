"""One PostgreSQL connection as the SQL functions of storage/ use a database (`Db`)."""

from __future__ import annotations

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
    prepared once per connection, then run with one round trip each."""

    def __init__(self, raw: asyncpg.Connection) -> None:
        self.raw = raw
        self._prepared: dict[str, tuple[Statement, asyncpg.prepared_stmt.PreparedStatement]] = {}
        #: Rows written through this connection (inserted, updated or deleted).
        self.total_changes = 0

    async def _run(self, sql: str, parameters: Any) -> tuple[list[asyncpg.Record], int]:
        entry = self._prepared.get(sql)
        if entry is None:
            statement = to_postgres(sql)
            entry = (statement, await self.raw.prepare(statement.text))
            self._prepared[sql] = entry
        statement, prepared = entry
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
        total = 0
        for one in parameters:
            total += max((await self._run(sql, one))[1], 0)
        return PgCursor(total)

    async def execute_fetchall(self, sql: str, parameters: Any = ()) -> list[asyncpg.Record]:
        rows, _ = await self._run(sql, parameters)
        return rows
