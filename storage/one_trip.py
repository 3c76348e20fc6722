"""A whole write transaction in one trip to aiosqlite's database thread.

aiosqlite runs each statement on its own thread and hands the result back through the
event loop: a transaction of five statements (BEGIN, three writes, COMMIT) costs five
thread hand-overs, each a wake-up of both threads. In a burst the engine's claim,
acquisition and outcome transactions were bound by those hand-overs, not by SQLite or
Python: the loop thread sat idle about half the time waiting for them.

`transact` runs the transaction body (the same `storage.runs` / `storage.schedules`
functions every other caller uses) on the database thread against `InlineConnection`,
which executes each statement directly on the underlying `sqlite3.Connection`. The body
is a coroutine whose awaits are all statements, so it completes in a single `send`: the
whole transaction, BEGIN to COMMIT, is one hand-over. A body that waits for anything
else is a programming error and is refused (rolled back) rather than blocking the
database thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar, cast

import aiosqlite

__all__ = ["InlineConnection", "transact"]

T = TypeVar("T")


class InlineConnection:
    """The subset of `aiosqlite.Connection` the storage functions use, run in place on
    the database thread (no further hand-over)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def total_changes(self) -> int:
        return self._conn.total_changes

    async def execute(self, sql: str, parameters: Any = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, parameters)

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> sqlite3.Cursor:
        return self._conn.executemany(sql, parameters)

    async def execute_fetchall(self, sql: str, parameters: Any = ()) -> list[Any]:
        return self._conn.execute(sql, parameters).fetchall()


def run_to_end(coro: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends; RuntimeError if it does."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return cast(T, stop.value)
    coro.close()
    raise RuntimeError("a one-trip transaction waited for something other than a statement")


async def transact(
    db: aiosqlite.Connection,
    body: Callable[[aiosqlite.Connection], Coroutine[Any, Any, T]],
) -> T:
    """Run `body` as one `BEGIN IMMEDIATE` transaction on `db`'s thread: committed if it
    returns, rolled back if it raises (the error is raised here). If the awaiting task
    is cancelled, the transaction still runs to its end, commit or rollback, on its own:
    it is never left open."""

    def whole() -> T:
        # aiosqlite keeps the sqlite3 connection private; this runs on its thread, the
        # only one allowed to use it, and statements queued by other coroutines wait
        # behind this whole function.
        conn: sqlite3.Connection = db._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Typed as an aiosqlite connection: the storage functions are written against
            # it, and InlineConnection has the part of it they use.
            result = run_to_end(body(cast(aiosqlite.Connection, InlineConnection(conn))))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    # aiosqlite's own way onto its thread (every public method goes through it); untyped.
    return cast(T, await db._execute(whole))  # type: ignore[no-untyped-call]
