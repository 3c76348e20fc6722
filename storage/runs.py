"""SQL for the run ledger: one row per (schedule, fire instant)."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from scheduler.models import (
    AWAITING_RESULT_OWNER,
    READY_STATUSES,
    ActionKind,
    Attempt,
    Run,
    RunStatus,
    Schedule,
    SkipReason,
)
from scheduler.plans import following_runs
from scheduler.policies import closing_status
from storage.codec import (
    RUN_COLUMNS,
    SCHEDULE_COLUMNS,
    from_db_time,
    run_from_row,
    run_row,
    to_db_time,
)
from storage.sql import Db, Row, fetch_all, fetch_one

_PLACEHOLDERS = ", ".join("?" for _ in RUN_COLUMNS.split(","))
_READY = "('pending', 'failed')"
assert {s.value for s in READY_STATUSES} == {"pending", "failed"}

#: The statements of a run's way through the engine's hot path, named so that
#: bench/ledger_floor.py times exactly these.
#: Runs as `run_row` gives them; a fire instant already in the ledger is left alone.
INSERT_SQL = f"INSERT OR IGNORE INTO runs ({RUN_COLUMNS}) VALUES ({_PLACEHOLDERS})"
#: One finished attempt: run id, attempt, owner, started_at, finished_at, status, error.
ATTEMPT_SQL = (
    "INSERT INTO run_attempts "
    "(run_id, attempt, owner, started_at, finished_at, status, error) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
#: A succeeded run whose one attempt is not in run_attempts but read from the run row
#: (`attempts`, the export): its first attempt succeeded, uninterrupted, and the run
#: keeps that attempt's `owner`. Every other finished run has no owner.
DERIVED_ATTEMPT = "status = 'succeeded' AND owner IS NOT NULL"
#: Every attempt, as the rows of run_attempts (the derived ones without `seq`): for the
#: export and whatever reads the ledger whole.
ALL_ATTEMPTS = (
    "(SELECT seq, run_id, attempt, owner, started_at, finished_at, status, error "
    "FROM run_attempts UNION ALL "
    "SELECT NULL, id, attempt, owner, started_at, finished_at, status, NULL "
    f"FROM runs WHERE {DERIVED_ATTEMPT})"
)
#: Successes as JSON [[id, finished_at, duration_ms, output, token_usage_json], ...]
#: and the owner that must still hold each run; returns the ids written, each with the
#: owner it kept: set when the run's one attempt is derived (its run_attempts row is
#: not written), None when that row must be written (`record_attempts`).
FINISH_SUCCEEDED_SQL = (
    "UPDATE runs SET status = 'succeeded', finished_at = f.value ->> 1, "
    "duration_ms = CAST(f.value ->> 2 AS INTEGER), "
    "output = COALESCE(f.value ->> 3, output), error = NULL, "
    "token_usage_json = COALESCE(f.value ->> 4, token_usage_json), "
    "next_attempt_at = NULL, updated_at = f.value ->> 1, "
    # A first attempt with no attempt before it (none interrupted, none of an
    # operator's earlier retry of this run) needs no row of its own.
    "owner = CASE WHEN runs.attempt = 1 AND runs.interruptions = 0 AND NOT EXISTS "
    "(SELECT 1 FROM run_attempts a WHERE a.run_id = runs.id) THEN runs.owner END "
    "FROM json_each(?) AS f "
    "WHERE runs.id = f.value ->> 0 AND runs.owner = ? AND runs.status = 'running' "
    "RETURNING runs.id, runs.owner"
)

#: Columns an operator action may change through `transition`.
_MUTABLE = {
    "status",
    "skip_reason",
    "trigger",
    "attempt",
    "next_attempt_at",
    "finished_at",
    "error",
    "output",
    "owner",
    "started_at",
    "interruptions",
}


async def insert_many(db: Db, runs: Iterable[Run]) -> int:
    """Insert runs; a fire instant already present is left alone (idempotent claim)."""
    before = db.total_changes
    await db.executemany(INSERT_SQL, [run_row(r) for r in runs])
    return db.total_changes - before


async def write_plan_steps(db: Db, steps: Sequence[Run]) -> None:
    """Write what a plan step's end leads to (`scheduler.plans.following_runs`): the
    next step, or the remaining ones skipped. Their ids are derived from the plan run,
    so a second write of the same step is ignored. A next step already in the ledger as
    skipped because the plan stopped (its previous step failed, and was retried by the
    operator and has now succeeded) is put back to run: a retried step resumes its plan."""
    if not steps:
        return
    await insert_many(db, steps)
    revive = [r for r in steps if r.status is not RunStatus.SKIPPED]
    if revive:
        await db.executemany(
            "UPDATE runs SET status = ?, next_attempt_at = ?, finished_at = NULL, error = NULL, "
            "skip_reason = NULL, updated_at = ? "
            "WHERE id = ? AND status = 'skipped' AND skip_reason = ?",
            [
                (
                    r.status.value,
                    None if r.next_attempt_at is None else to_db_time(r.next_attempt_at),
                    to_db_time(r.updated_at),
                    r.id,
                    SkipReason.PLAN_STOPPED.value,
                )
                for r in revive
            ],
        )


async def get(db: Db, chat_id: int, run_id: str) -> Run | None:
    row = await fetch_one(
        db, f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ? AND chat_id = ?", (run_id, chat_id)
    )
    return None if row is None else run_from_row(row)


async def list_for_chat(
    db: Db,
    chat_id: int,
    *,
    schedule_id: str | None,
    statuses: Collection[RunStatus] | None,
    limit: int,
    offset: int,
) -> list[Run]:
    where = ["chat_id = ?"]
    params: list[Any] = [chat_id]
    if schedule_id is not None:
        where.append("schedule_id = ?")
        params.append(schedule_id)
    if statuses:
        where.append(f"status IN ({','.join('?' * len(statuses))})")
        params.extend(s.value for s in statuses)
    params += [limit, offset]
    rows = await fetch_all(
        db,
        f"SELECT {RUN_COLUMNS} FROM runs WHERE {' AND '.join(where)} "
        "ORDER BY scheduled_for DESC, id DESC LIMIT ? OFFSET ?",
        params,
    )
    return [run_from_row(r) for r in rows]


#: Run columns, then the columns of the run's schedule, for reading both in one query.
_RUN_AND_SCHEDULE = ", ".join(
    [f"r.{c.strip()}" for c in RUN_COLUMNS.split(",")]
    + [f"s.{c.strip()}" for c in SCHEDULE_COLUMNS.split(",")]
)
#: Where a joined row's schedule columns begin.
RUN_WIDTH = len(RUN_COLUMNS.split(","))


async def ready_with_schedules(
    db: Db, now: datetime, idle_limit: int, busy_limit: int
) -> list[Row]:
    """Ready runs, each row the run's columns then its schedule's (split at RUN_WIDTH),
    in one trip to the database thread: first (`idle` = 1) up to `idle_limit` runs that
    are their schedule's earliest ready run, of schedules with nothing running (they can
    start whatever the overlap policy); then (`idle` = 0) up to `busy_limit` ready runs of
    schedules that have a run running (the overlap policy decides). Each part in
    (next_attempt_at, scheduled_for) order. The last two columns are the run's
    `interruptions` and `idle`."""
    return await fetch_all(
        db,
        f"SELECT * FROM (SELECT {_RUN_AND_SCHEDULE}, r.interruptions, 1 AS idle FROM runs r "
        "JOIN schedules s ON s.id = r.schedule_id "
        f"WHERE r.status IN {_READY} AND r.next_attempt_at <= :now "
        "AND NOT EXISTS (SELECT 1 FROM runs b "
        "  WHERE b.schedule_id = r.schedule_id AND b.status = 'running') "
        "AND NOT EXISTS (SELECT 1 FROM runs e "
        f"  WHERE e.schedule_id = r.schedule_id AND e.status IN {_READY} "
        "  AND e.next_attempt_at <= :now AND e.scheduled_for < r.scheduled_for) "
        "ORDER BY r.next_attempt_at, r.scheduled_for LIMIT :idle_limit) AS idle_runs "
        "UNION ALL "
        f"SELECT * FROM (SELECT {_RUN_AND_SCHEDULE}, r.interruptions, 0 AS idle FROM runs r "
        "JOIN schedules s ON s.id = r.schedule_id "
        # From the (few) running runs to their schedules' ready ones: asking each ready
        # run whether its schedule is busy would read the whole backlog every time.
        "WHERE r.schedule_id IN (SELECT b.schedule_id FROM runs b WHERE b.status = 'running') "
        f"AND r.status IN {_READY} AND r.next_attempt_at <= :now "
        "ORDER BY r.next_attempt_at, r.scheduled_for LIMIT :busy_limit) AS busy_runs "
        "ORDER BY idle DESC, 8, 4",
        {"now": to_db_time(now), "idle_limit": idle_limit, "busy_limit": busy_limit},
    )


#: JSON [[id, status, updated_at, attempt, interruptions], ...] of runs as read; returns
#: those still so, each locked until the transaction ends, skipping those another
#: transaction holds (PostgreSQL only: several engines acquiring at once).
_LOCK_UNCHANGED_SQL = (
    "SELECT r.id FROM runs r, json_each(?) AS w WHERE r.id = w.value ->> 0 "
    "AND r.status = w.value ->> 1 AND r.updated_at = w.value ->> 2 "
    "AND r.attempt = CAST(w.value ->> 3 AS INTEGER) "
    "AND r.interruptions = CAST(w.value ->> 4 AS INTEGER) "
    "FOR UPDATE OF r SKIP LOCKED"
)
_UPDATED_AT = RUN_COLUMNS.replace(" ", "").split(",").index("updated_at")


async def lock_unchanged(db: Db, rows: Sequence[tuple[Any, ...]]) -> set[str]:
    """Of `rows` (as `ready_with_schedules` reads them), the ids of the runs no other
    engine changed or holds since, now locked by this transaction."""
    payload = json.dumps([[r[0], r[5], r[_UPDATED_AT], r[6], r[-2]] for r in rows])
    return {row[0] for row in await fetch_all(db, _LOCK_UNCHANGED_SQL, (payload,))}


async def mark_running(db: Db, run_ids: list[str], owner: str, now: datetime) -> set[str]:
    """Start the ready runs `run_ids` as `owner`'s; the ids started (a run that is no
    longer ready, started or closed by another engine, is left alone)."""
    if not run_ids:
        return set()
    when = to_db_time(now)
    rows = await fetch_all(
        db,
        "UPDATE runs SET status = 'running', owner = ?, started_at = ?, attempt = attempt + 1, "
        "error = NULL, updated_at = ? WHERE id IN (SELECT value FROM json_each(?)) "
        f"AND status IN {_READY} RETURNING id",
        (owner, when, when, json.dumps(run_ids)),
    )
    return {row[0] for row in rows}


async def close_runs(
    db: Db,
    closed: Sequence[tuple[str, RunStatus]],
    kind: SkipReason,
    reason: str,
    now: datetime,
) -> None:
    """Close runs that will not run, each with the status `scheduler.policies.
    closing_status` gave it, and why."""
    if not closed:
        return
    when = to_db_time(now)
    await db.executemany(
        "UPDATE runs SET status = ?, skip_reason = ?, error = ?, finished_at = ?, "
        f"updated_at = ?, next_attempt_at = NULL WHERE id = ? AND status IN {_READY}",
        [(status.value, kind.value, reason, when, when, rid) for rid, status in closed],
    )


async def finish(
    db: Db,
    run_id: str,
    owner: str,
    *,
    status: RunStatus,
    finished_at: datetime,
    duration_ms: int | None,
    output: str | None,
    error: str | None,
    token_usage_json: str | None,
    next_attempt_at: datetime | None,
    summary: str | None = None,
    outputs_url: str | None = None,
    log_excerpt: str | None = None,
) -> Run | None:
    when = to_db_time(finished_at)
    row = await fetch_one(
        db,
        "UPDATE runs SET status = ?, finished_at = ?, duration_ms = ?, "
        "output = COALESCE(?, output), error = ?, token_usage_json = COALESCE(?, "
        "token_usage_json), next_attempt_at = ?, owner = NULL, updated_at = ?, "
        "summary = COALESCE(?, summary), outputs_url = COALESCE(?, outputs_url), "
        "log_excerpt = COALESCE(?, log_excerpt) "
        f"WHERE id = ? AND owner = ? AND status = 'running' RETURNING {RUN_COLUMNS}",
        (
            status.value,
            when,
            duration_ms,
            output,
            error,
            token_usage_json,
            None if next_attempt_at is None else to_db_time(next_attempt_at),
            when,
            summary,
            outputs_url,
            log_excerpt,
            run_id,
            owner,
        ),
    )
    return None if row is None else run_from_row(row)


async def await_result(
    db: Db, run_id: str, owner: str, deadline: datetime, now: datetime
) -> Run | None:
    """Hand a running run from the engine `owner` to the agent (AWAITING_RESULT_OWNER)
    until `deadline`: the agent answered 202 and will report the result later."""
    row = await fetch_one(
        db,
        "UPDATE runs SET owner = ?, next_attempt_at = ?, updated_at = ? "
        f"WHERE id = ? AND owner = ? AND status = 'running' RETURNING {RUN_COLUMNS}",
        (AWAITING_RESULT_OWNER, to_db_time(deadline), to_db_time(now), run_id, owner),
    )
    return None if row is None else run_from_row(row)


async def overdue_results(db: Db, now: datetime, limit: int) -> list[Run]:
    """Runs awaiting the agent's result whose deadline is not after `now`."""
    rows = await fetch_all(
        db,
        f"SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' AND owner = ? "
        "AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
        (AWAITING_RESULT_OWNER, to_db_time(now), limit),
    )
    return [run_from_row(r) for r in rows]


