"""SQL for events and the runs each one fired (migration 0015)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta

from scheduler.models import EmittedEvent, Event, Run
from storage import runs
from storage.codec import RUN_COLUMNS, from_db_time, run_from_row, to_db_time
from storage.sql import Db, Row, fetch_all, fetch_one

#: How many times a run's instant moves on by a microsecond when the schedule has a run
#: at that very instant already (two events within one microsecond): the instant is the
#: run's idempotency key, so each event's run needs its own.
_MAX_NUDGES = 1000
_EVENT_COLUMNS = "id, caller, name, idempotency_key, payload_json, received_at"


def _event(row: Row) -> Event:
    received = from_db_time(row[5])
    assert received is not None
    return Event(
        id=row[0],
        caller=row[1],
        name=row[2],
        idempotency_key=row[3],
        payload=json.loads(row[4]),
        received_at=received,
    )


async def _runs_of(db: Db, event_id: str) -> list[Run]:
    rows = await fetch_all(
        db,
        f"SELECT {', '.join('r.' + c.strip() for c in RUN_COLUMNS.split(','))} "
        "FROM runs r JOIN event_runs e ON e.run_id = r.id WHERE e.event_id = ? "
        "ORDER BY r.chat_id, r.schedule_id",
        (event_id,),
    )
    return [run_from_row(row) for row in rows]


async def find(db: Db, caller: str, key: str) -> EmittedEvent | None:
    row = await fetch_one(
        db,
        f"SELECT {_EVENT_COLUMNS} FROM events WHERE caller = ? AND idempotency_key = ?",
        (caller, key),
    )
    if row is None:
        return None
    event = _event(row)
    return EmittedEvent(event=event, runs=await _runs_of(db, event.id), repeated=True)


async def record(db: Db, event: Event) -> EmittedEvent | None:
    """Record `event`; None when it is new, else (a repeat of its key, which another
    writer may have recorded since the caller looked) the runs recorded then."""
    before = db.total_changes
    await db.execute(
        f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (caller, idempotency_key) DO NOTHING",
        (
            event.id,
            event.caller,
            event.name,
            event.idempotency_key,
            _compact(event.payload),
            to_db_time(event.received_at),
        ),
    )
    if db.total_changes != before:
        return None
    assert event.idempotency_key is not None
    found = await find(db, event.caller, event.idempotency_key)
    assert found is not None
    return found


async def add_runs(db: Db, event: Event, fired: Sequence[Run]) -> EmittedEvent:
    """Write the runs the recorded `event` fired, each linked to it."""
    written = []
    for run in fired:
        for _ in range(_MAX_NUDGES):
            if await runs.insert_many(db, [run]) == 1:
                break
            nudged = run.scheduled_for + timedelta(microseconds=1)
            # Only the key moves: the run is due when the event came, not a microsecond on.
            run = run.model_copy(update={"scheduled_for": nudged})
        else:
            continue
        written.append(run)
    if written:
        await db.executemany(
            "INSERT INTO event_runs (run_id, event_id) VALUES (?, ?)",
            [(run.id, event.id) for run in written],
        )
    return EmittedEvent(event=event, runs=written)


async def payload_of_run(db: Db, run_id: str) -> str | None:
    """The JSON payload of the event that fired the run; None if no event did."""
    row = await fetch_one(
        db,
        "SELECT v.payload_json FROM event_runs e JOIN events v ON v.id = e.event_id "
        "WHERE e.run_id = ?",
        (run_id,),
    )
    # Compact whatever way the row was written (an import writes its own JSON): the
    # prompt, and so the agent's idempotent answer, must not depend on it.
    return None if row is None else _compact(json.loads(row[0]))


def _compact(payload: object) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
