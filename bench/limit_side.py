"""The machine's limit: the least a durable scheduler must do, and nothing more.

One SQLite table of fires. The loop claims due rows 500 at a time (one UPDATE ...
RETURNING in one transaction), hands them to `concurrency` workers that POST with the
fastest client the probe found, and marks finished rows done in batches. No policies,
no retries, no ledger of attempts: what is left is SQLite and HTTP.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from bench.clients import ClientKind, make_poster
from bench.measure import FireLog, Result

__all__ = ["burst"]

BATCH = 500


async def burst(
    db: Path, url: str | None, client: ClientKind, n: int, due: float, concurrency: int
) -> Result:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    poster = make_poster(client, url, concurrency) if url else None
    log = FireLog()
    queue: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    finished: list[int] = []

    async def worker() -> None:
        while True:
            fire_id, fire_due = await queue.get()
            log.started(fire_due)
            if poster is not None:
                await poster.post(f"fire{fire_id}:{fire_due}", fire_id)
            finished.append(fire_id)
            log.done += 1
            queue.task_done()

    def flush() -> None:
        if not finished:
            return
        batch = [(i,) for i in finished]
        finished.clear()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("UPDATE fires SET state = 2 WHERE id = ?", batch)
        conn.execute("COMMIT")

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(max(0.0, due - time.time()))
    claimed = 0
    while claimed < n:
        if queue.qsize() < BATCH:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(
                "UPDATE fires SET state = 1 WHERE id IN (SELECT id FROM fires "
                "WHERE state = 0 AND due <= ? ORDER BY due LIMIT ?) RETURNING id, due",
                (time.time(), BATCH),
            ).fetchall()
            conn.execute("COMMIT")
            for row in rows:
                queue.put_nowait((row[0], row[1]))
            claimed += len(rows)
        flush()
        await asyncio.sleep(0.001)
    await queue.join()
    flush()
    log.last_done = time.time()
    for w in workers:
        w.cancel()
    if poster is not None:
        await poster.aclose()
    conn.close()
    name = f"limit loop ({client})" if url else "limit loop (no dispatch)"
    result = Result(name, "burst" if url else "claim-only", n)
    result.from_log(log, due)
    return result
