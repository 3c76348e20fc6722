"""Exactly once at volume: 10,000 schedules due in the same second, dispatched over real
loopback HTTP by one engine and by two engines sharing the SQLite file."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from scheduler.engine import Engine, EngineConfig
from scheduler.models import Action, Owner, RunStatus
from scheduler.service import Limits, ScheduleService, TriggerSpec
from storage.runs import ALL_ATTEMPTS
from storage.sqlite_store import SqliteStore

N = 10_000
#: Tuesday 24 November 2026, 07:00 UTC.
DUE = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)


async def seed(store: SqliteStore, clock: FakeClock) -> None:
    service = ScheduleService(store, clock, limits=Limits(max_schedules_per_chat=N))
    for i in range(N):
        # Spread over 100 chats, all firing at 07:00 UTC every day.
        await service.create_schedule(
            1000 + i % 100,
            Owner(id=1000 + i % 100),
            name=f"brief {i}",
            trigger=TriggerSpec(kind="cron", cron="0 7 * * *", timezone="UTC"),
            action=Action(text="Prepare the brief for {date}."),
        )


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database with the 10,000 schedules, copied for each test."""
    path = tmp_path_factory.mktemp("seed") / "seed.db"

    async def build() -> None:
        async with await SqliteStore.open(path) as store:
            await seed(store, FakeClock(DUE - timedelta(hours=1)))

    asyncio.run(build())
    return path


@pytest.mark.parametrize("engines", [1, 2])
@pytest.mark.timeout(300)
async def test_ten_thousand_due_in_one_second_are_each_dispatched_once(
    seeded_db: Path, db_path: Path, agent_stub: AgentStub, engines: int
) -> None:
    shutil.copyfile(seeded_db, db_path)
    clock = FakeClock(DUE)
    stores = [await SqliteStore.open(db_path) for _ in range(engines)]

    dispatchers = [HttpAgentDispatcher(url=agent_stub.url) for _ in range(engines)]
    workers = [
        Engine(s.engine, clock, d, config=EngineConfig(max_concurrency=64))
        for s, d in zip(stores, dispatchers, strict=True)
    ]
    await asyncio.gather(*(w.run_until_idle() for w in workers))
    # An engine that found nothing left may have stopped before the other finished.
    await asyncio.gather(*(w.run_until_idle() for w in workers))

    counts = agent_stub.count_by_key()
    assert len(agent_stub.requests) == N
    assert len(counts) == N
    assert set(counts.values()) == {1}
    assert all(key.endswith(":2026-11-24T07:00:00Z") for key in counts)

    statuses: dict[RunStatus, int] = {}
    for chat in range(1000, 1100):
        for run in await stores[0].runs.list_for_chat(chat, limit=1000):
            statuses[run.status] = statuses.get(run.status, 0) + 1
    assert statuses == {RunStatus.SUCCEEDED: N}
    if engines == 2:
        with sqlite3.connect(db_path) as raw:
            shares = dict(
                raw.execute(f"SELECT owner, COUNT(*) FROM {ALL_ATTEMPTS} AS a GROUP BY owner")
            )
        assert set(shares) == {w.instance_id for w in workers}, "both engines took a share"
        assert sum(shares.values()) == N

    for w in workers:
        await w.shutdown()
    for d in dispatchers:
        await d.aclose()
    for s in stores:
        await s.close()
