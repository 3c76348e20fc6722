"""The exactly-once check of the reliability suite: every fire instant of every
schedule, from its creation to the end of the test, accounted for exactly once in the
run ledger on disk, and no delivery to the agent that the ledger cannot explain.

"Accounted for" means one row for the instant, in a final status (succeeded, dead,
cancelled, or skipped with a reason) or `unknown` (a timeout the operator was asked
about); only the newest fires, those after
`settled_before`, may still be on their way (pending, failed awaiting a retry,
running). The fire instants are computed with the scheduler's own trigger code from
each schedule's creation, independently of what the engine wrote.

A key (`{schedule_id}:{scheduled_for}`) may reach the agent again only as a retry of
the same run: the agent saw it at most once per attempt the run's trail records, plus
once per delivery that was cut off unanswered (a killed or stopped process).

The ledger is read with plain SQL, read-only: this is an audit of the file as it is,
not of what the store's own queries make of it. The same SQL reads a PostgreSQL database
(`where` a `postgresql://` URL: `fetch_runs`, `still_open`, `account`), rewritten by
storage/'s own dialect module and run on a connection of its own.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from scheduler.dispatching import format_instant
from scheduler.models import FINAL_STATUSES, RunStatus, RunTrigger, Schedule
from scheduler.service import first_fire
from storage.codec import req_time, to_db_time
from storage.locations import Location, is_postgres, open_store
from storage.postgres.dialect import to_postgres
from storage.runs import ALL_ATTEMPTS
from tests.reliability.scripted_agent import Delivery

__all__ = [
    "Accounting",
    "RunRow",
    "account",
    "fetch_runs",
    "open_before",
    "query",
    "read_runs",
    "still_open",
]

_OWN_FIRES = {RunTrigger.SCHEDULE.value, RunTrigger.CATCH_UP.value}


@dataclass(frozen=True)
class RunRow:
    id: str
    schedule_id: str
    scheduled_for: datetime
    trigger: str
    status: RunStatus
    attempt: int
    error: str | None
    started_at: datetime | None
    #: The finished attempts, oldest first: (status, error, started_at, finished_at).
    trail: tuple[tuple[RunStatus, str | None, datetime | None, datetime], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.schedule_id}:{format_instant(self.scheduled_for)}"

    @property
    def lag(self) -> timedelta | None:
        """How late its first attempt started after its fire instant (engine clock)."""
        started = self.trail[0][2] if self.trail else None
        return None if started is None else started - self.scheduled_for


@dataclass
class Accounting:
    #: Fire instants checked (each one must have exactly one row).
    checked: int = 0
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    #: Rows the trigger does not explain, and other inconsistencies.
    problems: list[str] = field(default_factory=list)
    #: Deliveries of a key after the first: retries of one run, same key.
    redeliveries: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    #: Why the skipped fires were skipped (the reason up to its first colon).
    skipped_because: Counter[str] = field(default_factory=Counter)
    runs: list[RunRow] = field(default_factory=list)

    def summary(self) -> str:
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(self.by_status.items()))
        reasons = ", ".join(f"{n} {s}" for s, n in self.skipped_because.most_common())
        because = f"; skipped: {reasons}" if reasons else ""
        return (
            f"{self.checked} fire instants checked ({statuses}{because}); "
            f"lost {len(self.lost)}, "
            f"doubled {len(self.doubled)}, other problems {len(self.problems)}, "
            f"{self.redeliveries} redeliveries of a key by retries"
        )

    def assert_clean(self) -> None:
        shown = (self.lost + self.doubled + self.problems)[:15]
        assert not (self.lost or self.doubled or self.problems), (
            self.summary() + "\n" + "\n".join(shown)
        )


# Every attempt, the derived first attempts (no seq) included; a run has either kind.
_ATTEMPTS_SQL = (
    "SELECT run_id, status, error, started_at, finished_at "
    f"FROM {ALL_ATTEMPTS} AS a ORDER BY seq IS NULL, seq"
)
_RUNS_SQL = (
    "SELECT id, schedule_id, scheduled_for, trigger, status, attempt, error, started_at FROM runs"
)


def read_runs(db_path: Path) -> list[RunRow]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30) as db:
        attempts = db.execute(_ATTEMPTS_SQL).fetchall()
        rows = db.execute(_RUNS_SQL).fetchall()
    return _run_rows(rows, attempts)


async def fetch_runs(where: Location) -> list[RunRow]:
    """`read_runs` of a SQLite file or a PostgreSQL database."""
    attempts = await query(where, _ATTEMPTS_SQL)
    return _run_rows(await query(where, _RUNS_SQL), attempts)


async def query(where: Location, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """The rows of one read-only statement in storage/'s SQL (SQLite's dialect, `?`
    placeholders): on a SQLite file opened read-only, or on a PostgreSQL database over a
    connection of its own, the statement rewritten as the store rewrites its own."""
    if not is_postgres(where):
        return await asyncio.to_thread(_sqlite_rows, Path(where), sql, parameters)
    statement = to_postgres(sql)
    raw = await asyncpg.connect(str(where), timeout=10, statement_cache_size=0)
    try:
        async with raw.transaction(isolation="repeatable_read", readonly=True):
            rows = await raw.fetch(statement.text, *statement.arguments(parameters))
    finally:
        await raw.close()
    return [tuple(r) for r in rows]


def _sqlite_rows(db_path: Path, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30) as db:
        return [tuple(r) for r in db.execute(sql, tuple(parameters))]


def _run_rows(rows: Sequence[Sequence[Any]], attempts: Sequence[Sequence[Any]]) -> list[RunRow]:
    trails: dict[str, list[tuple[RunStatus, str | None, datetime | None, datetime]]] = {}
    for run_id, status, error, started, finished in attempts:
        trails.setdefault(run_id, []).append(
            (
                RunStatus(status),
                error,
                req_time(started) if started else None,
                req_time(finished),
            )
        )
    return [
        RunRow(
            id=r[0],
            schedule_id=r[1],
            scheduled_for=req_time(r[2]),
            trigger=r[3],
            status=RunStatus(r[4]),
            attempt=r[5],
            error=r[6],
            started_at=req_time(r[7]) if r[7] else None,
            trail=tuple(trails.get(r[0], ())),
        )
        for r in rows
    ]


def open_before(db_path: Path, cut: datetime) -> list[str]:
    """What keeps the fires before `cut` from being accounted for as `account(...,
    settled_before=cut)` requires: runs not yet final (nor `unknown`, which the operator
    was asked about), and active schedules whose fires before `cut` are not all claimed
    yet (their `next_run_at` is before it). Empty once the ledger before `cut` is settled:
    a test drains by waiting for this, not for a span of time, which a busy machine
    stretches."""
    before = to_db_time(cut)
    runs = _sqlite_rows(db_path, _OPEN_RUNS_SQL, (before,))
    unclaimed = _sqlite_rows(db_path, _UNCLAIMED_SQL, (before,))
    return _open_lines(runs, unclaimed)


async def still_open(where: Location, cut: datetime) -> list[str]:
    """`open_before` of a SQLite file or a PostgreSQL database."""
    before = to_db_time(cut)
    runs = await query(where, _OPEN_RUNS_SQL, (before,))
    return _open_lines(runs, await query(where, _UNCLAIMED_SQL, (before,)))


_SETTLED = ",".join(f"'{s.value}'" for s in (*FINAL_STATUSES, RunStatus.UNKNOWN))
_OPEN_RUNS_SQL = (
    "SELECT schedule_id, scheduled_for, status, attempt, next_attempt_at FROM runs "
    f"WHERE status NOT IN ({_SETTLED}) AND scheduled_for < ? ORDER BY scheduled_for"
)
_UNCLAIMED_SQL = (
    "SELECT id, next_run_at FROM schedules WHERE enabled = 1 AND tripped = 0 "
    "AND archived_at IS NULL AND next_run_at < ? ORDER BY next_run_at"
)


def _open_lines(runs: Sequence[Sequence[Any]], unclaimed: Sequence[Sequence[Any]]) -> list[str]:
    return [
        f"{sid}:{at} {status}, attempt {attempt}, ready at {ready}"
        for sid, at, status, attempt, ready in runs
    ] + [f"{sid}: fire at {at} not claimed yet" for sid, at in unclaimed]


async def read_schedules(db_path: Location, chats: Collection[int]) -> list[Schedule]:
    async with await open_store(db_path) as store:
        found: list[Schedule] = []
        for chat in chats:
            found += await store.schedules.list_for_chat(chat, include_archived=True)
        return found


def expected_instants(schedule: Schedule, until: datetime) -> list[datetime]:
    """The schedule's fire instants from its creation up to `until` (inclusive)."""
    out: list[datetime] = []
    cursor = first_fire(schedule.trigger, schedule.created_at)
    while cursor is not None and cursor <= until:
        out.append(cursor)
        cursor = schedule.trigger.next_after(cursor)
    return out


