"""Attempts cut off by Tickler itself (its process killed while they ran) are its own
fault, not the agent's: the run is sent again with the same key without spending its
retries or counting toward the circuit breaker, and only a run interrupted five times is
left `unknown` for the operator, who is asked what to do. Over a real SQLite file with a
fake clock; the question through the real bot."""

from __future__ import annotations

import random
from datetime import timedelta

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, BotHarness
from scheduler.engine import Engine, EngineConfig
from scheduler.engine_store import FinishedAttempt
from scheduler.ids import new_id
from scheduler.models import Action, Owner, Run, RunStatus, RunTrigger, interrupted_error
from scheduler.planning import DEFAULT_MISFIRE_GRACE, plan_due_fires
from scheduler.service import ScheduleService, TriggerSpec
from storage.sqlite_store import SqliteStore
from tests.engine_calls import claim_due_fires
from tests.test_engine import RecordingNotifier

CHAT = 4242
ADA = Owner(id=4242, first_name="Ada")


async def killed_while_running(store: SqliteStore, clock: FakeClock, process: str) -> None:
    """A process takes the schedule's ready run and dies (kill -9) before it ends: the
    run stays `running` under an engine that is gone, with its attempt counted."""
    now = clock.now()
    await claim_due_fires(
        store, now, 10, lambda s, at: plan_due_fires(s, at, DEFAULT_MISFIRE_GRACE)
    )
    [taken] = await store.engine.acquire(now, 10, process)
    assert taken.run.status is RunStatus.RUNNING


async def test_kills_during_a_run_spend_no_retry_and_trip_no_breaker_until_five_make_it_unknown(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
) -> None:
    schedule = await service.create_schedule(
        CHAT,
        ADA,
        name="Slow report",
        trigger=TriggerSpec(kind="interval", every_seconds=3600, start_at=clock.now()),
        action=Action(text="Write the report."),
    )
    notifier = RecordingNotifier()
    kills = 0

    def restarted() -> Engine:
        # A new process after each kill: its start-up reaps what the dead one left.
        return Engine(
            store.engine,
            clock,
            dispatcher,
            config=EngineConfig(trip_after=3),
            notifier=notifier,
            rng=random.Random(7),
        )

    # Three fires in a row, each killed mid-run as often as its retry budget (3), as
    # many as would trip the breaker (3) were the kills counted as the agent's failures.
    for _fire in range(3):
        for _ in range(3):
            kills += 1
            await killed_while_running(store, clock, f"killed-{kills}")
            await restarted().startup()
        engine = restarted()
        await engine.run_until_idle()
        await engine.shutdown()
        [run] = (await service.history(CHAT, schedule.id))[:1]
        assert (run.status, run.attempt) == (RunStatus.SUCCEEDED, 1)
        attempts = await store.runs.attempts(CHAT, run.id)
        assert [a.status for a in attempts] == [RunStatus.PENDING] * 3 + [RunStatus.SUCCEEDED]
        assert all(a.error and a.error.startswith("interrupted") for a in attempts[:3])
        await clock.advance(timedelta(hours=1))

    current = await service.get_schedule(CHAT, schedule.id)
    assert (current.enabled, current.tripped, current.consecutive_failures) == (True, False, 0)
    assert notifier.tripped == []
    # Each fire reached the agent once, under its own key.
    assert len(agent_stub.requests) == 3 == len(agent_stub.count_by_key())

    # A fourth fire killed five times: the operator decides, told once.
    for crash in range(1, 6):
        kills += 1
        await killed_while_running(store, clock, f"killed-{kills}")
        await restarted().startup()
        [run] = (await service.history(CHAT, schedule.id))[:1]
        expected = RunStatus.UNKNOWN if crash == 5 else RunStatus.PENDING
        assert (run.status, run.attempt) == (expected, 0), crash
        if crash < 5:
            # It keeps its place: ready from its own instant, before any newer fire.
            assert run.next_attempt_at == run.scheduled_for
    assert run.error is not None and run.error.startswith("interrupted 5 times")
    told = [f.run.status for f in notifier.finished if f.run.id == run.id]
    assert told == [RunStatus.PENDING] * 4 + [RunStatus.UNKNOWN]
    current = await service.get_schedule(CHAT, schedule.id)
    assert (current.enabled, current.tripped, current.consecutive_failures) == (True, False, 0)

    # Retried by the operator, it gets a fresh budget of interruptions too.
    await service.retry(CHAT, run.id)
    kills += 1
    await killed_while_running(store, clock, f"killed-{kills}")
    await restarted().startup()
    assert (await service.get_run(CHAT, run.id)).status is RunStatus.PENDING


async def test_a_run_interrupted_five_times_asks_the_operator_with_buttons(
    bot: BotHarness,
) -> None:
    now = bot.clock.now()
    schedule = await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name="Slow report",
        trigger=TriggerSpec(kind="interval", every_seconds=86400, start_at=now + timedelta(days=1)),
        action=Action(text="Write the report."),
    )
    run = Run(
        id=new_id(),
        schedule_id=schedule.id,
        chat_id=ALICE,
        scheduled_for=now,
        trigger=RunTrigger.SCHEDULE,
        status=RunStatus.UNKNOWN,
        error=interrupted_error(5),
        created_at=now,
        updated_at=now,
    )
    assert await bot.services.store.runs.add(run)
    await bot.services.engine.notifier.run_finished(
        FinishedAttempt(run, schedule, False, interrupted=True)
    )

    asked = await bot.alice.wait_reply(containing="Did it do the work?")
    assert "Slow report" in (asked.text or "")
    assert "cut off by Tickler stopping while it ran (not the agent's fault)" in (asked.text or "")
    assert asked.button_labels() == ["Retry", "Mark done", "Drop"]
    await bot.server.wait_answered(await bot.alice.press("Retry", asked))
    retried = await bot.services.store.runs.get(ALICE, run.id)
    assert retried is not None and retried.trigger is RunTrigger.RETRY
    assert retried.status is not RunStatus.UNKNOWN
