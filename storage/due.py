"""When the engine next has work: the three instants it waits for, in one read."""

from __future__ import annotations

from datetime import datetime

from scheduler.engine_store import DueInstants
from scheduler.models import AWAITING_RESULT_OWNER
from storage.codec import from_db_time
from storage.sql import Db, fetch_one

__all__ = ["ACTIVE_WITH_NEXT_FIRE", "NEXT_FIRE_SQL", "earliest_ready", "read"]

# The earliest next_run_at of an active schedule, ready run (pending, or failed and due
# for a retry) and approval deadline; each answered from its own index (partial ones
# are matched by their WHERE text, which the conditions repeat word for word).
#: An active schedule with a next fire: the partial index schedules_due's WHERE text.
ACTIVE_WITH_NEXT_FIRE = (
    "enabled = 1 AND tripped = 0 AND archived_at IS NULL AND next_run_at IS NOT NULL"
)
NEXT_FIRE_SQL = f"SELECT MIN(next_run_at) FROM schedules WHERE {ACTIVE_WITH_NEXT_FIRE}"
_READY = "SELECT MIN(next_attempt_at) FROM runs WHERE status IN ('pending', 'failed')"
_DEADLINE = "SELECT MIN(next_attempt_at) FROM runs WHERE status = 'awaiting_approval'"
#: The earliest deadline of a run awaiting the agent's result (AWAITING_RESULT_OWNER).
_RESULT = "SELECT MIN(next_attempt_at) FROM runs WHERE status = 'running' AND owner = 'agent'"
assert AWAITING_RESULT_OWNER == "agent"
_SQL = f"SELECT ({NEXT_FIRE_SQL}), ({_READY}), ({_DEADLINE}), ({_RESULT})"


async def read(db: Db) -> DueInstants:
    row = await fetch_one(db, _SQL)
    if row is None:
        return DueInstants(None, None, None)
    return DueInstants(
        from_db_time(row[0]),
        from_db_time(row[1]),
        from_db_time(row[2]),
        from_db_time(row[3]),
    )


async def earliest_ready(db: Db) -> datetime | None:
    """The earliest instant a pending run or a planned retry becomes ready (inside the
    caller's transaction, unlike the snapshot `read` feeds the engine)."""
    row = await fetch_one(db, _READY)
    return None if row is None else from_db_time(row[0])
