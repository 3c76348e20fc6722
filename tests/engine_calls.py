"""Engine-store calls tests make often, spelled through the engine store's own verbs
(none of them is a store method: the store has no method only tests use)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from scheduler.engine_store import AcquiredRun, AttemptOutcome, FinishedAttempt, Planner
from scheduler.planning import FirePlan
from scheduler.repositories import Notification, NotificationStatus
from scheduler.stores import Stores
from storage import notifications
from storage.bundle import SqlStore


async def claim_due_fires(
    store: Stores, now: datetime, limit: int, plan: Planner
) -> list[FirePlan]:
    """Claim due fires as pending runs, starting none."""
    return (await store.engine.claim(now, limit, plan, owner="", start=0)).plans


async def finish_attempt(
    store: Stores,
    acquired: AcquiredRun,
    owner: str,
    outcome: AttemptOutcome,
    *,
    trip_after: int,
) -> FinishedAttempt | None:
    [result] = await store.engine.finish([(acquired, outcome)], owner, trip_after=trip_after)
    return result


async def next_due_at(store: Stores) -> datetime | None:
    return (await store.engine.next_due()).earliest


async def next_fire_at(store: Stores) -> datetime | None:
    return (await store.engine.next_due()).fire


async def list_notifications(
    store: SqlStore,
    chat_id: int,
    *,
    statuses: Collection[NotificationStatus] | None = None,
    limit: int = 100,
) -> list[Notification]:
    """The chat's messages in the outbox, oldest first, read straight from the file."""
    async with store.connection.read() as db:
        return await notifications.list_for_chat(db, chat_id, statuses=statuses, limit=limit)
