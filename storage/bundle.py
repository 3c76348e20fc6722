"""The engine store and every repository over one database, opened and closed together
(`scheduler.stores.Stores`): `SqliteStore` on a file, `PostgresStore` on a server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

from storage.bundles import SqlBundles
from storage.chat_agents import SqlChatAgents
from storage.engine_store import SqlEngineStore
from storage.repositories import (
    SqlChats,
    SqlEvents,
    SqlOperations,
    SqlOutbox,
    SqlProposals,
    SqlRuns,
    SqlSchedules,
    SqlWorkItems,
)
from storage.sinks import SqlSinks
from storage.sql import Connection

__all__ = ["SqlStore"]


class SqlStore:
    connection: Connection

    def __init__(self, conn: Connection, engine: SqlEngineStore) -> None:
        self.engine = engine
        self.schedules = SqlSchedules(conn)
        self.runs = SqlRuns(conn)
        self.events = SqlEvents(conn)
        self.proposals = SqlProposals(conn)
        self.work_items = SqlWorkItems(conn)
        self.bundles = SqlBundles(conn)
        self.outbox = SqlOutbox(conn)
        self.chats = SqlChats(conn)
        self.agents = SqlChatAgents(conn)
        self.operations = SqlOperations(conn)
        self.sinks = SqlSinks(conn)
        self.connection = conn

    async def close(self) -> None:
        await self.connection.close()

    async def __aenter__(self) -> Self:
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
