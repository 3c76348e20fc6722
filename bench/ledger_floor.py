"""How fast could any engine on this ledger go? The claim-only burst with no engine.

    ./dev python -m bench.ledger_floor [--schedules 10000] [--batch 64] [--repeat 3]

The same SQLite file and schema as the engine (seeded as the benchmark seeds it), the
same statements per fire the engine's claim-only burst runs (read the due schedules;
one transaction to move `next_run_at` and insert the runs as running; one to mark them
succeeded (a first attempt's row is read from its run, not written: storage/runs.py
DERIVED_ATTEMPT) and reset the schedules' failure counters), the same
cron arithmetic and ids, in batches of the dispatch concurrency, on the event loop's
thread as the engine runs them. What it leaves out is everything else the engine does
per fire: no pydantic models, no task or log context per run, no group-commit future,
no overlap, hold or approval rules, no notifier.

Two figures per run: `ledger` (the SQL and the row values alone) and `planned` (plus
the trigger's next instant and a new id per fire, as the engine must). `planned` is the
ceiling for the engine's claim-only burst on this machine: an engine in CPython that
writes this ledger in batches of this size cannot be faster. Larger batches raise it
(`--batch`), but the engine starts at most as many runs per claim as it has free
dispatch slots.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from adapters.agent_dispatch import HttpAgentDispatcher
from bench.measure import FireLog, Result
from bench.seed import seed_tickler
from bot.boot import install_core_sources
from scheduler.dispatching import DispatchError, DispatchRequest, Operator
from scheduler.ids import new_id
from scheduler.templates import prompt_variables, render
from storage import runs, schedules
from storage.codec import SCHEDULE_COLUMNS, req_time, to_db_time
from storage.codec import _trigger as trigger_from_json  # the cached JSON decode the engine uses
from storage.database import CONNECTION_PRAGMAS

DUE = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
SYSTEM = "ledger floor (its SQL, no engine)"
#: Fires per claim when posting: the limit loop's batch.
POSTING_BATCH = 500
OWNER = "floor:1"

#: Where the claim needs a due schedule's values, in the row the engine's read returns.
_COLUMNS = [c.strip() for c in SCHEDULE_COLUMNS.split(",")]
_ID, _CHAT, _TRIGGER, _NEXT = (
    _COLUMNS.index(c) for c in ("id", "chat_id", "trigger_json", "next_run_at")
)


def _open(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for pragma in CONNECTION_PRAGMAS:
        conn.execute(pragma)
    return conn


#: A claimed fire: (run id, schedule id, chat id, fire instant as stored).
Fire = tuple[str, str, int, str]


#: Seconds slept past the due instant before the first claim.
_TIMER_SLACK = 0.002


def _claim(conn: sqlite3.Connection, now: str, batch: int, plan: bool) -> list[Fire]:
    """Up to `batch` due fires, their schedules moved on and their runs written running,
    in one transaction (as the engine's claim of fires it starts at once)."""
    # '' as the lower bound: none, as the engine reads fires due now.
    due = [
        (r[_ID], r[_CHAT], r[_TRIGGER], r[_NEXT])
        for r in conn.execute(schedules.DUE_SQL, (now, "", batch)).fetchall()
    ]
    if not due:
        return []
    moves = []
    for sid, _, trigger_json, first in due:
        if plan:
            after = trigger_from_json(trigger_json).next_after(req_time(first))
            moves.append([sid, first, None if after is None else to_db_time(after)])
        else:
            moves.append([sid, first, to_db_time(req_time(first) + timedelta(hours=1))])
    conn.execute("BEGIN IMMEDIATE")
    advance = (now, json.dumps(moves))
    moved = {r[0] for r in conn.execute(schedules.ADVANCE_SQL, advance).fetchall()}
    fires = [
        (new_id() if plan else f"{sid}:{first}", sid, chat, first)
        for sid, chat, _, first in due
        if sid in moved
    ]
    conn.executemany(runs.INSERT_SQL, [_running_row(fire, now) for fire in fires])
    conn.execute("COMMIT")
    return fires


def _running_row(fire: Fire, now: str) -> tuple[object, ...]:
    """The row of a claimed fire's run, in RUN_COLUMNS order."""
    run_id, schedule_id, chat_id, first = fire
    # finished_at, duration_ms, output, error, token_usage_json; skip_reason and the
    # agent's reported result (summary, outputs_url, log_excerpt); a plan's step
    # (plan_run_id, step)
    unset = None
    return (
        run_id, schedule_id, chat_id, first, "schedule", "running", 1, first, now,
        unset, unset, unset, unset, unset, OWNER, now, now, unset, unset, unset, unset,
        unset, unset,
    )  # fmt: skip


def _finish(
    conn: sqlite3.Connection, now: str, fires: list[Fire], output: str | None = None
) -> int:
    """Record the fires' attempts as succeeded (with the agent's answer `output`), in one
    transaction (as the engine's group commit of successes); how many were written."""
    if not fires:
        return 0
    conn.execute("BEGIN IMMEDIATE")
    finished = json.dumps([[f[0], now, 0, output, None] for f in fires])
    # Each written run, with whether its attempt needs a row of its own: a first attempt
    # does not (it is read from the run), so these fires write none, as the engine's.
    written = dict(conn.execute(runs.FINISH_SUCCEEDED_SQL, (finished, OWNER)).fetchall())
    conn.executemany(
        runs.ATTEMPT_SQL,
        [
            (f[0], 1, OWNER, now, now, "succeeded", None)
            for f in fires
            if f[0] in written and written[f[0]] is None
        ],
    )
    conn.execute(schedules.SUCCESSES_SQL, (json.dumps([[f[1], now] for f in fires]),)).fetchall()
    conn.execute("COMMIT")
    return len(written)


def burst(db: Path, n: int, batch: int, plan: bool, at: datetime | None = None) -> float:
    """Claim, 'dispatch' (nothing) and record `n` fires due by `at` (default: just after
    `DUE`), a batch at a time; the seconds it took."""
    conn = _open(db)
    now = to_db_time(at or DUE + timedelta(seconds=1))
    done = 0
    started = time.perf_counter()
    while fires := _claim(conn, now, batch, plan):
        done += _finish(conn, now, fires)
    elapsed = time.perf_counter() - started
    conn.close()
    if done != n:
        raise RuntimeError(f"{done} of {n} fires recorded")
    return elapsed


async def burst_posting(db: Path, url: str, n: int, due: float, concurrency: int) -> Result:
    """The burst scenario on this ledger with Tickler's own dispatcher and no engine:
    claims of `POSTING_BATCH` fires, `concurrency` workers posting them, successes
    recorded in batches as they come (the limit loop's shape, bench/limit_side.py)."""
    conn = _open(db)
    log = FireLog()
    queue: asyncio.Queue[Fire] = asyncio.Queue()
    finished: list[Fire] = []
    operator = Operator(id=1, first_name="Ada")
    failed: list[str] = []
    async with HttpAgentDispatcher(url=url, max_connections=concurrency) as dispatcher:

        async def worker() -> None:
            while True:
                fire = await queue.get()
                instant = req_time(fire[3])
                log.started(instant.timestamp())
                try:
                    await dispatcher.dispatch(
                        DispatchRequest(
                            schedule_id=fire[1],
                            run_id=fire[0],
                            scheduled_for=instant,
                            chat_id=fire[2],
                            operator=operator,
                            schedule_name="bench",
                            prompt=_render_prompt(instant),
                            timezone="UTC",
                        ),
                        timeout=30,
                    )
                    finished.append(fire)
                except DispatchError as exc:
                    # Counted, not retried: the floor has no policies. It shows as dropped.
                    failed.append(str(exc))
                queue.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        # The loop's timers may wake up to a millisecond early: a claim before the due
        # instant would find nothing and read as every fire dropped.
        await asyncio.sleep(max(0.0, due - time.time()) + _TIMER_SLACK)
        claimed = 0
        while claimed < n:
            if queue.qsize() < POSTING_BATCH:
                fires = _claim(conn, to_db_time(datetime.now(UTC)), POSTING_BATCH, plan=True)
                if not fires and queue.empty():
                    # Nothing more is due: fewer fires than expected (dropped).
                    failed.append(f"the claim found nothing due after {claimed} of {n} fires")
                    break
                for fire in fires:
                    queue.put_nowait(fire)
                claimed += len(fires)
            log.done += _finish(conn, to_db_time(datetime.now(UTC)), _take(finished))
            await asyncio.sleep(0.001)
        await queue.join()
        log.done += _finish(conn, to_db_time(datetime.now(UTC)), _take(finished))
        log.last_done = time.time()
        for w in workers:
            w.cancel()
    conn.close()
    result = Result(SYSTEM, "burst", n)
    result.from_log(log, due)
    if failed:
        result.notes.append(f"{len(failed)} posts or claims failed, e.g. {failed[0]}")
    return result


def _take(fires: list[Fire]) -> list[Fire]:
    taken = fires[:]
    fires.clear()
    return taken


@lru_cache(maxsize=1024)
def _render_prompt(instant: datetime) -> str:
    """The seeded schedules' prompt for an instant; cached per instant, as the engine
    caches it."""
    variables = prompt_variables(fire=instant, timezone="UTC", schedule_name="", last_output=None)
    return render("Prepare the brief for {date}.", variables)


def claim_only(db: Path, n: int, due: float, batch: int) -> Result:
    """The harness's claim-only scenario (bench/child.py): from the due instant to the
    last fire recorded, as Tickler's side counts it."""
    wait = due - time.time()
    if wait > 0:
        time.sleep(wait)
    burst(db, n, batch, plan=True, at=datetime.now(UTC))
    seconds = time.time() - due
    result = Result(SYSTEM, "claim-only", n, fires=n, seconds=seconds, rate=n / seconds)
    result.extra["batch"] = batch
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    install_core_sources()
    workdir = Path(tempfile.mkdtemp(prefix="tickler-floor-"))
    try:
        template = workdir / "seed.db"
        seed_tickler(template, args.schedules, DUE)
        rates: dict[str, list[float]] = {"ledger": [], "planned": []}
        for _ in range(args.repeat):
            for label, plan in (("ledger", False), ("planned", True)):
                db = workdir / f"{label}.db"
                shutil.copyfile(template, db)
                rates[label].append(args.schedules / burst(db, args.schedules, args.batch, plan))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"claim-only floor, {args.schedules:,} fires in batches of {args.batch}")
    for label, values in rates.items():
        best = statistics.median(values)
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{label:8} median {best:8,.0f} fires/s ({1e6 / best:5.1f} us per fire)  [{runs}]")


if __name__ == "__main__":
    main()
