"""APScheduler 3 under measurement, in a child process (see bench/child.py).

`AsyncIOScheduler` with a `SQLAlchemyJobStore` on a SQLite file: what a
python-telegram-bot user reaches for to make jobs persistent. Each job calls `fire`,
which notes its start and makes the same POST as Tickler's dispatcher (or nothing,
for claim-only). Missed jobs (its misfire grace) are counted through its event API.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC
from pathlib import Path

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bench.clients import ClientKind, Poster, make_poster
from bench.measure import FireLog, Result, cpu_seconds

__all__ = ["FUNC", "burst", "fire", "idle"]

#: The job function as the job store references it.
FUNC = "bench.aps_side:fire"


class _State:
    log = FireLog()
    poster: Poster | None = None
    due = 0.0
    target = 0
    missed = 0
    done: asyncio.Event | None = None

    @classmethod
    def check(cls) -> None:
        if cls.done is not None and cls.log.done + cls.missed >= cls.target:
            cls.done.set()


async def fire(number: int) -> None:
    _State.log.started(_State.due)
    if _State.poster is not None:
        await _State.poster.post(f"job{number:07d}:{_State.due}", number)
    _State.log.finished()
    _State.check()


def _on_missed(_: JobExecutionEvent) -> None:
    _State.missed += 1
    _State.check()


def _scheduler(db: Path) -> AsyncIOScheduler:
    # Quiet: one warning line per missed job would slow it down for nothing here.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    return AsyncIOScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{db}")}, timezone=UTC
    )


async def burst(
    db: Path,
    url: str | None,
    client: ClientKind,
    n: int,
    due: float,
    concurrency: int,
    grace: float | None,
    timeout: float,
) -> Result:
    _State.due, _State.target, _State.done = due, n, asyncio.Event()
    _State.poster = make_poster(client, url, concurrency) if url else None
    scheduler = _scheduler(db)
    scheduler.add_listener(_on_missed, EVENT_JOB_MISSED)
    scheduler.start()
    try:
        await asyncio.wait_for(_State.done.wait(), timeout)
        finished = True
    except TimeoutError:
        finished = False
    scheduler.shutdown(wait=False)
    if _State.poster is not None:
        await _State.poster.aclose()
    label = "default grace (1 s)" if grace == 1 else f"grace {grace:g} s" if grace else "no grace"
    result = Result(f"apscheduler, {label}", "burst" if url else "claim-only", n)
    result.from_log(_State.log, due)
    result.extra["missed_by_grace"] = _State.missed
    if _State.missed:
        result.notes.append(f"{_State.missed} jobs dropped as missed (misfire_grace_time)")
    if not finished:
        result.notes.append(f"timed out after {timeout:g} s")
    return result


async def idle(db: Path, n: int, seconds: float) -> Result:
    scheduler = _scheduler(db)
    scheduler.start()
    await asyncio.sleep(0.2)
    cpu = cpu_seconds()
    await asyncio.sleep(seconds)
    used = cpu_seconds() - cpu
    scheduler.shutdown(wait=False)
    result = Result("apscheduler", "idle", n, seconds=seconds, cpu_s=used)
    result.extra["cpu_percent_of_one_core"] = 100 * used / seconds
    return result
