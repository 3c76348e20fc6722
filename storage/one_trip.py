"""A whole write transaction in one step: on the event loop's thread when the write
lock is free, else in one trip to a writer thread of its own.

aiosqlite runs each statement on its own thread and hands the result back through the
event loop: a transaction of five statements (BEGIN, three writes, COMMIT) costs five
thread hand-overs, each a wake-up of both threads. `transact` runs the transaction body
(the same `storage.runs` / `storage.schedules` functions every other caller uses)
against `InlineConnection`, which executes each statement directly on a
`sqlite3.Connection`. The body is a coroutine whose awaits are all statements, so it
completes in a single `send`: the whole transaction, BEGIN to COMMIT, is one step. A
body that waits for anything else is a programming error and is refused (rolled back).

Where that step runs:
- `LoopWriter`, a second connection to the same file used on the event loop's own
  thread. The engine's transactions are short (a batch of claims or outcomes); run in
  place they skip the hand-over to the database thread and back, and the two threads'
  contention for the GIL around every row SQLite steps through (bench/RESULTS.md has
  what that is worth). It never waits
  for the write lock: if another connection (another process, a backup, this
  process's own aiosqlite connection) holds it, BEGIN fails at once (`WriterBusy`), and
- `ThreadWriter`, a third connection owned by one thread of its own, takes the
  transaction instead: it waits up to the busy timeout without blocking the event loop,
  and runs the whole body there in one hand-over. (aiosqlite offers no public way to run
  a function on its thread, so the fallback does not borrow aiosqlite's.)
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from storage.database import BUSY_TIMEOUT_MS, CONNECTION_PRAGMAS

__all__ = ["InlineConnection", "LoopWriter", "ThreadWriter", "WriterBusy", "transact"]

T = TypeVar("T")


class InlineConnection:
    """The subset of `aiosqlite.Connection` the storage functions use, run in place on
    the calling thread (no further hand-over)."""

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


def _whole(
    conn: sqlite3.Connection, body: Callable[[aiosqlite.Connection], Coroutine[Any, Any, T]]
) -> T:
    """BEGIN IMMEDIATE, the body, COMMIT; rolled back if anything raises."""
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


class WriterBusy(Exception):
    """Another connection holds the write lock: run the transaction elsewhere."""


def _busy(exc: BaseException) -> bool:
    return (
        isinstance(exc, sqlite3.OperationalError)
        and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY
    )


class LoopWriter:
    """A connection of its own to the database file, for transactions run in place on
    the event loop's thread. It never waits for a lock (busy timeout 0) and never
    checkpoints the WAL itself (a checkpoint copies pages and syncs the file: the
    store runs it on the database thread, `checkpoint_due`)."""

    #: Commits between two checkpoints asked of the database thread (the default
    #: automatic checkpoint comes at about 1,000 pages; a claim or a group of outcomes
    #: writes a few dozen).
    CHECKPOINT_EVERY = 64

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._commits = 0

    @property
    def total_changes(self) -> int:
        return 0 if self._conn is None else self._conn.total_changes

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=0)
            try:
                for pragma in CONNECTION_PRAGMAS:
                    conn.execute(pragma)
                conn.execute("PRAGMA wal_autocheckpoint = 0")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def run(self, body: Callable[[aiosqlite.Connection], Coroutine[Any, Any, T]]) -> T:
        """Run `body` as one transaction here and now; WriterBusy if the write lock is
        taken (nothing was done)."""
        conn = self._connection()
        try:
            result = _whole(conn, body)
        except BaseException as exc:
            if not conn.in_transaction and _busy(exc):
                raise WriterBusy from exc
            if conn.in_transaction or isinstance(exc, sqlite3.Error):
                self._drop(conn)
            raise
        self._commits += 1
        return result

    def _drop(self, conn: sqlite3.Connection) -> None:
        # After an error of SQLite's (a disk that went away, a file made read-only) the
        # connection is not used again: one still in its transaction (its ROLLBACK
        # failed) would hold the write lock against every other writer, and one that saw
        # the file fail may keep state from before the fault. The next use opens anew.
        self._conn = None
        with contextlib.suppress(sqlite3.Error):
            conn.close()

    def read(self, body: Callable[[aiosqlite.Connection], Coroutine[Any, Any, T]]) -> T:
        """Run `body`, which only reads, here and now (each statement sees the latest
        commit, as on aiosqlite's connection); WriterBusy if SQLite asks it to wait
        (in WAL mode only while another connection recovers or resets the WAL)."""
        conn = self._connection()
        try:
            return run_to_end(body(cast(aiosqlite.Connection, InlineConnection(conn))))
        except sqlite3.Error as exc:
            if _busy(exc):
                raise WriterBusy from exc
            self._drop(conn)
            raise

    def checkpoint_due(self) -> bool:
        """True once every CHECKPOINT_EVERY commits."""
        if self._commits >= self.CHECKPOINT_EVERY:
            self._commits = 0
            return True
        return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class ThreadWriter:
    """A connection of its own to the database file, used only on one thread of its own:
    the transactions the loop writer could not run (the write lock was taken) wait
    there for the lock, up to the busy timeout, while the event loop goes on."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tickler-writer")
        #: Rows changed by its transactions, counted on its thread (the connection's own
        #: count may only be read there, and starts again with a new connection).
        self._changes = 0
        self._closed = False

    @property
    def total_changes(self) -> int:
        return self._changes

    def _connection(self) -> sqlite3.Connection:
        # On the writer thread only: the connection never leaves it.
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            try:
                for pragma in CONNECTION_PRAGMAS:
                    conn.execute(pragma)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _run(self, body: Callable[[aiosqlite.Connection], Coroutine[Any, Any, T]]) -> T:
        conn = self._connection()
        before = conn.total_changes
        try:
            result = _whole(conn, body)
            self._changes += conn.total_changes - before
            return result
        except BaseException as exc:
            if conn.in_transaction or isinstance(exc, sqlite3.Error):
                # As LoopWriter._drop: never reuse a connection that saw the file fail.
                self._conn = None
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            raise

    async def run(self, body: Callable[[aiosqlite.Connection], Coroutine[Any, Any, T]]) -> T:
        """Run `body` as one transaction on the writer thread. If the awaiting task is
        cancelled meanwhile, the transaction still runs to its end there, commit or
        rollback: it is never left open."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._run, body)

    async def checkpoint(self) -> None:
        """Move the WAL's pages into the database file, on the writer thread. PASSIVE:
        it copies what no reader still needs and waits for nobody, so other connections
        go on writing while the pages are copied."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._checkpoint)

    def _checkpoint(self) -> None:
        self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connection on its thread, after any transaction still running; a
        second close does nothing."""
        if self._closed:
            return
        self._closed = True
        self._thread.submit(self._close)
        self._thread.shutdown(wait=True)


async def transact(
    body: Callable[[aiosqlite.Connection], Coroutine[Any, Any, T]],
    writer: LoopWriter,
    fallback: ThreadWriter,
) -> T:
    """Run `body` as one `BEGIN IMMEDIATE` transaction: committed if it returns, rolled
    back if it raises (the error is raised here). In place on this thread unless the
    write lock is taken; then on the fallback's thread, which waits for it."""
    try:
        return writer.run(body)
    except WriterBusy:
        return await fallback.run(body)
