"""Which replica does the jobs only one may do at a time (Tickler's: poll Telegram and
send the outbox). On PostgreSQL, several replicas share the database and an advisory
lock decides (storage/postgres/leadership.py); on SQLite there is one process, always
the one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from storage.locations import Location, is_postgres
from storage.postgres.leadership import Leadership

__all__ = ["Lease", "SoleLeadership", "lease_for"]


class Lease(Protocol):
    """The right to do job `name`, held by one replica at a time."""

    #: False when there is nobody to share it with (SQLite): nothing to log or retry.
    shared: bool
    name: str
    #: Called when the lease is lost (its connection ended).
    on_lost: Callable[[], None] | None
    #: Called when another replica `notify`s the holder.
    on_notice: Callable[[], None] | None

    @property
    def held(self) -> bool: ...

    async def try_acquire(self) -> bool: ...

    async def confirm(self) -> bool: ...

    async def notify(self) -> None: ...

    async def release(self) -> None: ...


class SoleLeadership:
    """SQLite's: one process uses the file, so it always holds the lease."""

    shared = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.on_lost: Callable[[], None] | None = None
        self.on_notice: Callable[[], None] | None = None

    @property
    def held(self) -> bool:
        return True

    async def try_acquire(self) -> bool:
        return True

    async def confirm(self) -> bool:
        return True

    async def notify(self) -> None:
        return None

    async def release(self) -> None:
        return None


def lease_for(where: Location, name: str) -> Lease:
    """The lease of job `name` among the processes using the database at `where`."""
    if is_postgres(where):
        return Leadership(str(where), name)
    return SoleLeadership(name)