async def record_attempt(db: Db, run: Run, owner: str) -> None:
    assert run.finished_at is not None
    await db.execute(
        ATTEMPT_SQL,
        (
            run.id,
            run.attempt,
            owner,
            None if run.started_at is None else to_db_time(run.started_at),
            to_db_time(run.finished_at),
            run.status.value,
            run.error,
        ),
    )


async def finish_succeeded(db: Db, finished: Sequence[Run], owner: str) -> dict[str, bool]:
    """Record many successful attempts in one statement: each run (already carrying
    its outcome) is written only if `owner` still holds it. Returns the ids written,
    each with whether its attempt still needs its run_attempts row (`record_attempts`):
    false for a first attempt, which is derived from the run (`DERIVED_ATTEMPT`)."""
    if not finished:
        return {}
    payload = json.dumps(
        [
            [
                r.id,
                to_db_time(r.finished_at),
                r.duration_ms,
                r.output,
                None if r.token_usage is None else json.dumps(r.token_usage),
            ]
            for r in finished
            if r.finished_at is not None
        ]
    )
    rows = await fetch_all(db, FINISH_SUCCEEDED_SQL, (payload, owner))
    return {row[0]: row[1] is None for row in rows}


async def record_attempts(db: Db, finished: Sequence[Run], owner: str) -> None:
    """`record_attempt` for many finished runs, in one trip to the database thread."""
    await db.executemany(
        ATTEMPT_SQL,
        [
            (
                r.id,
                r.attempt,
                owner,
                None if r.started_at is None else to_db_time(r.started_at),
                None if r.finished_at is None else to_db_time(r.finished_at),
                r.status.value,
                r.error,
            )
            for r in finished
        ],
    )


