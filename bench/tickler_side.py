"""Tickler's engine under measurement, in a child process (see bench/child.py).

The engine runs as in production: `run_forever()` on the system clock over a SQLite
file (or a PostgreSQL database, `storage.locations.open_store`), with the real HTTP
dispatcher (or, for claim-only, one that does nothing). A thin wrapper notes when each
dispatch starts; the notifier, which the engine calls after an outcome is committed,
counts the fires that are durably recorded.

A replica (`burst(..., replica=True)`) is one of several engines on one PostgreSQL
database sharing a burst: no one of them knows when the burst is over, so it runs until
the harness closes its standard input (bench/__main__.py watches the ledger), and it
reports its own fires and lags for the harness to add up.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import SystemClock
from adapters.process import host_name, pid_alive, process_id, tune_gc
from bench.measure import FireLog, Result, cpu_seconds
from scheduler.dispatching import Dispatcher, DispatchRequest, DispatchResult
from scheduler.engine import Engine, EngineConfig
from scheduler.engine_store import FinishedAttempt
from scheduler.errors import UnreadableSchedule
from scheduler.planning import FirePlan
from storage.locations import Location, is_postgres, open_store
from storage.sqlite_store import SqliteStore

__all__ = ["burst", "idle", "startup", "steady"]

_ACCEPTED = DispatchResult(status_code=200)


class _TimedDispatcher:
    def __init__(self, inner: Dispatcher | None, log: FireLog) -> None:
        self._inner = inner
        self._log = log
        # As the engine treats the dispatcher it wraps (no dispatcher: returns at once).
        self.limits_own_time = True if inner is None else inner.limits_own_time

    async def dispatch(self, request: DispatchRequest, *, timeout: float) -> DispatchResult:
        self._log.started(request.scheduled_for.timestamp())
        if self._inner is None:
            return _ACCEPTED
        return await self._inner.dispatch(request, timeout=timeout)


class _CountingNotifier:
    def __init__(self, log: FireLog, target: int | None, done: asyncio.Event) -> None:
        self._log = log
        self._target = target
        self._done = done
        self.failed = 0

    async def run_finished(self, finished: FinishedAttempt) -> None:
        if finished.run.status.value != "succeeded":
            self.failed += 1
            return
        self._log.finished()
        if self._target is not None and self._log.done >= self._target:
            self._done.set()

    async def schedule_tripped(self, finished: FinishedAttempt) -> None:
        pass

    async def fires_missed(self, plan: FirePlan) -> None:
        pass

    async def runs_awaiting_approval(self, plan: FirePlan) -> None:
        pass

    async def schedule_quarantined(self, broken: UnreadableSchedule) -> None:
        pass

    async def schedule_over_budget(self, paused: object) -> None:
        pass


async def _run_engine(
    where: Location, url: str | None, concurrency: int, target: int | None, timeout: float
) -> tuple[FireLog, _CountingNotifier, bool]:
    """Run an engine until `target` fires are recorded (or `timeout` seconds pass); with
    no target, until standard input closes (a replica: the harness says when)."""
    log = FireLog()
    done = asyncio.Event()
    notifier = _CountingNotifier(log, target, done)
    store = await open_store(where)
    dispatcher = HttpAgentDispatcher(url=url, max_connections=concurrency) if url else None
    engine = Engine(
        store.engine,
        SystemClock(),
        _TimedDispatcher(dispatcher, log),
        config=EngineConfig(max_concurrency=concurrency),
        notifier=notifier,
        # As bot/runtime.py builds it: replicas tell each other apart by host and pid.
        host=host_name(),
        pid=process_id(),
        is_alive=pid_alive,
    )
    tune_gc()  # as bot/runtime.py does before the loop
    loop = asyncio.create_task(engine.run_forever())
    told: asyncio.Future[str] | None = None
    if target is None:
        told = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        told.add_done_callback(lambda _: done.set())
    try:
        await asyncio.wait_for(done.wait(), timeout)
        finished = True
    except TimeoutError:
        finished = False
    engine.request_stop()
    await loop
    if dispatcher is not None:
        await dispatcher.aclose()
    await store.close()
    return log, notifier, finished


def _succeeded(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(
            conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'succeeded'").fetchone()[0]
        )


async def burst(
    where: Location,
    url: str | None,
    n: int,
    due: float,
    concurrency: int,
    timeout: float,
    *,
    replica: bool = False,
) -> Result:
    """A burst of `n` fires due at `due` on one engine; as a `replica`, this engine's
    share of it (its fires, its dispatch lags in `extra["lags"]`)."""
    log, notifier, finished = await _run_engine(
        where, url, concurrency, None if replica else n, timeout
    )
    result = Result("tickler", "burst" if url else "claim-only", n)
    result.from_log(log, due)
    result.extra["started"] = len(log.lags)  # dispatches begun: a doubled fire shows
    if replica:
        result.dropped = 0  # the harness counts from the ledger what all replicas did
        result.extra.update(lags=log.lags, first_start=log.first_start, last_done=log.last_done)
    elif is_postgres(where):
        result.extra["succeeded_in_db"] = await _succeeded_pg(str(where))
    else:
        result.extra["succeeded_in_db"] = _succeeded(Path(where))
    if notifier.failed:
        result.notes.append(f"{notifier.failed} attempts failed")
    if not finished:
        result.notes.append(f"timed out after {timeout:g} s")
    return result


async def _succeeded_pg(url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        return int(await conn.fetchval("SELECT COUNT(*) FROM runs WHERE status = 'succeeded'"))
    finally:
        await conn.close()


async def steady(
    db: Path, url: str, n: int, expected: int, first_due: float, concurrency: int, timeout: float
) -> Result:
    log, _, finished = await _run_engine(db, url, concurrency, expected, timeout)
    result = Result("tickler", "steady", n)
    result.from_log(log, first_due)
    result.dropped = expected - log.done
    with sqlite3.connect(db) as conn:
        per_fire = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT schedule_id || scheduled_for), "
            "SUM(status = 'succeeded') FROM runs"
        ).fetchone()
    result.extra.update(
        expected=expected, runs=per_fire[0], distinct_fires=per_fire[1], succeeded=per_fire[2]
    )
    if not finished:
        result.notes.append(f"timed out after {timeout:g} s")
    return result


async def idle(db: Path, n: int, seconds: float) -> Result:
    store = await SqliteStore.open(db)
    engine = Engine(store.engine, SystemClock(), _TimedDispatcher(None, FireLog()))
    tune_gc()
    loop = asyncio.create_task(engine.run_forever())
    while engine.ticks < 1:  # noqa: ASYNC110 - the engine offers no event for its first tick
        await asyncio.sleep(0.01)
    cpu = cpu_seconds()
    ticks = engine.ticks
    await asyncio.sleep(seconds)
    used = cpu_seconds() - cpu
    result = Result("tickler", "idle", n, seconds=seconds, cpu_s=used)
    result.extra["cpu_percent_of_one_core"] = 100 * used / seconds
    result.extra["loop_iterations"] = engine.ticks - ticks
    engine.request_stop()
    await loop
    await store.close()
    return result


async def startup(
    db: Path, url: str, n: int, missed: int, process_start: float, concurrency: int
) -> Result:
    log, _, finished = await _run_engine(db, url, concurrency, missed, 120.0)
    result = Result("tickler", "startup", n, fires=log.done, dropped=missed - log.done)
    if log.first_start is not None:
        result.extra["first_fire_s"] = log.first_start - process_start
    if log.last_done is not None:
        result.extra["all_missed_recorded_s"] = log.last_done - process_start
    result.seconds = result.extra.get("first_fire_s")
    result.extra["missed"] = missed
    if not finished:
        result.notes.append("timed out after 120 s")
    return result


def wait_until(epoch: float) -> float:
    """Seconds until `epoch` (for logs); the engine itself sleeps until its instant."""
    return epoch - time.time()
