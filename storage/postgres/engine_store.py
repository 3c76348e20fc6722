"""The engine store on PostgreSQL: the same rules and SQL as on SQLite
(storage/engine_store.py), with claims that several replicas make at once: each locks
the due schedules and ready runs it reads (`FOR UPDATE SKIP LOCKED`) and the others skip
them, instead of SQLite's one write lock."""

from __future__ import annotations

from storage.engine_store import SqlEngineStore

__all__ = ["PgEngineStore"]


class PgEngineStore(SqlEngineStore):
    locks_rows = True
