"""Several engines on one PostgreSQL database at once, as replicas run: each fire is
claimed once and each run started once, whoever asks and however their calls
interleave (claims lock what they read, `FOR UPDATE SKIP LOCKED`)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

from scheduler.engine_store import AcquiredRun, AttemptOutcome
from scheduler.models import RunStatus
from scheduler.planning import plan_due_fires
from storage.postgres.store import PostgresStore
from tests.test_store_contract import schedule

NOW = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
SCHEDULES = 240
REPLICAS = 3


async def _work(store: PostgresStore, owner: str, started: list[str]) -> None:
    """One replica's engine rounds: claim some fires (starting some at once), acquire
    ready runs, finish what it started; until nothing is left."""
    idle = 0
    while idle < 3:
        claimed = await store.engine.claim(NOW, 16, plan_due_fires, owner=owner, start=4)
        acquired = await store.engine.acquire(NOW, 8, owner)
        mine: list[AcquiredRun] = [*claimed.started, *acquired]
        started.extend(a.run.id for a in mine)
        outcome = AttemptOutcome(RunStatus.SUCCEEDED, NOW + timedelta(seconds=1), 5)
        await store.engine.finish([(a, outcome) for a in mine], owner, trip_after=3)
        idle = idle + 1 if not claimed.plans and not mine else 0
        await asyncio.sleep(0)


async def test_replicas_claim_and_start_each_fire_once(postgres_url: str) -> None:
    stores = [await PostgresStore.open(postgres_url) for _ in range(REPLICAS)]
    try:
        for i in range(SCHEDULES):
            await stores[0].schedules.add(schedule(chat_id=1 + i % 7))
        started: list[list[str]] = [[] for _ in stores]
        await asyncio.gather(*(_work(s, f"replica-{n}", started[n]) for n, s in enumerate(stores)))
        every = Counter(run_id for part in started for run_id in part)
        runs = [
            r for chat in range(1, 8) for r in await stores[0].runs.list_for_chat(chat, limit=500)
        ]
        assert len(runs) == SCHEDULES  # one run per fire, whoever claimed it
        assert {r.status for r in runs} == {RunStatus.SUCCEEDED}
        assert set(every) == {r.id for r in runs}
        assert max(every.values()) == 1, "a run was started twice"
    finally:
        for s in stores:
            await s.close()
