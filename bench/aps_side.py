"""APScheduler 3 under measurement, in a child process (see bench/child.py).

`AsyncIOScheduler` with a `SQLAlchemyJobStore` on a SQLite file: what a
python-telegram-bot user reaches for to make jobs persistent. Each job calls `fire`,
which notes its start and makes the same POST as Tickler's dispatcher (or nothing,
for claim-only). Missed jobs (its misfire grace) are counted through its event API.

With `limit` (the slow-agent and fairness scenarios), at most that many POSTs are in
flight at once, as Tickler's `max_concurrency` bounds its dispatches: APScheduler's
AsyncIOExecutor has no worker limit of its own (it starts every due coroutine job as a
task), so the limit is a semaphore in the job, and the job's lag is taken when its POST
starts, as Tickler's is. `watch` is a job whose own lag is reported (chat B's, for
fairness), with its place among the POSTs.
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
    limit: asyncio.Semaphore | None = None
    watch: int | None = None
    watched_lag: float | None = None
    watched_position: int | None = None

    @classmethod
    def check(cls) -> None:
        if cls.done is not None and cls.log.done + cls.missed >= cls.target:
            cls.done.set()


async def fire(number: int) -> None:
    if _State.limit is None:
        await _post(number)
    else:
        async with _State.limit:
            await _post(number)
    _State.log.finished()
    _State.check()


async def _post(number: int) -> None:
    _State.log.started(_State.due)
    if number == _State.watch:
        _State.watched_lag = _State.log.lags[-1]
        _State.watched_position = len(_State.log.lags)
    if _State.poster is not None:
        await _State.poster.post(f"job{number:07d}:{_State.due}", number)


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
    *,
    limit: int | None = None,
    watch: int | None = None,
) -> Result:
    _State.due, _State.target, _State.done = due, n, asyncio.Event()
    _State.limit = asyncio.Semaphore(limit) if limit else None
    _State.watch = watch
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
    if watch is not None:
        result.extra.update(
            watched_lag=_State.watched_lag, watched_position=_State.watched_position
        )
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