#: A run's attempts, oldest first: its run_attempts rows, or the one derived from the
#: run (`DERIVED_ATTEMPT`; a run has either, never both).
ATTEMPTS_SQL = (
    "SELECT a.attempt, a.owner, a.started_at, a.finished_at, a.status, a.error, a.seq "
    "FROM run_attempts a JOIN runs r ON r.id = a.run_id "
    "WHERE a.run_id = ? AND r.chat_id = ? "
    "UNION ALL SELECT attempt, owner, started_at, finished_at, status, NULL, NULL "
    f"FROM runs WHERE id = ? AND chat_id = ? AND {DERIVED_ATTEMPT} "
    "ORDER BY 7"
)


async def attempts(db: Db, chat_id: int, run_id: str) -> list[Attempt]:
    rows = await fetch_all(db, ATTEMPTS_SQL, (run_id, chat_id, run_id, chat_id))
    return [
        Attempt(
            attempt=r[0],
            owner=r[1],
            started_at=from_db_time(r[2]),
            finished_at=from_db_time(r[3]),
            status=RunStatus(r[4]),
            error=r[5],
        )
        for r in rows
    ]


async def release(db: Db, owner: str, run_ids: Collection[str], now: datetime) -> int:
    when = to_db_time(now)
    before = db.total_changes
    # The interrupted attempt does not count: it did not fail, we stopped it.
    await db.executemany(
        "UPDATE runs SET status = 'pending', owner = NULL, started_at = NULL, "
        "attempt = CASE WHEN attempt > 0 THEN attempt - 1 ELSE 0 END, "
        "next_attempt_at = ?, updated_at = ? "
        "WHERE id = ? AND owner = ? AND status = 'running'",
        [(when, when, rid, owner) for rid in run_ids],
    )
    return db.total_changes - before


