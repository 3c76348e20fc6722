"""A PostgreSQL database as the repositories and the engine store use it
(`storage.sql.Connection`), shared by every replica of Tickler.

A few connections, each with its statements prepared once (`PgSession`). Writes of the
repositories (an operator's action, a proposal's decision) run one at a time across all
replicas, behind one advisory lock, as SQLite's write lock runs them: their rules read
and then write. The engine's hot transactions (`transact`) take no such lock: they lock
the rows they claim and skip rows another replica holds (`FOR UPDATE SKIP LOCKED`, in
storage/postgres/engine_store.py), and one that loses a deadlock is run again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from storage.database import DatabaseUnavailable
from storage.postgres.schema import migrate
from storage.postgres.session import PgSession
from storage.sql import Db
from storage.write_health import ReportsWriteHealth, WriteHealth

__all__ = [
    "PgConnection",
    "describe_failure",
    "exclusive",
    "is_unavailable",
    "redact",
    "snapshot",
]

log = logging.getLogger("tickler.storage")

T = TypeVar("T")

#: pg_advisory_xact_lock key of the repositories' writes ("tickler" in ASCII).
WRITE_LOCK = 0x7469636B6C6572
#: Connections per process: the engine's claim, acquisition and finishing, and an
#: operator's screen, at once.
POOL_SIZE = 4
#: Times a hot transaction that lost a deadlock or a serialisation race is run again.
RETRIES = 8
_RACES = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
#: Errors of the server or the way to it, not of the SQL: they pass once it is back.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)


def redact(url: str) -> str:
    """The URL without its password: what logs and messages may show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, _UNAVAILABLE)


def describe_failure(exc: BaseException, url: str) -> str:
    """One sentence for the operator: which database, what went wrong, what to do."""
    what = str(exc) or type(exc).__name__
    return (
        f"The database {redact(url)} cannot be written ({what}): check that the PostgreSQL "
        "server is up and reachable and that Tickler's user may write to it."
    )


class PgConnection(ReportsWriteHealth):
    def __init__(self, url: str, sessions: list[PgSession]) -> None:
        self.url = url
        self._idle: asyncio.Queue[PgSession] = asyncio.Queue()
        for session in sessions:
            self._idle.put_nowait(session)
        self._all = list(sessions)
        self.health = WriteHealth(redact(url))

    @classmethod
    async def open(cls, url: str, size: int = POOL_SIZE) -> PgConnection:
        """Connect, migrate (SchemaTooNew for a newer schema), and open `size` sessions;
        DatabaseUnavailable if the server cannot be reached."""
        sessions = [PgSession(await _open_one(url))]
        try:
            for _ in range(size - 1):
                sessions.append(PgSession(await _connect(url)))
        except BaseException as exc:
            for session in sessions:
                session.raw.terminate()
            if is_unavailable(exc):
                raise _unreachable(url, exc) from exc
            raise
        return cls(url, sessions)

    async def close(self) -> None:
        for session in self._all:
            try:
                await asyncio.wait_for(session.raw.close(), 5)
            except (TimeoutError, OSError, asyncpg.exceptions.InterfaceError):
                session.raw.terminate()

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[PgSession]:
        session = await self._idle.get()
        try:
            if session.raw.is_closed():
                # Lost with the server (a restart, the network): connect it again.
                session = PgSession(await _connect(self.url))
                self._all = [s for s in self._all if not s.raw.is_closed()] + [session]
            yield session
        finally:
            self._idle.put_nowait(session)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Db]:
        try:
            async with self._session() as session:
                before = session.total_changes
                async with session.raw.transaction():
                    await session.raw.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
                    yield session
        except BaseException as exc:
            if is_unavailable(exc):
                self.health.failed(describe_failure(exc, self.url))
            raise
        self.health.wrote(session.total_changes != before)

    async def transact(self, body: Callable[[Db], Coroutine[Any, Any, T]]) -> T:
        for attempt in range(RETRIES + 1):
            try:
                async with self._session() as session:
                    before = session.total_changes
                    async with session.raw.transaction():
                        result = await body(session)
            except _RACES:
                if attempt == RETRIES:
                    raise
                log.debug("a transaction lost a race with another replica; running it again")
                continue
            except BaseException as exc:
                if is_unavailable(exc):
                    self.health.failed(describe_failure(exc, self.url))
                raise
            self.health.wrote(session.total_changes != before)
            return result
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Db]:
        # One snapshot for the whole read, as a read on SQLite sees one.
        async with (
            self._session() as session,
            session.raw.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield session

    async def read_in_place(self, body: Callable[[Db], Coroutine[Any, Any, T]]) -> T:
        async with self._session() as session:
            return await body(session)


async def _connect(url: str) -> asyncpg.Connection:
    # Our own statement cache (PgSession) replaces asyncpg's.
    return await asyncpg.connect(url, statement_cache_size=0, timeout=10)


@asynccontextmanager
async def snapshot(url: str) -> AsyncIterator[Db]:
    """One read-only snapshot of the (migrated) database, on a connection of its own."""
    raw = await _open_one(url)
    try:
        async with raw.transaction(isolation="repeatable_read", readonly=True):
            yield PgSession(raw)
    finally:
        await raw.close()


@asynccontextmanager
async def exclusive(url: str) -> AsyncIterator[Db]:
    """One write transaction that the repositories' writes wait for (an import)."""
    raw = await _open_one(url)
    try:
        async with raw.transaction():
            await raw.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
            yield PgSession(raw)
            # Rows written with their own sequence numbers (an import) leave the
            # identity sequences behind: move them past the highest number.
            for table in ("run_attempts", "work_item_history"):
                await raw.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'seq'), "
                    f"COALESCE((SELECT MAX(seq) FROM {table}), 0) + 1, false)"
                )
    finally:
        await raw.close()


def _unreachable(url: str, exc: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(
        f"The database {redact(url)} cannot be reached ({exc}): check DATABASE_URL and "
        "that the PostgreSQL server is up."
    )


async def _open_one(url: str) -> asyncpg.Connection:
    try:
        raw = await _connect(url)
    except BaseException as exc:
        if is_unavailable(exc):
            raise _unreachable(url, exc) from exc
        raise
    try:
        await migrate(raw)
    except BaseException:
        raw.terminate()
        raise
    return raw
