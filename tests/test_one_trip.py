"""One-trip transactions (storage/one_trip.py): the engine's hot writes run BEGIN to
COMMIT in one step, on the event loop's thread when the write lock is free and on a
writer thread of their own otherwise, and still commit all or nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from storage.connection import SqliteConnection
from storage.one_trip import LoopWriter, ThreadWriter, transact
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

    thread = ThreadWriter(tmp_path / "t.db")
    assert await thread.run(body) == 1013
    # Another connection sees the commit: nothing was left open.
    async with aiosqlite.connect(str(tmp_path / "t.db")) as other:
        assert [tuple(r) for r in await other.execute_fetchall("SELECT k, v FROM t")] == [
            ("a", 11),
            ("b", 2),
        ]
    assert thread.total_changes == 3
    thread.close()
    thread.close()  # a store closed twice (a test's own close, then its fixture's)
    await db.close()


async def test_a_failing_body_leaves_nothing_behind(tmp_path: Path) -> None:
    db = await _open(tmp_path / "t.db")

    async def body(conn: aiosqlite.Connection) -> None:
        await conn.execute("INSERT INTO t VALUES ('a', 1)")
        await conn.execute("INSERT INTO t VALUES ('a', 2)")  # primary key clash

    thread = ThreadWriter(tmp_path / "t.db")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        await thread.run(body)
    assert await _rows(db) == []
    # Not left holding the write lock: another connection can write.
    await db.execute("INSERT INTO t VALUES ('z', 9)")
    thread.close()
    await db.close()


async def test_a_body_that_waits_for_something_else_is_refused_and_rolled_back(
    tmp_path: Path,
) -> None:
    db = await _open(tmp_path / "t.db")

    async def body(conn: aiosqlite.Connection) -> None:
        await conn.execute("INSERT INTO t VALUES ('a', 1)")
        await asyncio.sleep(0)  # not a statement: would block the database thread

    writer, thread = LoopWriter(tmp_path / "t.db"), ThreadWriter(tmp_path / "t.db")
    refused = "waited for something other than a statement"
    with pytest.raises(RuntimeError, match=refused):
        writer.run(body)
    with pytest.raises(RuntimeError, match=refused):
        await thread.run(body)
    assert await _rows(db) == []
    writer.close()
    thread.close()
    await db.close()


async def test_a_cancelled_caller_still_gets_the_transaction_closed(tmp_path: Path) -> None:
    db = await _open(tmp_path / "t.db")
    # Another connection holds the write lock, so the transaction waits in BEGIN on the
    # database thread while its caller is cancelled.
    other = await aiosqlite.connect(str(tmp_path / "t.db"), isolation_level=None)
    await other.execute("BEGIN IMMEDIATE")

    async def body(conn: aiosqlite.Connection) -> None:
        await conn.execute("INSERT INTO t VALUES ('a', 1)")

    thread = ThreadWriter(tmp_path / "t.db")
    waiting = asyncio.create_task(thread.run(body))
    await asyncio.sleep(0.1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await other.execute("COMMIT")
    await other.close()
    # The transaction ran to its end on the writer thread once the lock was free:
    # committed as a whole, not left open for the next statement to land in.
    thread.close()
    assert await _rows(db) == [("a", 1)]
    await db.execute("INSERT INTO t VALUES ('b', 2)")
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
    thread = ThreadWriter(tmp_path / "t.db")
    seen: list[int] = []
    await transact(_body_noting_thread(seen), writer, thread)
    assert seen == [threading.get_ident()]
    # Committed through the writer's own connection: aiosqlite's sees it.
    assert await _rows(db) == [("a", 1)]
    assert writer.total_changes == 1 and thread.total_changes == 0
    writer.close()
    thread.close()
    await db.close()


async def test_a_taken_write_lock_sends_the_transaction_to_the_writer_thread(
    tmp_path: Path,
) -> None:
    db = await _open(tmp_path / "t.db")
    writer = LoopWriter(tmp_path / "t.db")
    thread = ThreadWriter(tmp_path / "t.db")
    other = await aiosqlite.connect(str(tmp_path / "t.db"), isolation_level=None)
    await other.execute("BEGIN IMMEDIATE")
    seen: list[int] = []
    waiting = asyncio.create_task(transact(_body_noting_thread(seen), writer, thread))
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

    await transact(second, writer, thread)
    assert seen == [threading.get_ident()]
    assert await _rows(db) == [("a", 1), ("b", 2)]
    writer.close()
    thread.close()
    await db.close()


async def test_a_failing_body_on_the_loop_writer_leaves_nothing_behind(tmp_path: Path) -> None:
    db = await _open(tmp_path / "t.db")
    writer = LoopWriter(tmp_path / "t.db")

    async def body(conn: aiosqlite.Connection) -> None:
        await conn.execute("INSERT INTO t VALUES ('a', 1)")
        await conn.execute("INSERT INTO t VALUES ('a', 2)")  # primary key clash

    thread = ThreadWriter(tmp_path / "t.db")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        await transact(body, writer, thread)
    assert await _rows(db) == []
    # Not left holding the write lock: aiosqlite's connection can write.
    await db.execute("INSERT INTO t VALUES ('z', 9)")
    assert await _rows(db) == [("z", 9)]
    writer.close()
    thread.close()
    await db.close()


async def test_the_wal_starts_over_while_the_store_keeps_writing(tmp_path: Path) -> None:
    """The loop writer never checkpoints; the store has the writer thread move the WAL's
    pages into the file every LoopWriter.CHECKPOINT_EVERY commits, mostly beside the
    writes. The WAL starts over only once a checkpoint has caught up with it, so one
    that ran only beside a stream of commits would let it grow for as long as the
    stream lasts (a burst's claims): it starts over, and stays small, instead."""
    path = tmp_path / "t.db"
    wal = path.with_name("t.db-wal")
    conn = await SqliteConnection.open(path)
    async with conn.write() as db:
        await db.execute("CREATE TABLE blobs (k INTEGER PRIMARY KEY, v BLOB)")
    commits = LoopWriter.CHECKPOINT_EVERY * 16
    #: The WAL header's salts, new each time the WAL starts over.
    salts = set()
    for k in range(commits):

        async def insert(db: aiosqlite.Connection, k: int = k) -> None:
            await db.execute("INSERT INTO blobs VALUES (?, ?)", (k, b"x" * 12000))

        await conn.transact(insert)
        await asyncio.sleep(0)  # a turn of the loop, never a pause: the writes go on
        with wal.open("rb") as header:
            salts.add(header.read(24)[16:])
    assert len(salts) >= 4, salts
    # Each commit appends four pages or more: unchecked, the WAL would hold them all.
    assert wal.stat().st_size < commits * 4 * 4096 * 3 / 4
    async with conn.read() as db:
        assert (await fetch_all(db, "SELECT COUNT(*) FROM blobs"))[0][0] == commits
    await conn.close()