async def interruptions_of(db: Db, run_ids: Sequence[str]) -> dict[str, int]:
    """How many times each of `run_ids` was interrupted so far."""
    rows = await fetch_all(
        db,
        "SELECT id, interruptions FROM runs WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(run_ids)),),
    )
    return {r[0]: int(r[1]) for r in rows}


async def interrupt(
    db: Db,
    run: Run,
    *,
    status: RunStatus,
    error: str | None,
    next_attempt_at: datetime | None,
    now: datetime,
) -> Run | None:
    """Close an attempt that Tickler itself cut off (`run` as it was left running): the
    attempt goes into the history, the run takes `status` with its attempt number given
    back (it did not fail, we stopped it) and one more interruption counted. None if the
    run is no longer running under its owner. Put back to be redelivered, it keeps the
    place it had in the queue (its `next_attempt_at` when it was started) unless
    `next_attempt_at` is earlier: an interrupted run goes before its schedule's newer
    fires, which would otherwise start first and have it skipped as their overlap."""
    assert run.owner is not None
    when = to_db_time(now)
    # A run put back to wait for its redelivery is not finished; one left for the
    # operator is.
    finished = None if status in READY_STATUSES else when
    row = await fetch_one(
        db,
        "UPDATE runs SET status = ?, attempt = CASE WHEN attempt > 0 THEN attempt - 1 ELSE 0 END, "
        "interruptions = interruptions + 1, error = ?, next_attempt_at = ?, "
        "started_at = NULL, finished_at = COALESCE(?, finished_at), owner = NULL, "
        f"updated_at = ? WHERE id = ? AND owner = ? AND status = 'running' "
        f"RETURNING {RUN_COLUMNS}",
        (
            status.value,
            error,
            _kept_place(run, next_attempt_at),
            finished,
            when,
            run.id,
            run.owner,
        ),
    )
    if row is None:
        return None
    cut = run.model_copy(update={"status": status, "finished_at": now, "error": error})
    await record_attempt(db, cut, run.owner)
    return run_from_row(row)


