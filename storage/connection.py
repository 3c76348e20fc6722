"""One SQLite database as the engine store and the repositories share it.

One aiosqlite connection per database. Writes run as `BEGIN IMMEDIATE` transactions,
which take SQLite's write lock up front: two engines on the same file serialise their
claims instead of both reading the same due rows. An asyncio lock keeps this process's
own coroutines from interleaving statements inside one another's transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from storage.database import describe_failure, is_unavailable, open_database
from storage.one_trip import LoopWriter, ThreadWriter, WriterBusy, transact
from storage.write_health import ReportsWriteHealth, WriteHealth

__all__ = ["SqliteConnection"]

log = logging.getLogger("tickler.storage")

T = TypeVar("T")


class SqliteConnection(ReportsWriteHealth):
    def __init__(
        self,
        db: aiosqlite.Connection,
        path: str | Path = "the database",
        writer: LoopWriter | None = None,
        fallback: ThreadWriter | None = None,
    ) -> None:
        self._db = db
        self.path = path
        #: Run the engine's hot transactions in one step: on the event loop's thread when
        #: the write lock is free, else on a writer thread (storage/one_trip.py). None (an
        #: in-memory database, which only one connection can see): statement by
        #: statement on aiosqlite's thread.
        self._writer = writer
        self._fallback = fallback
        self._checkpointing: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._cleanup: asyncio.Future[None] | None = None
        self.health = WriteHealth(str(path))

    @classmethod
    async def open(cls, path: str | Path) -> SqliteConnection:
        db = await open_database(path)
        if str(path) == ":memory:":
            return cls(db, path)
        return cls(db, path, LoopWriter(path), ThreadWriter(path))

    async def close(self) -> None:
        if self._checkpointing is not None:
            self._checkpointing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointing
        async with self._lock:
            if self._cleanup is not None:
                await self._cleanup
            if self._writer is not None:
                self._writer.close()
            if self._fallback is not None:
                await asyncio.to_thread(self._fallback.close)
            await self._db.close()

    def changes(self) -> int:
        """Rows changed through this database's connections so far."""
        writer = 0 if self._writer is None else self._writer.total_changes
        fallback = 0 if self._fallback is None else self._fallback.total_changes
        return self._db.total_changes + writer + fallback

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One `BEGIN IMMEDIATE` … `COMMIT` transaction, statement by statement."""
        async with self._lock:
            changes = self.changes()
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                await self._db.execute("COMMIT")
            except asyncio.CancelledError:
                # aiosqlite runs statements in order on its own thread, even when the
                # awaiting task was cancelled: a cancelled BEGIN may still open the
                # transaction later. A ROLLBACK queued behind it always closes it, and
                # any later statement queues behind the ROLLBACK, so it need not be
                # awaited here (that could take the whole busy timeout).
                self._cleanup = asyncio.ensure_future(self._rollback())
                raise
            except BaseException as exc:
                await self._rollback()
                if is_unavailable(exc):
                    self._write_failed(exc)
                raise
            self._wrote(changes)

    async def transact(self, body: Callable[[aiosqlite.Connection], Coroutine[Any, Any, T]]) -> T:
        """`write` for a transaction that only runs statements, in one step
        (storage/one_trip.py): the engine's hot path."""
        if self._writer is None or self._fallback is None:
            async with self.write() as db:
                return await body(db)
        async with self._lock:
            changes = self.changes()
            try:
                result = await transact(body, self._writer, self._fallback)
            except BaseException as exc:
                if is_unavailable(exc):
                    self._write_failed(exc)
                raise
            self._wrote(changes)
        if self._writer is not None and self._writer.checkpoint_due():
            self._checkpoint_soon()
        return result

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            yield self._db

    async def read_in_place(
        self, body: Callable[[aiosqlite.Connection], Coroutine[Any, Any, T]]
    ) -> T:
        """`read` for the engine's hot reads: on the event loop's thread through the
        loop writer's connection (no hand-over), else on aiosqlite's thread."""
        async with self._lock:
            if self._writer is not None:
                try:
                    return self._writer.read(body)
                except WriterBusy:
                    pass
            return await body(self._db)

    def _checkpoint_soon(self) -> None:
        """Move the WAL's pages into the database file on the writer thread (the loop
        writer never does it, so that the event loop never waits for a sync)."""
        if self._checkpointing is None or self._checkpointing.done():
            self._checkpointing = asyncio.create_task(
                self._checkpoint(), name="wal-checkpoint", context=contextvars.Context()
            )

    async def _checkpoint(self) -> None:
        try:
            if self._fallback is not None:
                # Most pages are copied beside the store's transactions; then the few
                # written meanwhile, between them. The WAL starts over only once a
                # checkpoint has caught up with it, which one running beside a stream
                # of commits never does: it would grow for as long as a burst lasts.
                await self._fallback.checkpoint()
                async with self._lock:
                    await self._fallback.checkpoint()
                return
            async with self._lock:
                # PASSIVE: copies what no reader still needs, never waits for anyone.
                await self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as exc:
            # The next one catches up; a closed store has nothing left to move.
            log.debug("WAL checkpoint skipped: %s", exc)

    def _wrote(self, changes_before: int) -> None:
        self.health.wrote(self.changes() != changes_before)

    def _write_failed(self, exc: BaseException) -> None:
        self.health.failed(describe_failure(exc, self.path))

    async def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.OperationalError):  # "no transaction is active"
            await self._db.execute("ROLLBACK")
