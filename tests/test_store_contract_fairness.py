"""Fairness across chats, on every store: one chat's thousands of due fires do not hold
back another chat's single fire (it is in the first claim batch, and among the first to
get a slot)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bench.seed import tickler_rows
from scheduler.planning import plan_due_fires
from storage.bundle import SqlStore
from storage.codec import SCHEDULE_COLUMNS
from tests import test_store_contract as contract

new_location = contract.new_location
location = contract.location
store = contract.store

DUE = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
_CHAT = SCHEDULE_COLUMNS.replace(" ", "").split(",").index("chat_id")
_ID = SCHEDULE_COLUMNS.replace(" ", "").split(",").index("id")


async def seed(store: SqlStore, busy: int) -> str:
    """`busy` schedules of chat 1 and one of chat 2 (its id sorts after all of theirs),
    all due at the same instant; the id of chat 2's."""
    rows = [list(r) for r in tickler_rows(busy + 1, DUE)]
    rows[-1][_CHAT], rows[-1][_ID] = 2, "zzzz-chat-2"
    placeholders = ", ".join("?" * len(rows[0]))
    async with store.connection.write() as db:
        await db.executemany(
            f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES ({placeholders})",
            [tuple(r) for r in rows],
        )
    return "zzzz-chat-2"


async def test_another_chats_single_fire_is_in_the_first_batch(store: SqlStore) -> None:
    other = await seed(store, 3000)
    claimed = await store.engine.claim(DUE, 500, plan_due_fires, owner="A", start=4)
    ids = [p.schedule_id for p in claimed.plans]
    assert len(ids) == 500 and claimed.more
    assert other in ids
    # Among the first to get a slot, not queued behind chat 1's backlog.
    assert other in {a.run.schedule_id for a in claimed.started}


async def test_one_chat_alone_is_claimed_in_due_order(store: SqlStore) -> None:
    rows = tickler_rows(1200, DUE)
    placeholders = ", ".join("?" * len(rows[0]))
    async with store.connection.write() as db:
        await db.executemany(
            f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES ({placeholders})", rows
        )
    seen: list[str] = []
    while True:
        claimed = await store.engine.claim(DUE, 500, plan_due_fires, owner="A", start=0)
        seen += [p.schedule_id for p in claimed.plans]
        if not claimed.more:
            break
    assert set(seen) == {str(r[_ID]) for r in rows}  # each once
    assert len(seen) == len(set(seen)) == 1200


async def test_a_fire_due_in_the_middle_of_a_backlog_waits_one_batch_at_most(
    store: SqlStore,
) -> None:
    rows = tickler_rows(2000, DUE)
    placeholders = ", ".join("?" * len(rows[0]))
    async with store.connection.write() as db:
        await db.executemany(
            f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES ({placeholders})", rows
        )
    first = await store.engine.claim(DUE, 500, plan_due_fires, owner="A", start=0)
    assert first.more
    later = DUE + timedelta(seconds=1)
    [row] = [list(r) for r in tickler_rows(1, later)]
    row[_CHAT], row[_ID] = 2, "zzzz-chat-2"
    async with store.connection.write() as db:
        await db.execute(f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES ({placeholders})", row)
    second = await store.engine.claim(later, 500, plan_due_fires, owner="A", start=0)
    assert "zzzz-chat-2" in [p.schedule_id for p in second.plans]


async def test_a_fire_due_in_the_middle_of_a_fresh_backlog_waits_one_batch_at_most(
    store: SqlStore,
) -> None:
    """As the engine claims: fires younger than the hold wait for slots, so each claim
    reads only what can start; another chat's fire coming due meanwhile is still
    among the next claim's."""
    rows = tickler_rows(2000, DUE)
    placeholders = ", ".join("?" * len(rows[0]))
    async with store.connection.write() as db:
        await db.executemany(
            f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES ({placeholders})", rows
        )
    hold = timedelta(seconds=10)
    first = await store.engine.claim(
        DUE, 500, plan_due_fires, owner="A", start=64, hold_until=DUE - hold
    )
    assert first.more and len(first.started) == 64
    later = DUE + timedelta(seconds=1)
    [row] = [list(r) for r in tickler_rows(1, later)]
    row[_CHAT], row[_ID] = 2, "zzzz-chat-2"
    async with store.connection.write() as db:
        await db.execute(f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES ({placeholders})", row)
    second = await store.engine.claim(
        later, 500, plan_due_fires, owner="A", start=64, hold_until=later - hold
    )
    assert "zzzz-chat-2" in {a.run.schedule_id for a in second.started}