def _kept_place(run: Run, next_attempt_at: datetime | None) -> str | None:
    if next_attempt_at is None:
        return None
    if run.next_attempt_at is not None and run.next_attempt_at < next_attempt_at:
        return to_db_time(run.next_attempt_at)
    return to_db_time(next_attempt_at)


async def running_of_owners(db: Db, owners: Collection[str]) -> list[Run]:
    if not owners:
        return []
    marks = ",".join("?" * len(owners))
    rows = await fetch_all(
        db,
        f"SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' AND owner IN ({marks})",
        list(owners),
    )
    return [run_from_row(r) for r in rows]


async def owned_by(db: Db, run_ids: Sequence[str], owner: str) -> set[str]:
    """Of `run_ids`, those running under `owner`."""
    rows = await fetch_all(
        db,
        "SELECT id FROM runs WHERE owner = ? AND status = 'running' "
        "AND id IN (SELECT value FROM json_each(?))",
        (owner, json.dumps(list(run_ids))),
    )
    return {r[0] for r in rows}


#: A run open: running, or pending or failed (a retry to come, due or not); each one
#: answered from its partial index (runs_running, runs_ready_by_schedule).
_OPEN = ("status = 'running'", f"status IN {_READY}")
#: Schedules with a run open.
OPEN_RUN_SCHEDULES = " UNION ".join(f"SELECT schedule_id FROM runs WHERE {o}" for o in _OPEN)
#: The same, of the schedules in the JSON list :ids: looked up in the indexes by id
#: (SQLite does not push the filter into the UNION, which would read every open run).
_OPEN_OF = " UNION ".join(
    f"SELECT schedule_id FROM runs WHERE {o} AND schedule_id IN (SELECT value FROM json_each(:ids))"
    for o in _OPEN
)


async def with_open_runs(db: Db, schedule_ids: Sequence[str]) -> set[str]:
    """Of `schedule_ids`, those with a run open (OPEN_RUN_SCHEDULES)."""
    rows = await fetch_all(db, _OPEN_OF, {"ids": json.dumps(list(schedule_ids))})
    return {r[0] for r in rows}


async def running_owners(db: Db) -> set[str]:
    rows = await fetch_all(
        db,
        # A run awaiting the agent's result belongs to no engine: nothing to reap.
        "SELECT DISTINCT owner FROM runs WHERE status = 'running' AND owner IS NOT NULL "
        "AND owner <> ?",
        (AWAITING_RESULT_OWNER,),
    )
    return {r[0] for r in rows}