async def account(
    db_path: Location,
    *,
    chats: Collection[int],
    until: datetime,
    settled_before: datetime,
    deliveries: Sequence[Delivery] = (),
    frontier_slack: timedelta = timedelta(minutes=5),
    claimed_by: datetime | None = None,
) -> Accounting:
    """Check the ledger of every schedule of `chats` up to `until` (the fake instant the
    last process had stopped by: it fires until it stops). A schedule still active must
    have been claimed up to `claimed_by - frontier_slack` (`claimed_by`, default `until`:
    when the test asked the process to stop; its last loop iteration may come a little
    before); rows before `settled_before` must be final."""
    acc = Accounting()
    schedules = await read_schedules(db_path, chats)
    runs = await fetch_runs(db_path)
    acc.runs = runs
    by_instant: dict[tuple[str, datetime], list[RunRow]] = {}
    for run in runs:
        if run.trigger in _OWN_FIRES:
            by_instant.setdefault((run.schedule_id, run.scheduled_for), []).append(run)
    keys = _deliveries_by_key(deliveries)
    explained: set[str] = set()

    for schedule in schedules:
        frontier = schedule.next_run_at
        active = schedule.enabled and not schedule.tripped and schedule.archived_at is None
        instants = expected_instants(schedule, until)
        claimed_to = frontier if frontier is not None else until + timedelta(microseconds=1)
        for instant in instants:
            rows = by_instant.pop((schedule.id, instant), [])
            if instant >= claimed_to:
                if rows:
                    acc.problems.append(f"{schedule.id} {instant}: a row beyond next_run_at")
                if active and instant <= (claimed_by or until) - frontier_slack:
                    acc.lost.append(f"{schedule.id} {instant}: never claimed (engine stalled)")
                continue
            acc.checked += 1
            if not rows:
                acc.lost.append(f"{schedule.id} {instant}: no run recorded")
                continue
            if len(rows) > 1:
                acc.doubled.append(f"{schedule.id} {instant}: {len(rows)} rows")
            run = rows[0]
            acc.by_status[run.status.value] += 1
            _check_run(acc, run, settled_before, keys.get(run.key, []))
            explained.add(run.key)
    for (sid, instant), rows in by_instant.items():
        if sid in {s.id for s in schedules}:
            acc.problems.append(f"{sid} {instant}: {len(rows)} row(s) at no fire instant")
    for key, seen in keys.items():
        sid = key.partition(":")[0]
        if key not in explained and sid in {s.id for s in schedules}:
            acc.doubled.append(f"{key}: delivered {len(seen)}x but no run in the checked window")
    return acc


