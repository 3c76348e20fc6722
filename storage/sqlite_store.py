"""Tickler's SQLite storage: the engine store and every repository over one database
file (`scheduler.stores.Stores`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from storage.connection import SqliteConnection
from storage.engine_store import SqlEngineStore
from storage.repositories import (
    SqlChats,
    SqlOperations,
    SqlOutbox,
    SqlProposals,
    SqlRuns,
    SqlSchedules,
    SqlWorkItems,
)

__all__ = ["SqliteStore"]


class SqliteStore:
    def __init__(self, conn: SqliteConnection) -> None:
        self.connection = conn
        self.engine = SqlEngineStore(conn)
        self.schedules = SqlSchedules(conn)
        self.runs = SqlRuns(conn)
        self.proposals = SqlProposals(conn)
        self.work_items = SqlWorkItems(conn)
        self.outbox = SqlOutbox(conn)
        self.chats = SqlChats(conn)
        self.operations = SqlOperations(conn)

    @classmethod
    async def open(cls, path: str | Path) -> SqliteStore:
        return cls(await SqliteConnection.open(path))

    async def close(self) -> None:
        await self.connection.close()

    async def __aenter__(self) -> SqliteStore:
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
