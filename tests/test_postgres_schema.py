"""PostgreSQL's schema is SQLite's: the same tables, columns, NOT NULLs and indexes at
the same schema version, so that one SQL and one export serve both."""

from __future__ import annotations

import sqlite3

import asyncpg

from storage.database import SCHEMA_VERSION, _migrations, schema_columns
from storage.postgres.schema import migrations
from storage.postgres.store import PostgresStore


async def test_the_newest_migrations_of_both_databases_have_one_number() -> None:
    assert migrations()[-1][0] == SCHEMA_VERSION


async def test_tables_columns_and_indexes_match_sqlite(postgres_url: str) -> None:
    await (await PostgresStore.open(postgres_url)).close()
    raw = await asyncpg.connect(postgres_url)
    try:
        columns = await raw.fetch(
            "SELECT table_name, column_name, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name <> 'tickler_schema'"
        )
        keys = await raw.fetch(
            "SELECT c.relname AS table_name, a.attname AS column_name FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indisprimary"
        )
        indexes = await raw.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
            "AND indexname NOT LIKE '%_pkey' AND indexname NOT LIKE '%_key'"
        )
    finally:
        await raw.close()
    postgres: dict[str, dict[str, bool]] = {}
    for row in columns:
        postgres.setdefault(row["table_name"], {})[row["column_name"]] = row["is_nullable"] == "NO"
    sqlite = {
        table: {column: not_null for column, (_, not_null) in cols.items()}
        for table, cols in schema_columns().items()
        if table != "sqlite_sequence"
    }
    # A primary key is never NULL, though SQLite's declaration does not say so.
    for row in keys:
        if row["table_name"] in sqlite:
            sqlite[row["table_name"]][row["column_name"]] = True
    assert postgres == sqlite
    db = sqlite3.connect(":memory:")
    for _, sql in _migrations():
        db.executescript(sql)
    sqlite_indexes = {
        name
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
    }
    assert {row["indexname"] for row in indexes} == sqlite_indexes
