"""One-trip transactions (storage/one_trip.py): the engine's hot writes run BEGIN to
COMMIT in one step, on the event loop's thread when the write lock is free and on the
database thread otherwise, and still commit all or nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from storage.one_trip import LoopWriter, transact
from storage.sql import fetch_all


async def _open(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(str(path), isolation_level=None)
    await db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    return db


async def _rows(db: aiosqlite.Connection) -> list[tuple[str, int]]:
    return [tuple(r) for r in await fetch_all(db, "SELECT k, v FROM t ORDER BY k")]


async def test_a_body_commits_as_a_whole_and_returns_its_result(tmp_path: Path) -> None:
    db = await _open(tmp_path / "t.db")

    async def body(conn: aiosqlite.Connection) -> int:
        await conn.executemany("INSERT INTO t VALUES (?, ?)", [("a", 1), ("b", 2)])
        cur = await conn.execute("UPDATE t SET v = v + 10 WHERE k = 'a'")
        [(total,)] = await conn.execute_fetchall("SELECT SUM(v) FROM t")
        return int(cur.rowcount * 1000 + total)

    assert await transact(db, body) == 1013
    # Another connection sees the commit: nothing was left open.
    async with aiosqlite.connect(str(tmp_path / "t.db")) as other:
        assert [tuple(r) for r in await other.execute_fetchall("SELECT k, v FROM t")] == [
            ("a", 11),
            ("b", 2),
        ]
    assert not db.in_transaction
    await db.close()


async def test_a_failing_body_leaves_nothing_behind(tmp_path: Path) -> None:
    db = await _open(tmp_path / "t.db")

    async def body(conn: aiosqlite.Connection) -> None:
        await conn.execute("INSERT INTO t VALUES ('a', 1)")
        await conn.execute("INSERT INTO t VALUES ('a', 2)")  # primary key clash

    with pytest.raises(Exception, match="UNIQUE"):
        await transact(db, body)
    assert await _rows(db) == []
    assert not db.in_transaction
    await db.close()


async def test_a_body_that_waits_for_something_else_is_refused_and_rolled_back(
    tmp_path: Path,
) -> None:
    db = await _open(tmp_path / "t.db")

    async def body(conn: aiosqlite.Connection) -> None:
        await conn.execute("INSERT INTO t VALUES ('a', 1)")
        await asyncio.sleep(0)  # not a statement: would block the database thread

    with pytest.raises(RuntimeError, match="waited for something other than a statement"):
        await transact(db, body)
    assert await _rows(db) == []
    await db.close()


async def test_a_cancelled_caller_still_gets_the_transaction_closed(tmp_path: Path) -> None:
    db = await _open(tmp_path / "t.db")
    # Another connection holds the write lock, so the transaction waits in BEGIN on the
    # database thread while its caller is cancelled.
    other = await aiosqlite.connect(str(tmp_path / "t.db"), isolation_level=None)
    await other.execute("BEGIN IMMEDIATE")

    async def body(conn: aiosqlite.Connection) -> None:
        await conn.execute("INSERT INTO t VALUES ('a', 1)")

    waiting = asyncio.create_task(transact(db, body))
    await asyncio.sleep(0.1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await other.execute("COMMIT")
    await other.close()
    # The transaction ran to its end on the database thread once the lock was free:
    # committed as a whole, not left open for the next statement to land in.
    assert await _rows(db) == [("a", 1)]
    assert not db.in_transaction
    await db.close()


# --- LoopWriter: in place on the event loop's thread while the write lock is free ------


def _body_noting_thread(
    seen: list[int],
) -> Callable[[aiosqlite.Connection], Coroutine[Any, Any, None]]:
    async def body(conn: aiosqlite.Connection) -> None:
        seen.append(threading.get_ident())
        await conn.execute("INSERT INTO t VALUES ('a', 1)")

    return body


async def test_a_loop_writer_commits_in_place_on_the_loop_thread(tmp_path: Path) -> None:
    db = await _open(tmp_path / "t.db")
    writer = LoopWriter(tmp_path / "t.db")
    seen: list[int] = []
    await transact(db, _body_noting_thread(seen), writer)
    assert seen == [threading.get_ident()]
    # Committed through the writer's own connection: aiosqlite's sees it.
    assert await _rows(db) == [("a", 1)]
    assert writer.total_changes == 1 and db.total_changes == 0
    writer.close()
    await db.close()


async def test_a_taken_write_lock_sends_the_transaction_to_the_database_thread(
    tmp_path: Path,
) -> None:
    db = await _open(tmp_path / "t.db")
    writer = LoopWriter(tmp_path / "t.db")
    other = await aiosqlite.connect(str(tmp_path / "t.db"), isolation_level=None)
    await other.execute("BEGIN IMMEDIATE")
    seen: list[int] = []
    waiting = asyncio.create_task(transact(db, _body_noting_thread(seen), writer))
    # The event loop is not held while the transaction waits for the lock elsewhere.
    for _ in range(5):
        await asyncio.sleep(0.02)
    assert not waiting.done()
    await other.execute("COMMIT")
    await other.close()
    await waiting
    assert seen and seen[0] != threading.get_ident()
    assert await _rows(db) == [("a", 1)]
    # The writer was left with no transaction open and works again at once.
    seen.clear()

    async def second(conn: aiosqlite.Connection) -> None:
        seen.append(threading.get_ident())
        await conn.execute("INSERT INTO t VALUES ('b', 2)")

    await transact(db, second, writer)
    assert seen == [threading.get_ident()]
    assert await _rows(db) == [("a", 1), ("b", 2)]
    writer.close()
    await db.close()


async def test_a_failing_body_on_the_loop_writer_leaves_nothing_behind(tmp_path: Path) -> None:
    db = await _open(tmp_path / "t.db")
    writer = LoopWriter(tmp_path / "t.db")

    async def body(conn: aiosqlite.Connection) -> None:
        await conn.execute("INSERT INTO t VALUES ('a', 1)")
        await conn.execute("INSERT INTO t VALUES ('a', 2)")  # primary key clash

    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        await transact(db, body, writer)
    assert await _rows(db) == []
    # Not left holding the write lock: aiosqlite's connection can write.
    await db.execute("INSERT INTO t VALUES ('z', 9)")
    assert await _rows(db) == [("z", 9)]
    writer.close()
    await db.close()