async def settle_open(
    db: Db,
    schedule_id: str,
    kind: SkipReason,
    reason: str,
    now: datetime,
    schedule: Schedule | None = None,
) -> None:
    """Close a schedule's not-started runs, each skipped or cancelled as
    `scheduler.policies.closing_status` says. Given its `schedule`, a plan step closed
    so ends its plan run: the steps after it are written skipped."""
    rows = await fetch_all(
        db,
        "SELECT id, status, attempt, interruptions FROM runs WHERE schedule_id = ? "
        "AND status IN ('pending', 'failed', 'awaiting_approval')",
        (schedule_id,),
    )
    closed = [(r[0], closing_status(RunStatus(r[1]), r[2], r[3])) for r in rows]
    await close_runs(db, closed, kind, reason, now)
    if schedule is None or schedule.action.kind is not ActionKind.PLAN or not closed:
        return
    ended: list[Run] = []
    for run_id, _ in closed:
        run = await get(db, schedule.chat_id, run_id)
        if run is not None:
            ended.extend(following_runs(run, schedule, now))
    await write_plan_steps(db, ended)


async def transition(
    db: Db,
    chat_id: int,
    run_id: str,
    *,
    expected: Collection[RunStatus],
    changes: dict[str, Any],
    now: datetime,
) -> bool:
    unknown = set(changes) - _MUTABLE
    if unknown:
        raise ValueError(f"run columns not changeable: {sorted(unknown)}")
    values: dict[str, Any] = {}
    for key, value in changes.items():
        if isinstance(value, datetime):
            value = to_db_time(value)
        elif isinstance(value, RunStatus) or hasattr(value, "value"):
            value = value.value
        values[key] = value
    values["updated_at"] = to_db_time(now)
    sets = ", ".join(f"{k} = :{k}" for k in values)
    marks = ", ".join(f":s{i}" for i in range(len(expected)))
    params = {**values, "id": run_id, "chat_id": chat_id}
    params.update({f"s{i}": s.value for i, s in enumerate(expected)})
    if RunStatus.SUCCEEDED in expected:
        # A succeeded run leaving its state writes its derived attempt down first, and
        # gives up the owner that stood for it.
        await db.execute(
            "INSERT INTO run_attempts "
            "(run_id, attempt, owner, started_at, finished_at, status, error) "
            "SELECT id, attempt, owner, started_at, finished_at, status, NULL FROM runs "
            f"WHERE id = :id AND chat_id = :chat_id AND {DERIVED_ATTEMPT}",
            {"id": run_id, "chat_id": chat_id},
        )
        if "owner" not in values:
            sets += ", owner = CASE WHEN status = 'succeeded' THEN NULL ELSE owner END"
    cur = await db.execute(
        f"UPDATE runs SET {sets} WHERE id = :id AND chat_id = :chat_id AND status IN ({marks})",
        params,
    )
    return cur.rowcount == 1


async def count_by_status(db: Db) -> dict[RunStatus, int]:
    rows = await fetch_all(db, "SELECT status, COUNT(*) FROM runs GROUP BY status")
    return {RunStatus(r[0]): int(r[1]) for r in rows}


async def count_due(db: Db, now: datetime) -> int:
    row = await fetch_one(
        db,
        f"SELECT COUNT(*) FROM runs WHERE status IN {_READY} AND next_attempt_at <= ?",
        (to_db_time(now),),
    )
    return int(row[0]) if row else 0


async def skip_expired_approvals(db: Db, kind: SkipReason, reason: str, now: datetime) -> list[Run]:
    """Skip runs awaiting approval whose deadline (next_attempt_at) has come; those
    skipped."""
    when = to_db_time(now)
    rows = await fetch_all(
        db,
        "UPDATE runs SET status = 'skipped', skip_reason = ?, error = ?, finished_at = ?, "
        "updated_at = ?, next_attempt_at = NULL "
        f"WHERE status = 'awaiting_approval' AND next_attempt_at <= ? RETURNING {RUN_COLUMNS}",
        (kind.value, reason, when, when, when),
    )
    return [run_from_row(r) for r in rows]


async def last_output(db: Db, chat_id: int, schedule_id: str) -> str | None:
    """The answer of the schedule's latest successful run ({last_output} in a prompt)."""
    row = await fetch_one(
        db,
        "SELECT output FROM runs WHERE chat_id = ? AND schedule_id = ? AND status = 'succeeded' "
        "ORDER BY scheduled_for DESC, id DESC LIMIT 1",
        (chat_id, schedule_id),
    )
    return None if row is None else row[0]
