"""The PostgreSQL server goes down under a running engine while the agent is answering,
and comes back: the operator is told once which database cannot be written (without its
password) and once that it works again, and every run ends succeeded, redelivered, if
at all, with its own idempotency key."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import SystemClock
from bot.demo_kit.agent_stub import AgentStub
from scheduler.engine import Engine, EngineConfig
from scheduler.models import Action, Owner, RunStatus
from scheduler.service import ScheduleService, TriggerSpec
from storage.postgres.store import PostgresStore
from tests import postgres

CHAT = 77
RUNS = 6

pytestmark = pytest.mark.postgres


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[postgres.Cluster]:
    """A server of this test's own: it is stopped and started under the engine."""
    why = postgres.available()
    if why is not None:
        pytest.skip(why)
    with postgres.Cluster.start(tmp_path) as c:
        yield c


async def test_a_server_restart_under_the_engine_loses_and_doubles_nothing(
    cluster: postgres.Cluster, agent_stub: AgentStub
) -> None:
    url = cluster.create_database("outage").replace("postgres@", "postgres:hunter2@")
    # The test server trades durability for speed; a crash must lose no commit here.
    cluster.psql("ALTER DATABASE outage SET synchronous_commit = on")
    store = await PostgresStore.open(url)
    told: list[str | None] = []
    store.on_write_health = told.append
    clock = SystemClock()
    service = ScheduleService(store, clock)
    dispatcher = HttpAgentDispatcher(url=agent_stub.url)
    config = EngineConfig(heartbeat_every=timedelta(seconds=1))
    engine = Engine(store.engine, clock, dispatcher, config=config)
    loop = asyncio.create_task(engine.run_forever())
    try:
        schedule = await service.create_schedule(
            CHAT,
            Owner(id=CHAT),
            name="hourly",
            trigger=TriggerSpec(kind="cron", cron="0 * * * *", timezone="UTC"),
            action=Action(text="check"),
        )
        agent_stub.delay(1.5)
        runs = [await service.run_now(CHAT, schedule.id) for _ in range(RUNS)]
        engine.wake()
        await agent_stub.wait_for_requests(1, timeout=20)
        # The agent is answering; the outcome cannot be written until the server is back.
        cluster.halt()
        await asyncio.sleep(3)
        cluster.resume()
        async with asyncio.timeout(60):
            while True:
                done = [await store.runs.get(CHAT, r.id) for r in runs]
                if all(r is not None and r.status is RunStatus.SUCCEEDED for r in done):
                    break
                await asyncio.sleep(0.25)
    finally:
        engine.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(loop, 30)
        await dispatcher.aclose()
        await store.close()
    delivered = agent_stub.count_by_key()
    # One key per run: none lost, none sent under a second key (a redelivery of an
    # attempt cut off by the outage comes again under its own).
    assert len(delivered) == RUNS and "" not in delivered
    assert told and told[0] is not None and told[-1] is None
    assert "hunter2" not in told[0] and "cannot be written" in told[0]
