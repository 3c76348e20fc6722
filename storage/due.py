"""When the engine next has work: the three instants it waits for, in one read."""

from __future__ import annotations

import aiosqlite

from scheduler.store import DueInstants
from storage.codec import from_db_time
from storage.database import fetch_one

__all__ = ["read"]

# The earliest next_run_at of an active schedule, ready run (pending, or failed and due
# for a retry) and approval deadline; each answered from its own index (partial ones
# are matched by their WHERE text, which the conditions repeat word for word).
_SQL = (
    "SELECT (SELECT MIN(next_run_at) FROM schedules WHERE enabled = 1 AND tripped = 0 "
    "AND archived_at IS NULL AND next_run_at IS NOT NULL), "
    "(SELECT MIN(next_attempt_at) FROM runs WHERE status IN ('pending', 'failed')), "
    "(SELECT MIN(next_attempt_at) FROM runs WHERE status = 'awaiting_approval')"
)


async def read(db: aiosqlite.Connection) -> DueInstants:
    row = await fetch_one(db, _SQL)
    if row is None:
        return DueInstants(None, None, None)
    return DueInstants(from_db_time(row[0]), from_db_time(row[1]), from_db_time(row[2]))
