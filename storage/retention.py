"""SQL for history retention: deleting old finished runs, their attempts and settled
chat messages, a small batch per transaction (the policy is scheduler/retention.py)."""

from __future__ import annotations

import json
from datetime import datetime

from scheduler.models import RunStatus
from storage.codec import to_db_time
from storage.runs import DERIVED_ATTEMPT
from storage.sql import Db, fetch_all, fetch_one

__all__ = [
    "PRUNABLE_RUN_STATUSES",
    "delete_notifications",
    "delete_runs",
    "keep_from",
    "prunable_runs",
    "schedule_ids",
]

#: Runs that will never change again and need nobody: a dead run waits in the
#: dead-letter list, an unknown one for the operator's verdict, so neither goes.
PRUNABLE_RUN_STATUSES = (RunStatus.SUCCEEDED, RunStatus.SKIPPED, RunStatus.CANCELLED)
_PRUNABLE = "(" + ", ".join(f"'{s.value}'" for s in PRUNABLE_RUN_STATUSES) + ")"


async def schedule_ids(db: Db, after: str, limit: int) -> list[str]:
    """Every schedule (archived ones too: their runs age as well), in id order."""
    rows = await fetch_all(
        db, "SELECT id FROM schedules WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
    )
    return [r[0] for r in rows]


async def keep_from(db: Db, schedule_id: str, keep: int) -> str | None:
    """The fire instant (as stored) of the schedule's `keep`-th latest run: it and the
    runs after it stay whatever their age. None: the schedule has fewer runs."""
    row = await fetch_one(
        db,
        "SELECT scheduled_for FROM runs WHERE schedule_id = ? "
        "ORDER BY scheduled_for DESC LIMIT 1 OFFSET ?",
        (schedule_id, keep - 1),
    )
    return None if row is None else str(row[0])


async def prunable_runs(
    db: Db,
    schedule_id: str,
    *,
    before: str,
    cutoff: datetime,
    after: str,
    limit: int,
) -> tuple[list[str], str | None]:
    """Up to `limit` of the schedule's finished runs fired after `after` and before
    `before` (both as stored) and untouched since `cutoff`, oldest first, read along
    the (schedule_id, scheduled_for) index; and the last instant read (the next call's
    `after`), None when there is no more."""
    rows = await fetch_all(
        db,
        "SELECT id, scheduled_for, status IN " + _PRUNABLE + " AND updated_at < :cutoff "
        "FROM runs WHERE schedule_id = :schedule AND scheduled_for > :after "
        "AND scheduled_for < :before ORDER BY scheduled_for LIMIT :limit",
        {
            "schedule": schedule_id,
            "after": after,
            "before": before,
            "cutoff": to_db_time(cutoff),
            "limit": limit,
        },
    )
    last = str(rows[-1][1]) if len(rows) == limit else None
    return [r[0] for r in rows if r[2]], last


_DERIVED = f"CASE WHEN {DERIVED_ATTEMPT} THEN 1 ELSE 0 END"


async def delete_runs(db: Db, run_ids: list[str], cutoff: datetime) -> tuple[int, int]:
    """Delete those of the runs that are still prunable (finished, untouched since
    `cutoff`: they were read outside this transaction) and their attempts (first: they
    reference the run); how many of each went."""
    if not run_ids:
        return 0, 0
    wanted = json.dumps(run_ids)
    rows = await fetch_all(
        db,
        # Whether the run's one attempt is derived from it: it goes with the run.
        f"SELECT r.id, {_DERIVED} FROM runs r WHERE r.id IN (SELECT value FROM json_each(?)) "
        f"AND r.status IN {_PRUNABLE} AND r.updated_at < ? "
        # A plan run (step 0) goes only with its later steps, which name it: an export
        # never holds a step whose plan run is gone (storage/export.py).
        "AND NOT EXISTS (SELECT 1 FROM runs s WHERE s.plan_run_id = r.id AND s.id <> r.id "
        "  AND s.id NOT IN (SELECT value FROM json_each(?)))",
        (wanted, to_db_time(cutoff), wanted),
    )
    ids = json.dumps([r[0] for r in rows])
    cur = await db.execute(
        "DELETE FROM run_attempts WHERE run_id IN (SELECT value FROM json_each(?))", (ids,)
    )
    attempts = cur.rowcount + sum(1 for r in rows if r[1])
    # An event's link to a run goes with the run (the event stays: it is small).
    await db.execute(
        "DELETE FROM event_runs WHERE run_id IN (SELECT value FROM json_each(?))", (ids,)
    )
    cur = await db.execute("DELETE FROM runs WHERE id IN (SELECT value FROM json_each(?))", (ids,))
    return cur.rowcount, attempts


async def delete_notifications(db: Db, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` settled chat messages (sent, given up, blocked) written before
    `cutoff`, oldest first. A pending proposal's message stays: it is edited when the
    proposal expires."""
    cur = await db.execute(
        "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications "
        "WHERE status <> 'pending' AND created_at < ? "
        "AND (proposal_id IS NULL OR proposal_id NOT IN "
        "  (SELECT id FROM proposals WHERE status = 'pending')) "
        "ORDER BY created_at LIMIT ?)",
        (to_db_time(cutoff), limit),
    )
    # The sinks' copies go with them: settled ones only (a pending one is still owed).
    await db.execute(
        "DELETE FROM sink_deliveries WHERE status <> 'pending' AND created_at < ?",
        (to_db_time(cutoff),),
    )
    return cur.rowcount
