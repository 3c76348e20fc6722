"""Fill the three systems' databases before a child process measures them.

Seeding happens in the harness process, outside every measurement: the schedules are
written with bulk SQL (COPY on PostgreSQL), not through each system's add-a-schedule
call, so 100,000 of them take seconds. Each system gets the same schedules: fire at
`due`, then hourly.
"""

from __future__ import annotations

import asyncio
import pickle
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scheduler.models import Action, Owner, Schedule
from scheduler.triggers import CronTrigger, IntervalTrigger, Trigger
from storage.codec import SCHEDULE_COLUMNS, schedule_params
from storage.database import open_database

__all__ = [
    "seed_aps",
    "seed_limit",
    "seed_tickler",
    "seed_tickler_bulk",
    "seed_tickler_postgres",
    "tickler_rows",
]

_COLUMNS = [c.strip() for c in SCHEDULE_COLUMNS.split(",")]
HOUR = timedelta(hours=1)


def seed_tickler(
    path: Path,
    n: int,
    due: datetime,
    *,
    cron: str | None = None,
    spread: float = 0.0,
    missed: int = 0,
    missed_at: datetime | None = None,
    every: timedelta = HOUR,
) -> None:
    """N schedules due at `due` (every `every` after it, or on `cron` whose next instant
    is `due`); with `spread`, schedule i fires `spread * i / n` seconds after `due`; the
    first `missed` schedules instead were due at `missed_at` (an outage)."""
    asyncio.run(_migrate(path))
    rows = tickler_rows(
        n, due, cron=cron, spread=spread, missed=missed, missed_at=missed_at, every=every
    )
    with sqlite3.connect(path) as db:
        db.executemany(
            f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES ({','.join('?' * len(_COLUMNS))})",
            rows,
        )


def seed_tickler_bulk(path: Path, n: int, due: datetime, *, chunk: int = 100_000) -> None:
    """`seed_tickler`'s N schedules due at `due` (then hourly), written by SQLite itself
    from one template row (INSERT ... SELECT over a counter): a million take seconds,
    where building a million rows in Python takes a minute and a gigabyte."""
    asyncio.run(_migrate(path))
    [template] = tickler_rows(1, due)
    values = dict(zip(_COLUMNS, template, strict=True))
    computed = {
        "id": "printf('sched%07d', i)",
        "name": "'bench ' || i",
        "number": "i + 1",
    }
    select = ", ".join(computed.get(c, f":{c}") for c in _COLUMNS)
    with sqlite3.connect(path) as db:
        for start in range(0, n, chunk):
            db.execute(
                "WITH RECURSIVE counter(i) AS (SELECT :start UNION ALL SELECT i + 1 FROM counter "
                f"WHERE i + 1 < :stop) INSERT INTO schedules ({SCHEDULE_COLUMNS}) "
                f"SELECT {select} FROM counter",
                {**values, "start": start, "stop": min(n, start + chunk)},
            )
        db.execute("ANALYZE")


def tickler_rows(
    n: int,
    due: datetime,
    *,
    cron: str | None = None,
    spread: float = 0.0,
    missed: int = 0,
    missed_at: datetime | None = None,
    every: timedelta = HOUR,
) -> list[tuple[object, ...]]:
    """The rows of `seed_tickler`'s schedules, in SCHEDULE_COLUMNS order (the values the
    stores write, for either database)."""
    created = min(due, missed_at or due) - 2 * HOUR
    cron_trigger = CronTrigger(expr=cron, timezone="UTC") if cron else None
    template = schedule_params(
        Schedule(
            id="template",
            chat_id=1,
            name="bench",
            trigger=cron_trigger
            or IntervalTrigger(every_seconds=int(every.total_seconds()), start_at=due),
            action=Action(text="Prepare the brief for {date}."),
            owner=Owner(id=1, first_name="Ada"),
            next_run_at=due,
            created_at=created,
            updated_at=created,
        )
    )
    rows = []
    for i in range(n):
        first = due + timedelta(seconds=spread * i / n) if spread else due
        if i < missed and missed_at is not None:
            first = missed_at
        row = dict(template, id=f"sched{i:07d}", name=f"bench {i}", number=i + 1)
        if cron_trigger is None and first != due:
            seconds = int(every.total_seconds())
            trigger: Trigger = IntervalTrigger(every_seconds=seconds, start_at=first)
            row["trigger_json"] = trigger.model_dump_json()
        row["next_run_at"] = first.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        rows.append(tuple(row[c] for c in _COLUMNS))
    return rows


def seed_tickler_postgres(url: str, n: int, due: datetime) -> None:
    """`seed_tickler`'s N schedules due at `due` in the PostgreSQL database `url`, after
    migrating it and emptying every Tickler table in it (the bench's database is a
    throwaway one); then ANALYZE, as a database in service has its statistics."""
    asyncio.run(_seed_postgres(url, tickler_rows(n, due)))


async def _seed_postgres(url: str, rows: list[tuple[object, ...]]) -> None:
    import asyncpg

    from storage.postgres.schema import migrate

    conn = await asyncpg.connect(url, timeout=10)
    try:
        await migrate(conn)
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename <> 'tickler_schema'"
        )
        names = ", ".join(f'"{t[0]}"' for t in tables)
        await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        await conn.copy_records_to_table("schedules", records=rows, columns=_COLUMNS)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def _migrate(path: Path) -> None:
    await (await open_database(path)).close()


def seed_aps(path: Path, n: int, due: datetime, *, grace: float | None, func: str) -> None:
    """N jobs in APScheduler 3's SQLAlchemy job store, as `add_job` would write them:
    an hourly IntervalTrigger whose next run is `due`, calling `func` with the job's
    number, with `misfire_grace_time` = `grace` (APScheduler's default is 1 s)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.triggers.interval import IntervalTrigger as ApsInterval

    store = SQLAlchemyJobStore(url=f"sqlite:///{path}")
    store.jobs_t.create(store.engine, True)
    trigger = ApsInterval(hours=1, start_date=due, timezone=UTC)
    rows = []
    for i in range(n):
        state = {
            "version": 1,
            "id": f"job{i:07d}",
            "func": func,
            "trigger": trigger,
            "executor": "default",
            "args": (i,),
            "kwargs": {},
            "name": f"bench {i}",
            "misfire_grace_time": grace,
            "coalesce": True,
            "max_instances": 1,
            "next_run_time": due,
        }
        rows.append(
            {
                "id": state["id"],
                "next_run_time": due.timestamp(),
                "job_state": pickle.dumps(state, pickle.HIGHEST_PROTOCOL),
            }
        )
    with store.engine.begin() as connection:
        connection.execute(store.jobs_t.insert(), rows)
    store.engine.dispose()


def seed_limit(path: Path, n: int, due: datetime) -> None:
    """The limit loop's table: one row per fire, a due instant and a state."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(
            "CREATE TABLE fires (id INTEGER PRIMARY KEY, due REAL NOT NULL, "
            "state INTEGER NOT NULL DEFAULT 0)"
        )
        db.execute("CREATE INDEX fires_due ON fires (due) WHERE state = 0")
        db.executemany(
            "INSERT INTO fires (id, due) VALUES (?, ?)", ((i, due.timestamp()) for i in range(n))
        )
