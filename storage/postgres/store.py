"""Tickler's PostgreSQL storage: the engine store and every repository over one
PostgreSQL database (`scheduler.stores.Stores`), shared by any number of replicas."""

from __future__ import annotations

from collections.abc import Callable

from storage.postgres.connection import PgConnection
from storage.postgres.engine_store import PgEngineStore
from storage.repositories import (
    SqlChats,
    SqlOperations,
    SqlOutbox,
    SqlProposals,
    SqlRuns,
    SqlSchedules,
    SqlWorkItems,
)

__all__ = ["PostgresStore"]


class PostgresStore:
    def __init__(self, conn: PgConnection) -> None:
        self.connection = conn
        self.engine = PgEngineStore(conn)
        self.schedules = SqlSchedules(conn)
        self.runs = SqlRuns(conn)
        self.proposals = SqlProposals(conn)
        self.work_items = SqlWorkItems(conn)
        self.outbox = SqlOutbox(conn)
        self.chats = SqlChats(conn)
        self.operations = SqlOperations(conn)

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        return cls(await PgConnection.open(url))

    async def close(self) -> None:
        await self.connection.close()

    async def __aenter__(self) -> PostgresStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def write_failure(self) -> str | None:
        return self.connection.write_failure

    @property
    def on_write_health(self) -> Callable[[str | None], None] | None:
        """Told the failure when writes start failing, and None when they work again."""
        return self.connection.on_write_health

    @on_write_health.setter
    def on_write_health(self, tell: Callable[[str | None], None] | None) -> None:
        self.connection.on_write_health = tell
