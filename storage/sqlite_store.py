"""Tickler's SQLite storage: the engine store and every repository over one database
file (`scheduler.stores.Stores`), the embedded default."""

from __future__ import annotations

from pathlib import Path

from storage.bundle import SqlStore
from storage.connection import SqliteConnection
from storage.engine_store import SqlEngineStore

__all__ = ["SqliteStore"]


class SqliteStore(SqlStore):
    connection: SqliteConnection

    def __init__(self, conn: SqliteConnection) -> None:
        super().__init__(conn, SqlEngineStore(conn))

    @classmethod
    async def open(cls, path: str | Path) -> SqliteStore:
        return cls(await SqliteConnection.open(path))
