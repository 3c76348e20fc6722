"""History retention: once a day, finished runs, their attempts and settled chat
messages older than RETENTION_DAYS are deleted (see `OperationsRepository.prune_history` for
which rows go), so the database stops growing under a steady load. A loop beside the
engine (bot/sweeps.py), started in post_init and cancelled in post_stop.

SQLite puts the pages of deleted rows on its free list and fills them with new rows
before it grows the file, so the file levels off once a day's deletions match a day's
writes; docs/reliability.md has the measurement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from bot.sweeps import sweep_forever
from scheduler.clock import Clock
from scheduler.repositories import Pruned
from storage.bundle import SqlStore

__all__ = ["KEEP_RUNS_PER_SCHEDULE", "PRUNE_BATCH", "PRUNE_EVERY", "prune_history_forever"]

log = logging.getLogger("tickler.retention")

#: Each schedule's latest runs stay whatever their age, so /history of a schedule
#: that fires rarely (yearly) still shows its recent record.
KEEP_RUNS_PER_SCHEDULE = 20
#: Rows per transaction: small enough that the engine, waiting for the store between
#: two of them, is held up for milliseconds.
PRUNE_BATCH = 500
PRUNE_EVERY = timedelta(days=1)


async def prune_history_forever(
    store: SqlStore,
    clock: Clock,
    retention: timedelta,
    on_pruned: Callable[[Pruned], None] = lambda pruned: None,
) -> None:
    """Until cancelled: a pass at start, then one every PRUNE_EVERY (engine clock)."""
    next_pass: datetime | None = None

    async def sweep(now: datetime) -> datetime | None:
        nonlocal next_pass
        if next_pass is not None and now < next_pass:
            return next_pass
        pruned = await store.operations.prune_history(
            now - retention, keep=KEEP_RUNS_PER_SCHEDULE, batch=PRUNE_BATCH
        )
        log.info(
            "history pruned",
            extra={
                "days": retention.days,
                "runs": pruned.runs,
                "attempts": pruned.attempts,
                "notifications": pruned.notifications,
            },
        )
        on_pruned(pruned)
        next_pass = now + PRUNE_EVERY
        return next_pass

    await sweep_forever(sweep, clock, what="pruning history")
