"""What the SQL functions of storage/ need from a database, whichever it is.

Every module of SQL (schedules, runs, proposals, ...) is written once, in SQLite's
dialect, against `Db`: aiosqlite's connection is one, the loop writer's inline
connection another, and `storage.postgres.session.PgSession` (which rewrites each
statement for PostgreSQL once) the third. The repositories and the engine store take a
`Connection`: transactions and reads over one database, SQLite's or PostgreSQL's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

__all__ = ["Connection", "Cursor", "Db", "Row", "fetch_all", "fetch_one"]

T = TypeVar("T")


class Row(Protocol):
    """A row read: its values by position or by column name (sqlite3.Row, asyncpg's
    Record)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...


class Db(Protocol):
    """One database session inside a transaction or a read (the subset of aiosqlite's
    connection the SQL functions use)."""

    @property
    def total_changes(self) -> int: ...

    def execute(self, sql: str, parameters: Any = ..., /) -> Awaitable[Cursor]: ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Awaitable[Cursor]: ...

    def execute_fetchall(self, sql: str, parameters: Any = ..., /) -> Awaitable[Iterable[Any]]: ...


class Connection(Protocol):
    """A database as the repositories and the engine store use it."""

    @property
    def write_failure(self) -> str | None:
        """Why the last write failed (one sentence for the operator), until one succeeds."""
        ...

    @property
    def on_write_health(self) -> Callable[[str | None], None] | None: ...

    @on_write_health.setter
    def on_write_health(self, tell: Callable[[str | None], None] | None) -> None: ...

    def write(self) -> AbstractAsyncContextManager[Db]:
        """One transaction that other writers of the same rows wait for."""
        ...

    async def transact(self, body: Callable[[Db], Coroutine[Any, Any, T]]) -> T:
        """`write` for the engine's hot transactions; `body` may run more than once (a
        transaction that lost a race is run again), so it must start from nothing."""
        ...

    def read(self) -> AbstractAsyncContextManager[Db]: ...

    async def read_in_place(self, body: Callable[[Db], Coroutine[Any, Any, T]]) -> T: ...

    async def close(self) -> None: ...


async def fetch_all(db: Db, sql: str, params: Any = ()) -> list[Row]:
    """Run a query and read every row in one trip to the database (execute + fetch +
    close would be three on aiosqlite's thread)."""
    return list(await db.execute_fetchall(sql, params))


async def fetch_one(db: Db, sql: str, params: Any = ()) -> Row | None:
    rows = await fetch_all(db, sql, params)
    return rows[0] if rows else None
