"""The engine store on PostgreSQL: the same rules and SQL as on SQLite
(storage/engine_store.py), with claims that several replicas can make at once."""

from __future__ import annotations

from storage.engine_store import SqlEngineStore

__all__ = ["PgEngineStore"]


class PgEngineStore(SqlEngineStore):
    pass
