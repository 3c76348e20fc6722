"""The engine when things go wrong around it: a locked or failing database, a stalled
sibling, one schedule's backlog, a tripped schedule the operator wants to run anyway."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from scheduler.engine import Engine, EngineConfig
from scheduler.engine_store import ClaimedFires, FinishedAttempt, Planner
from scheduler.models import (
    Action,
    MissedRunPolicy,
    Owner,
    Policies,
    RetryPolicy,
    RunStatus,
)
from scheduler.service import ScheduleService, TriggerSpec
from storage import database
from storage.engine_store import SqlEngineStore
from storage.sqlite_store import SqliteStore

CHAT = 9
ADA = Owner(id=9, first_name="Ada")
T0 = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


def every(seconds: int, start: datetime) -> TriggerSpec:
    return TriggerSpec(kind="interval", every_seconds=seconds, start_at=start)


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


class FlakyStore(SqlEngineStore):
    """A real store whose chosen operations fail a given number of times."""

    def __init__(self, inner: SqliteStore, **failures: int) -> None:
        super().__init__(inner.connection)
        self.failures = failures

    def _fail(self, name: str) -> None:
        if self.failures.get(name, 0) > 0:
            self.failures[name] -= 1
            raise sqlite3.OperationalError("database is locked")

    async def claim(
        self,
        now: datetime,
        limit: int,
        plan: Planner,
        *,
        owner: str,
        start: int,
        hold_until: datetime | None = None,
        settling: Collection[str] = (),
    ) -> ClaimedFires:
        self._fail("claim")
        return await super().claim(
            now, limit, plan, owner=owner, start=start, hold_until=hold_until, settling=settling
        )

    async def finish(
        self, items: Any, owner: str, *, trip_after: int
    ) -> list[FinishedAttempt | None]:
        self._fail("finish")
        return await super().finish(items, owner, trip_after=trip_after)


async def test_an_outcome_that_cannot_be_written_at_once_is_written_later(
    store: SqliteStore, clock: FakeClock, dispatcher: HttpAgentDispatcher, agent_stub: AgentStub
) -> None:
    flaky = FlakyStore(store, finish=2)
    service = ScheduleService(store, clock)
    s = await service.create_schedule(
        CHAT, ADA, name="x", trigger=every(3600, T0 + timedelta(minutes=1)), action=Action(text="x")
    )
    engine = Engine(flaky, clock, dispatcher)
    await clock.advance(timedelta(minutes=1))
    await engine.run_until_idle()
    [run] = await service.history(CHAT, s.id)
    assert run.status is RunStatus.SUCCEEDED and run.attempt == 1
    assert len(agent_stub.requests) == 1
    # The next fire is not blocked by a run stuck in `running`.
    await clock.advance(timedelta(hours=1))
    await engine.run_until_idle()
    assert [r.status for r in await service.history(CHAT, s.id)] == [RunStatus.SUCCEEDED] * 2
    await engine.shutdown()


async def test_the_loop_survives_a_locked_database(
    store: SqliteStore, clock: FakeClock, dispatcher: HttpAgentDispatcher, agent_stub: AgentStub
) -> None:
    flaky = FlakyStore(store, claim=1)
    service = ScheduleService(store, clock)
    await service.create_schedule(
        CHAT, ADA, name="x", trigger=every(3600, T0), action=Action(text="x")
    )
    engine = Engine(flaky, clock, dispatcher)
    loop = asyncio.create_task(engine.run_forever())
    await until(lambda: flaky.failures["claim"] == 0)  # the claim failed
    await clock.advance(timedelta(seconds=5))  # past the back-off
    await agent_stub.wait_for_requests(1)
    assert not loop.done()  # the failed iteration was logged, not fatal
    engine.request_stop()
    await loop


async def test_a_stalled_sibling_on_this_host_keeps_its_runs(
    db_path: Path, clock: FakeClock, agent_stub: AgentStub
) -> None:
    release = asyncio.Event()

    async def slow(_: object) -> int:
        await release.wait()
        return 200

    agent_stub.respond_with(slow)
    a_store, b_store = await SqliteStore.open(db_path), await SqliteStore.open(db_path)
    service = ScheduleService(a_store, clock)
    await service.create_schedule(
        CHAT, ADA, name="x", trigger=every(86400, T0), action=Action(text="x")
    )
    async with (
        HttpAgentDispatcher(url=agent_stub.url) as d1,
        HttpAgentDispatcher(url=agent_stub.url) as d2,
    ):
        a = Engine(a_store.engine, clock, d1)
        b = Engine(b_store.engine, clock, d2)
        a_work = asyncio.create_task(a.run_until_idle())
        await agent_stub.wait_for_requests(1)
        # A's heartbeat goes stale (its loop is stuck in a long dispatch), but the
        # process is alive: B must not take the run over and send it again.
        await clock.advance(timedelta(minutes=10))
        await b.run_until_idle()
        assert len(agent_stub.requests) == 1
        release.set()
        await a_work
        await a.shutdown()
        await b.shutdown()
    [run] = await a_store.runs.list_for_chat(CHAT)
    assert run.status is RunStatus.SUCCEEDED and run.attempt == 1
    await a_store.close()
    await b_store.close()


async def test_one_schedules_backlog_does_not_starve_the_others(
    service: ScheduleService, store: SqliteStore, clock: FakeClock, agent_stub: AgentStub
) -> None:
    await service.create_schedule(
        CHAT,
        ADA,
        name="A",
        trigger=every(600, T0 + timedelta(minutes=1)),
        action=Action(text="A"),
        policies=Policies(missed_run=MissedRunPolicy.CATCH_UP_ALL, catch_up_cap=40),
    )
    await clock.advance(timedelta(hours=8))  # the engine was down
    await service.create_schedule(
        CHAT, ADA, name="B", trigger=every(3600, clock.now()), action=Action(text="B")
    )
    agent_stub.delay(0.01)
    async with HttpAgentDispatcher(url=agent_stub.url) as d:
        engine = Engine(store.engine, clock, d, config=EngineConfig(max_concurrency=4))
        await engine.run_until_idle()
        await engine.shutdown()
    order = [r.json["message"]["text"] for r in agent_stub.requests]
    assert len(order) == 41
    assert order.index("B") <= 1  # not behind A's forty catch-ups


async def test_run_now_and_retry_work_on_a_tripped_schedule(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
) -> None:
    agent_stub.respond_with(500)
    s = await service.create_schedule(
        CHAT,
        ADA,
        name="x",
        trigger=every(3600, T0),
        action=Action(text="x"),
        policies=Policies(retry=RetryPolicy(max_attempts=1)),
    )
    engine = Engine(store.engine, clock, dispatcher, rng=random.Random(1))
    for _ in range(3):
        await engine.run_until_idle()
        await clock.advance(timedelta(hours=1))
    assert (await store.schedules.get(CHAT, s.id)).tripped  # type: ignore[union-attr]
    agent_stub.respond_with(200)
    manual = await service.run_now(CHAT, s.id)
    dead = (await service.dead_letters(CHAT))[0]
    await service.retry(CHAT, dead.id)
    await engine.run_until_idle()
    assert (await service.get_run(CHAT, manual.id)).status is RunStatus.SUCCEEDED
    assert (await service.get_run(CHAT, dead.id)).status is RunStatus.SUCCEEDED
    # The retried run keeps the history of its first life.
    attempts = await store.runs.attempts(CHAT, dead.id)
    assert [a.status for a in attempts] == [RunStatus.DEAD, RunStatus.SUCCEEDED]
    # Still tripped: the schedule's own fires wait for /resume.
    assert (await store.schedules.get(CHAT, s.id)).tripped  # type: ignore[union-attr]
    await engine.shutdown()


async def test_a_cancelled_write_never_leaves_a_transaction_open(db_path: Path) -> None:
    store = await SqliteStore.open(db_path)
    blocker = sqlite3.connect(db_path, timeout=0.1)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    service = ScheduleService(store, FakeClock(T0))
    attempt = asyncio.create_task(
        service.create_schedule(
            CHAT, ADA, name="x", trigger=every(3600, T0), action=Action(text="x")
        )
    )
    await asyncio.sleep(0.05)
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt
    blocker.rollback()
    blocker.close()
    # The store works, and other connections can write.
    await service.create_schedule(
        CHAT, ADA, name="y", trigger=every(3600, T0), action=Action(text="y")
    )
    with sqlite3.connect(db_path, timeout=1) as other:
        other.execute("UPDATE schedules SET description = 'ok'")
    assert [s.name for s in await store.schedules.list_for_chat(CHAT)] == ["y"]
    await store.close()


async def test_an_engine_started_while_another_process_holds_the_write_lock_waits_for_it(
    db_path: Path,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 50)
    store = await SqliteStore.open(db_path)
    service = ScheduleService(store, clock)
    await service.create_schedule(
        CHAT, ADA, name="x", trigger=every(3600, T0), action=Action(text="x")
    )
    blocker = sqlite3.connect(db_path, timeout=0.1)
    blocker.execute("BEGIN IMMEDIATE")  # e.g. a backup or a migration in another process
    engine = Engine(store.engine, clock, dispatcher)
    loop = asyncio.create_task(engine.run_forever())

    def failed() -> bool:
        return any(r.getMessage().startswith("engine iteration failed") for r in caplog.records)

    await until(failed)  # registering failed past the busy timeout
    assert not loop.done()  # start-up failed and is retried, the task lives on
    assert agent_stub.requests == []
    blocker.rollback()
    blocker.close()
    await clock.advance(timedelta(seconds=40))  # past any back-off
    await agent_stub.wait_for_requests(1)
    [instance] = await store.engine.instances()
    assert instance.id == engine.instance_id and instance.stopped_at is None
    engine.request_stop()
    await loop
    [instance] = await store.engine.instances()
    assert instance.stopped_at is not None
    await store.close()