def _deliveries_by_key(deliveries: Sequence[Delivery]) -> Mapping[str, list[Delivery]]:
    out: dict[str, list[Delivery]] = {}
    for d in deliveries:
        out.setdefault(d.key, []).append(d)
    return out


def _check_run(
    acc: Accounting, run: RunRow, settled_before: datetime, seen: list[Delivery]
) -> None:
    where = f"{run.key} ({run.trigger}, {run.status.value}, attempt {run.attempt})"
    if run.status in FINAL_STATUSES:
        if run.status is RunStatus.SKIPPED:
            acc.skipped_because[(run.error or "").partition(":")[0]] += 1
            if not run.error:
                acc.lost.append(f"{where}: skipped without a reason")
    elif run.status is RunStatus.UNKNOWN:
        pass  # the operator was asked (Retry / Mark done / Drop): accounted for, with them
    elif run.scheduled_for < settled_before:
        acc.lost.append(f"{where}: still {run.status.value} at the end")

    trail = [t[0] for t in run.trail]
    if trail.count(RunStatus.SUCCEEDED) > 1 or (
        RunStatus.SUCCEEDED in trail and trail[-1] is not RunStatus.SUCCEEDED
    ):
        acc.doubled.append(f"{where}: succeeded more than once: {trail}")
    if run.status in (RunStatus.SUCCEEDED, RunStatus.DEAD) and (
        not trail or trail[-1] != run.status
    ):
        acc.problems.append(f"{where}: its attempts {trail} do not end in its status")

    if run.status is RunStatus.SKIPPED and seen:
        acc.doubled.append(f"{where}: skipped, yet the agent got it {len(seen)}x")
    unanswered = sum(not d.answered for d in seen)
    if len(seen) > len(trail) + unanswered + (run.status is RunStatus.RUNNING):
        acc.doubled.append(
            f"{where}: the agent got it {len(seen)}x ({unanswered} cut off) for "
            f"{len(trail)} recorded attempts"
        )
    acc.redeliveries += max(0, len(seen) - 1)
