"""Tickler's PostgreSQL storage: the engine store and every repository over one
PostgreSQL database (`scheduler.stores.Stores`), shared by any number of replicas."""

from __future__ import annotations

from storage.bundle import SqlStore
from storage.postgres.connection import PgConnection
from storage.postgres.engine_store import PgEngineStore

__all__ = ["PostgresStore"]


class PostgresStore(SqlStore):
    connection: PgConnection

    def __init__(self, conn: PgConnection) -> None:
        super().__init__(conn, PgEngineStore(conn))

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        return cls(await PgConnection.open(url))
