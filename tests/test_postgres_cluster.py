"""The PostgreSQL fixtures hand each test a real, empty database of its own
(tests/postgres.py, tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

pytestmark = pytest.mark.postgres


async def test_a_database_takes_a_table_and_gives_its_rows_back(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'") == []
        await conn.execute("CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL)")
        await conn.execute("INSERT INTO notes VALUES ($1, $2)", 1, "Grüße ✓")
        row = await conn.fetchrow("SELECT id, body FROM notes")
        assert row is not None and (row["id"], row["body"]) == (1, "Grüße ✓")
        assert await conn.fetchval("SHOW server_encoding") == "UTF8"
    finally:
        await conn.close()


async def test_two_databases_are_distinct(
    postgres_url: str, make_postgres_url: Callable[[], str]
) -> None:
    other_url = make_postgres_url()
    assert other_url != postgres_url
    first = await asyncpg.connect(postgres_url)
    second = await asyncpg.connect(other_url)
    try:
        await first.execute("CREATE TABLE only_here (x int)")
        assert await first.fetchval("SELECT to_regclass('only_here') IS NOT NULL")
        assert not await second.fetchval("SELECT to_regclass('only_here') IS NOT NULL")
    finally:
        await first.close()
        await second.close()
