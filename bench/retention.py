"""Does the database file stop growing under a steady load once retention prunes?

    ./dev python -m bench.retention [--schedules 1000] [--every 60] [--days 180]
        [--retention 90] [--output 300] [--auto-vacuum] [--json out.json]

Simulated days, not real ones: each day, every schedule fires every `--every` minutes,
and each fire is written with the engine's own statements (bench/ledger_floor.py: read
the due schedules, move them on and write the runs running in one transaction; mark
them succeeded with an answer of `--output` characters (their first attempts read from
the runs: no attempt rows) and reset the failure counters in another), in bulk. At
each day's end the real pruning pass runs (`OperationsRepository.prune_history` with
bot/retention.py's constants, as the daily sweep calls it), the WAL is checkpointed into
the file, and the file's size is recorded.

`--auto-vacuum` creates the file with `auto_vacuum = INCREMENTAL` and runs
`PRAGMA incremental_vacuum` after each pass (the file gives its free pages back to the
file system); without it, SQLite keeps them on its free list for the next day's rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.ledger_floor import _claim, _finish, _open
from bench.seed import seed_tickler
from bot.retention import KEEP_RUNS_PER_SCHEDULE, PRUNE_BATCH
from storage.codec import to_db_time
from storage.sqlite_store import SqliteStore

START = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


@dataclass
class Day:
    day: int
    fires: int
    runs: int
    pruned: int
    prune_seconds: float
    file_mb: float
    free_pages: int
    pages: int


def _fire_day(
    conn: sqlite3.Connection,
    first: datetime,
    end: datetime,
    every: timedelta,
    batch: int,
    output: str,
) -> tuple[int, datetime]:
    """Every fire instant from `first` up to `end`, claimed and finished as the engine
    does; the fires written and the next instant."""
    fires = 0
    at = first
    while at < end:
        now = to_db_time(at + timedelta(seconds=1))
        while claimed := _claim(conn, now, batch, plan=True):
            fires += _finish(conn, now, claimed, output)
        at += every
    return fires, at


def _size(conn: sqlite3.Connection, db: Path) -> tuple[float, int, int]:
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    return db.stat().st_size / 1e6, free, pages


def prepare(db: Path, schedules: int, every: timedelta, auto_vacuum: bool) -> None:
    """The schema and `schedules` schedules firing every `every` from START."""
    if auto_vacuum:
        with sqlite3.connect(db) as fresh:
            # Only an empty file takes it; the schema is created after.
            fresh.execute("PRAGMA auto_vacuum = INCREMENTAL")
            fresh.execute("VACUUM")
    seed_tickler(db, schedules, START, every=every)


async def simulate(
    db: Path,
    *,
    schedules: int,
    every: timedelta,
    days: int,
    retention: timedelta | None,
    output: str,
    auto_vacuum: bool,
    report: bool = True,
) -> list[Day]:
    """`days` simulated days on a `prepare`d file; one row per day."""
    conn = _open(db)
    store = await SqliteStore.open(db)
    out: list[Day] = []
    runs = 0
    at = START
    try:
        for day in range(1, days + 1):
            end = START + day * DAY
            fires, at = _fire_day(conn, at, end, every, schedules, output)
            runs += fires
            started = time.perf_counter()
            pruned = 0
            if retention is not None:
                result = await store.operations.prune_history(
                    end - retention, keep=KEEP_RUNS_PER_SCHEDULE, batch=PRUNE_BATCH
                )
                pruned = result.runs
                runs -= pruned
                if auto_vacuum:
                    # Through executescript, which steps the statement to its end: execute
                    # takes one step, which frees one page.
                    conn.executescript("PRAGMA incremental_vacuum;")
            seconds = time.perf_counter() - started
            row = Day(day, fires, runs, pruned, round(seconds, 2), *_size(conn, db))
            row.file_mb = round(row.file_mb, 1)
            out.append(row)
            if report:
                print(
                    f"day {day:3}: {fires:7,} fires, {runs:10,} runs kept, {pruned:7,} pruned "
                    f"in {seconds:5.1f} s, file {row.file_mb:8.1f} MB, "
                    f"{row.free_pages:7,} of {row.pages:9,} pages free",
                    flush=True,
                )
    finally:
        await store.close()
        conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--every", type=int, default=60, help="minutes between fires")
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--retention", type=int, default=90, help="days; 0: no pruning")
    parser.add_argument("--output", type=int, default=300, help="characters of each answer")
    parser.add_argument("--auto-vacuum", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="a directory to keep the database in")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tickler-retention-", dir=args.keep))
    started = time.perf_counter()
    every = timedelta(minutes=args.every)
    try:
        prepare(workdir / "tickler.db", args.schedules, every, args.auto_vacuum)
        days = asyncio.run(
            simulate(
                workdir / "tickler.db",
                schedules=args.schedules,
                every=every,
                days=args.days,
                retention=timedelta(days=args.retention) if args.retention else None,
                output="x" * args.output,
                auto_vacuum=args.auto_vacuum,
            )
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{time.perf_counter() - started:.0f} s in all")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"json": str(args.json), "keep": None},
                    "days": [asdict(d) for d in days],
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
