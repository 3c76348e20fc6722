"""One replica at a time: a PostgreSQL session advisory lock, held on a connection of its
own for as long as the replica does the job (Tickler's: poll Telegram and send the
outbox, which must happen in one process so that a chat's messages keep their order).

A session lock lives as long as the session: the holder keeps it without touching it,
and the server frees it the moment the connection ends, whether the holder stopped,
crashed or lost the network. The connection asks the server to probe the client
(TCP keepalives, a user timeout), so that a holder cut off by the network loses the lock
within about half a minute instead of the operating system's two hours; the holder,
for its part, `confirm`s the connection every few seconds and stops the job when it
cannot, so that two replicas never do it for longer than that.

The same connection carries the replicas' notices to the holder (LISTEN/NOTIFY): a
replica that queued a chat message tells the one that sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable

import asyncpg

from storage.postgres.connection import is_unavailable, redact

__all__ = ["Leadership", "lock_key"]

log = logging.getLogger("tickler.storage")

#: Seconds a connection attempt, or the confirming round trip, may take.
TIMEOUT_S = 5.0
#: The server probes a silent client after 10 s, every 5 s, 3 times, and gives up on
#: unacknowledged data after 20 s: a holder cut off frees the lock within ~25 s.
_KEEPALIVES = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "20000",
    "application_name": "tickler-leadership",
}


def lock_key(name: str) -> int:
    """The advisory lock's 64-bit key for the job `name`: the same in every replica."""
    digest = hashlib.blake2b(f"tickler:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Leadership:
    """Who does the job `name` among the replicas sharing the database at `url`.

    `try_acquire` connects if need be and takes the lock if it is free; `held` says
    whether this replica holds it (as far as the connection is known to be open) and
    `confirm` asks the server; `release` lets it go. `on_lost` is called (from the event
    loop) when the connection holding the lock ends; `on_notice` when another replica
    calls `notify`."""

    shared = True

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.key = lock_key(name)
        self.channel = f"tickler_{name}"
        self.on_lost: Callable[[], None] | None = None
        self.on_notice: Callable[[], None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._held = False
        #: One statement at a time on the connection (asyncpg refuses two at once): the
        #: outbox's notices and the lease's attempts come from different tasks.
        self._busy = asyncio.Lock()

    def __repr__(self) -> str:
        return f"Leadership({redact(self.url)!r}, {self.name!r}, held={self.held})"

    @property
    def held(self) -> bool:
        return self._held and self._conn is not None and not self._conn.is_closed()

    async def try_acquire(self) -> bool:
        """True when this replica holds the lock (now, or already); False when another
        does or the server cannot be reached (it is asked again at the next call)."""
        if self.held:
            return True
        try:
            async with self._busy:
                conn = await self._connection()
                async with asyncio.timeout(TIMEOUT_S):
                    taken = await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key)
                self._held = bool(taken)
        except Exception as exc:
            if not is_unavailable(exc) and not isinstance(exc, asyncpg.exceptions.PostgresError):
                raise
            log.debug("cannot ask for the %s lock: %s", self.name, exc)
            self._drop()
            return False
        return self._held

    async def confirm(self) -> bool:
        """Ask the server (one round trip): True while the connection holding the lock is
        alive. A connection that does not answer in time is closed: the lock is then
        the server's to free, and this replica must behave as if it had lost it."""
        if not self.held:
            return False
        conn = self._conn
        assert conn is not None
        try:
            async with self._busy, asyncio.timeout(TIMEOUT_S):
                await conn.fetchval("SELECT 1")
        except Exception as exc:
            if not is_unavailable(exc) and not isinstance(exc, asyncpg.exceptions.PostgresError):
                raise
            log.debug("the %s lock's connection failed: %s", self.name, exc)
            self._drop()
            return False
        return True

    async def notify(self) -> None:
        """Tell the holder (whichever replica it is) that there is work; best effort:
        the holder also looks by itself every few seconds."""
        try:
            async with self._busy:
                conn = await self._connection()
                async with asyncio.timeout(TIMEOUT_S):
                    await conn.execute("SELECT pg_notify($1, '')", self.channel)
        except Exception as exc:
            if not is_unavailable(exc) and not isinstance(exc, asyncpg.exceptions.PostgresError):
                raise
            log.debug("cannot notify the %s holder: %s", self.name, exc)
            self._drop()

    async def release(self) -> None:
        """Let the lock go (closing the connection frees it in any case)."""
        conn, self._conn = self._conn, None
        self._held = False
        if conn is None or conn.is_closed():
            return
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await conn.close()
        except Exception:
            conn.terminate()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._drop()
        conn = await asyncpg.connect(
            self.url, timeout=TIMEOUT_S, statement_cache_size=0, server_settings=_KEEPALIVES
        )
        try:
            await conn.add_listener(self.channel, self._noticed)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._ended)
        self._conn = conn
        return conn

    def _noticed(self, *args: object) -> None:
        if self.on_notice is not None:
            self.on_notice()

    def _ended(self, conn: object) -> None:
        if conn is not self._conn:
            return
        was_held = self._held
        self._held = False
        if was_held and self.on_lost is not None:
            self.on_lost()

    def _drop(self) -> None:
        """Forget the connection (closing it for good if it is still open)."""
        conn, self._conn = self._conn, None
        was_held = self._held
        self._held = False
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                conn.terminate()
        if was_held and self.on_lost is not None:
            self.on_lost()
