"""Tickler's SQLite storage: the engine store and every repository over one database
file (`scheduler.stores.Stores`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from storage.connection import SqliteConnection
from storage.engine_store import SqliteEngineStore
from storage.repositories import (
    SqliteChats,
    SqliteOperations,
    SqliteOutbox,
    SqliteProposals,
    SqliteRuns,
    SqliteSchedules,
    SqliteWorkItems,
)

__all__ = ["SqliteStore"]


class SqliteStore:
    def __init__(self, conn: SqliteConnection) -> None:
        self.connection = conn
        self.engine = SqliteEngineStore(conn)
        self.schedules = SqliteSchedules(conn)
        self.runs = SqliteRuns(conn)
        self.proposals = SqliteProposals(conn)
        self.work_items = SqliteWorkItems(conn)
        self.outbox = SqliteOutbox(conn)
        self.chats = SqliteChats(conn)
        self.operations = SqliteOperations(conn)

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
