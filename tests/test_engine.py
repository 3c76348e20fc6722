"""The engine over a real SQLite file and a real agent stub on 127.0.0.1, with a fake clock."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock, SystemClock
from bench import seed
from bot.demo_kit.agent_stub import AgentStub, refused_url
from scheduler.dispatching import Dispatcher, DispatchRequest, DispatchResult
from scheduler.engine import Engine, EngineConfig
from scheduler.engine_store import BudgetPause, FinishedAttempt
from scheduler.errors import UnreadableSchedule
from scheduler.models import (
    Action,
    MissedRunPolicy,
    Owner,
    Policies,
    RetryPolicy,
    RunStatus,
    RunTrigger,
    TimeoutPolicy,
)
from scheduler.planning import FirePlan
from scheduler.service import ScheduleService, TriggerSpec
from storage.sqlite_store import SqliteStore

CHAT = 4242
ADA = Owner(id=4242, first_name="Ada")
DAILY_9 = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def keys(stub: AgentStub) -> list[str]:
    return [r.headers["idempotency-key"] for r in stub.requests]


def make_engine(
    store: SqliteStore, clock: FakeClock, dispatcher: Dispatcher, **config: object
) -> Engine:
    return Engine(
        store.engine,
        clock,
        dispatcher,
        config=EngineConfig(**config),  # type: ignore[arg-type]
        rng=random.Random(7),
    )


async def create_daily(
    service: ScheduleService, policies: Policies | None = None, name: str = "Daily brief"
) -> str:
    schedule = await service.create_schedule(
        CHAT,
        ADA,
        name=name,
        trigger=DAILY_9,
        action=Action(template="daily_brief"),
        policies=policies,
    )
    return schedule.id


async def test_a_daily_schedule_fires_once_at_its_time_with_the_synthetic_update(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
) -> None:
    sid = await create_daily(service)
    engine = make_engine(store, clock, dispatcher)

    await engine.run_until_idle()  # 08:00 Berlin: not yet
    assert agent_stub.requests == []

    await clock.set(utc("2026-11-23T08:00:00Z"))  # 09:00 Berlin
    await engine.run_until_idle()
    await engine.run_until_idle()  # a second pass at the same instant adds nothing
    assert keys(agent_stub) == [f"{sid}:2026-11-23T08:00:00Z"]
    update = agent_stub.requests[0].json
    assert update["message"]["text"].startswith("Prepare my daily brief for Monday 23 November")
    assert update["message"]["from"]["id"] == ADA.id
    assert agent_stub.requests[0].headers["x-telegram-bot-api-secret-token"] == "stub-secret"

    [run] = await service.history(CHAT, sid)
    assert (run.status, run.trigger, run.attempt) == (RunStatus.SUCCEEDED, RunTrigger.SCHEDULE, 1)
    schedule = await service.get_schedule(CHAT, sid)
    assert schedule.next_run_at == utc("2026-11-24T08:00:00Z")
    await engine.shutdown()


@pytest.mark.parametrize(
    ("policy", "expected_runs", "expected_skipped"),
    [
        (MissedRunPolicy.SKIP, [], 3),
        (MissedRunPolicy.CATCH_UP_ONCE, ["2026-11-25T08:00:00Z"], 2),
        (
            MissedRunPolicy.CATCH_UP_ALL,
            ["2026-11-23T08:00:00Z", "2026-11-24T08:00:00Z", "2026-11-25T08:00:00Z"],
            0,
        ),
    ],
)
async def test_three_days_offline_follow_the_missed_run_policy(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
    policy: MissedRunPolicy,
    expected_runs: list[str],
    expected_skipped: int,
) -> None:
    sid = await create_daily(service, Policies(missed_run=policy))
    # The engine is not running for three days; it starts on the fourth morning
    # before that day's fire (09:00 Berlin = 08:00 UTC).
    await clock.set(utc("2026-11-26T07:30:00Z"))
    engine = make_engine(store, clock, dispatcher)
    await engine.run_until_idle()

    assert keys(agent_stub) == [f"{sid}:{t}" for t in expected_runs]
    runs = sorted(await service.history(CHAT, sid), key=lambda r: r.scheduled_for)
    assert [r.scheduled_for for r in runs] == [
        utc("2026-11-23T08:00:00Z"),
        utc("2026-11-24T08:00:00Z"),
        utc("2026-11-25T08:00:00Z"),
    ]
    skipped = [r for r in runs if r.status is RunStatus.SKIPPED]
    assert len(skipped) == expected_skipped
    assert all(r.error and r.error.startswith("missed") for r in skipped)
    ran = [r for r in runs if r.status is RunStatus.SUCCEEDED]
    assert [r.trigger for r in ran] == [RunTrigger.CATCH_UP] * len(expected_runs)
    # Nothing more fires until the next real window.
    assert (await service.get_schedule(CHAT, sid)).next_run_at == utc("2026-11-26T08:00:00Z")
    await engine.shutdown()


async def test_catch_up_all_is_capped_and_says_so(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
) -> None:
    sid = await create_daily(
        service, Policies(missed_run=MissedRunPolicy.CATCH_UP_ALL, catch_up_cap=2)
    )
    await clock.advance(timedelta(days=5, minutes=30))
    engine = make_engine(store, clock, dispatcher)
    await engine.run_until_idle()
    runs = await service.history(CHAT, sid)
    assert len(agent_stub.requests) == 2
    assert sum(r.status is RunStatus.SKIPPED for r in runs) == 3
    assert all("cap of 2" in (r.error or "") for r in runs if r.status is RunStatus.SKIPPED)
    await engine.shutdown()


async def test_agent_500_retries_with_backoff_then_dead_and_trips_after_three(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
) -> None:
    agent_stub.respond_with(500)
    sid = await create_daily(service)
    engine = make_engine(store, clock, dispatcher)

    for day in range(3):
        fire = utc("2026-11-23T08:00:00Z") + timedelta(days=day)
        await clock.set(fire)
        await engine.run_until_idle()
        [run] = [r for r in await service.history(CHAT, sid) if r.scheduled_for == fire]
        assert run.status is RunStatus.FAILED and run.attempt == 1
        # Exponential backoff with jitter: 30 s nominal, at least half of it.
        assert timedelta(seconds=15) <= run.next_attempt_at - fire <= timedelta(seconds=30)  # type: ignore[operator]
        await clock.set(run.next_attempt_at)  # type: ignore[arg-type]
        await engine.run_until_idle()
        run = await service.get_run(CHAT, run.id)
        assert run.status is RunStatus.FAILED and run.attempt == 2
        assert run.next_attempt_at is not None
        assert timedelta(seconds=30) <= run.next_attempt_at - clock.now() <= timedelta(seconds=60)
        await clock.set(run.next_attempt_at)
        await engine.run_until_idle()
        run = await service.get_run(CHAT, run.id)
        assert run.status is RunStatus.DEAD and run.attempt == 3
        assert run.error == "The agent answered HTTP 500."
        attempts = await store.runs.attempts(CHAT, run.id)
        assert [a.status for a in attempts] == [RunStatus.FAILED, RunStatus.FAILED, RunStatus.DEAD]

    schedule = await service.get_schedule(CHAT, sid)
    assert schedule.tripped and schedule.consecutive_failures == 3
    assert len(agent_stub.requests) == 9
    assert len(agent_stub.count_by_key()) == 3  # three fires, each retried under its own key

    # Tripped: the next days do not fire at all, even once the agent is healthy.
    agent_stub.respond_with(200)
    await clock.advance(timedelta(days=2))
    await engine.run_until_idle()
    assert len(agent_stub.requests) == 9
    assert [r.id for r in await service.dead_letters(CHAT)][:3]

    # Resume fires only future windows; the two that passed while tripped are on
    # record as skipped.
    result = await service.resume(CHAT, sid)
    resumed = result.schedule
    assert result.skipped_while_paused == 2
    passed = [r for r in await service.history(CHAT, sid) if r.status is RunStatus.SKIPPED]
    assert [r.error for r in passed] == ["circuit breaker tripped"] * 2
    assert not resumed.tripped and resumed.next_run_at is not None
    assert resumed.next_run_at > clock.now()
    await clock.set(resumed.next_run_at)
    await engine.run_until_idle()
    assert len(agent_stub.requests) == 10
    assert (await service.get_schedule(CHAT, sid)).consecutive_failures == 0
    await engine.shutdown()


class RecordingNotifier:
    def __init__(self) -> None:
        self.finished: list[FinishedAttempt] = []
        self.tripped: list[FinishedAttempt] = []
        self.missed: list[FirePlan] = []
        self.awaiting: list[FirePlan] = []
        self.quarantined: list[UnreadableSchedule] = []
        self.over_budget: list[BudgetPause] = []

    async def run_finished(self, finished: FinishedAttempt) -> None:
        self.finished.append(finished)

    async def schedule_tripped(self, finished: FinishedAttempt) -> None:
        self.tripped.append(finished)

    async def fires_missed(self, plan: FirePlan) -> None:
        self.missed.append(plan)

    async def runs_awaiting_approval(self, plan: FirePlan) -> None:
        self.awaiting.append(plan)

    async def schedule_quarantined(self, broken: UnreadableSchedule) -> None:
        self.quarantined.append(broken)

    async def schedule_over_budget(self, paused: BudgetPause) -> None:
        self.over_budget.append(paused)


async def test_the_operator_hears_of_a_trip_once_and_of_missed_fires(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
) -> None:
    agent_stub.respond_with(500)
    sid = await create_daily(
        service, Policies(retry=RetryPolicy(max_attempts=1), missed_run=MissedRunPolicy.SKIP)
    )
    notifier = RecordingNotifier()
    engine = Engine(store.engine, clock, dispatcher, notifier=notifier)
    for day in range(4):
        await clock.set(utc("2026-11-23T08:00:00Z") + timedelta(days=day))
        await engine.run_until_idle()
    assert [f.run.status for f in notifier.finished] == [RunStatus.DEAD] * 3
    [trip] = notifier.tripped
    assert trip.schedule.id == sid and trip.schedule.tripped
    assert trip.schedule.consecutive_failures == 3

    # Resumed, then offline for three days: one summary of three missed fires.
    await service.resume(CHAT, sid)
    await clock.advance(timedelta(days=3, hours=1))
    agent_stub.respond_with(200)
    await engine.run_until_idle()
    [summary] = notifier.missed
    assert (summary.schedule_id, summary.chat_id, summary.missed) == (sid, CHAT, 3)
    await engine.shutdown()


async def test_dispatch_concurrency_is_bounded(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
) -> None:
    current = peak = 0

    async def track(_: object) -> int:
        nonlocal current, peak
        current += 1
        peak = max(peak, current)
        await asyncio.sleep(0.02)
        current -= 1
        return 200

    agent_stub.respond_with(track)
    for i in range(20):
        await create_daily(service, name=f"s{i}")
    await clock.set(utc("2026-11-23T08:00:00Z"))
    engine = make_engine(store, clock, dispatcher, max_concurrency=4)
    await engine.run_until_idle()
    assert len(agent_stub.requests) == 20
    assert peak == 4
    await engine.shutdown()


async def test_a_success_resets_the_failure_streak(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
) -> None:
    once = Policies(retry=RetryPolicy(max_attempts=1))
    sid = await create_daily(service, once)
    engine = make_engine(store, clock, dispatcher)
    for day, status in enumerate([500, 500, 200, 500, 500]):
        agent_stub.respond_with(status)
        await clock.set(utc("2026-11-23T08:00:00Z") + timedelta(days=day))
        await engine.run_until_idle()
    schedule = await service.get_schedule(CHAT, sid)
    assert not schedule.tripped
    assert schedule.consecutive_failures == 2
    await engine.shutdown()


async def test_refused_connections_retry_then_dead(
    service: ScheduleService, store: SqliteStore, clock: FakeClock
) -> None:
    sid = await create_daily(service)
    async with HttpAgentDispatcher(url=refused_url()) as refusing:
        engine = make_engine(store, clock, refusing)
        await clock.set(utc("2026-11-23T08:00:00Z"))
        for _ in range(3):
            await engine.run_until_idle()
            [run] = await service.history(CHAT, sid)
            if run.next_attempt_at is not None and run.status is RunStatus.FAILED:
                await clock.set(run.next_attempt_at)
        [run] = await service.history(CHAT, sid)
        assert run.status is RunStatus.DEAD and run.attempt == 3
        assert "connect" in (run.error or "").lower() or "refused" in (run.error or "").lower()
        await engine.shutdown()


class _HangingDispatcher:
    """A dispatcher that never answers and keeps no deadline of its own."""

    limits_own_time = False

    async def dispatch(self, request: DispatchRequest, *, timeout: float) -> DispatchResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_dispatcher_without_its_own_deadline_is_cut_off_by_the_engine(
    service: ScheduleService, store: SqliteStore, clock: FakeClock
) -> None:
    schedule_id = await create_daily(
        service, Policies(timeout_seconds=0.2, timeout_policy=TimeoutPolicy.ASK), name="hangs"
    )
    engine = make_engine(store, clock, _HangingDispatcher())
    await clock.set(utc("2026-11-23T08:00:00Z"))
    await asyncio.wait_for(engine.run_until_idle(), 10)
    [run] = await service.history(CHAT, schedule_id)
    assert run.status is RunStatus.UNKNOWN
    assert run.error == "timed out after 0.2 s"
    await engine.shutdown()


async def test_timeouts_retry_with_the_same_key_or_ask_the_operator(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
) -> None:
    agent_stub.hang()
    retrying = await create_daily(
        service, Policies(timeout_seconds=0.3, retry=RetryPolicy(max_attempts=2)), name="retry"
    )
    asking = await create_daily(
        service, Policies(timeout_seconds=0.3, timeout_policy=TimeoutPolicy.ASK), name="ask"
    )
    engine = make_engine(store, clock, dispatcher)
    await clock.set(utc("2026-11-23T08:00:00Z"))
    await engine.run_until_idle()
    [asked] = await service.history(CHAT, asking)
    assert asked.status is RunStatus.UNKNOWN  # the agent may have acted: never doubled blindly
    [retried] = await service.history(CHAT, retrying)
    assert retried.status is RunStatus.FAILED
    await clock.set(retried.next_attempt_at)  # type: ignore[arg-type]
    await engine.run_until_idle()
    retried = await service.get_run(CHAT, retried.id)
    assert retried.status is RunStatus.DEAD
    assert "did not answer within 0.3 s" in (retried.error or "")
    counts = agent_stub.count_by_key()
    assert counts[f"{retrying}:2026-11-23T08:00:00Z"] == 2
    assert counts[f"{asking}:2026-11-23T08:00:00Z"] == 1

    # The operator retries the uncertain one: same key again, and it succeeds.
    agent_stub.respond_with(200)
    await service.retry(CHAT, asked.id)
    await engine.run_until_idle()
    assert (await service.get_run(CHAT, asked.id)).status is RunStatus.SUCCEEDED
    assert agent_stub.count_by_key()[f"{asking}:2026-11-23T08:00:00Z"] == 2
    await engine.shutdown()


async def test_graceful_stop_finishes_in_time_or_puts_work_back(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
) -> None:
    agent_stub.hang()
    sid = await create_daily(service)
    await clock.set(utc("2026-11-23T08:00:00Z"))
    engine = make_engine(store, clock, dispatcher, shutdown_grace=0.2)
    loop = asyncio.create_task(engine.run_forever())
    await agent_stub.wait_for_requests(1)
    engine.request_stop()
    await loop
    [run] = await service.history(CHAT, sid)
    assert run.status is RunStatus.PENDING and run.attempt == 0

    agent_stub.respond_with(200)
    second = make_engine(store, clock, dispatcher)
    await second.run_until_idle()
    [run] = await service.history(CHAT, sid)
    assert run.status is RunStatus.SUCCEEDED
    assert agent_stub.count_by_key() == {f"{sid}:2026-11-23T08:00:00Z": 2}
    await second.shutdown()


class _SleepWatch(FakeClock):
    """A FakeClock that tells when someone sleeps on it until a given instant."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self._deadlines: list[datetime] = []
        self._slept = asyncio.Event()

    async def sleep_until(self, deadline: datetime, wake: asyncio.Event) -> None:
        self._deadlines.append(deadline)
        self._slept.set()
        await super().sleep_until(deadline, wake)

    async def until_asleep(self, deadline: datetime) -> None:
        async with asyncio.timeout(5):
            while deadline not in self._deadlines:
                self._slept.clear()
                await self._slept.wait()


async def test_idle_engine_sleeps_until_the_next_fire(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
) -> None:
    await create_daily(service)
    watched = _SleepWatch(clock.now())
    nap = timedelta(minutes=5)
    engine = make_engine(
        store, watched, dispatcher, heartbeat_every=timedelta(hours=1), max_sleep=nap
    )
    loop = asyncio.create_task(engine.run_forever())
    # No polling while nothing is due: the loop goes to sleep on its clock for its
    # longest nap after a tick or two.
    await watched.until_asleep(watched.now() + nap)
    assert engine.ticks <= 2
    await watched.set(utc("2026-11-23T08:00:00Z"))
    await agent_stub.wait_for_requests(1)
    engine.request_stop()
    await loop


async def test_a_new_schedule_wakes_the_sleeping_loop(
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
) -> None:
    watched = _SleepWatch(clock.now())
    nap = timedelta(minutes=5)
    engine = make_engine(
        store, watched, dispatcher, heartbeat_every=timedelta(hours=1), max_sleep=nap
    )
    service = ScheduleService(store, watched, on_change=engine.wake)
    loop = asyncio.create_task(engine.run_forever())
    await watched.until_asleep(watched.now() + nap)
    schedule = await service.create_schedule(
        CHAT, ADA, name="now", trigger=DAILY_9, action=Action(text="hi")
    )
    await service.run_now(CHAT, schedule.id)
    await agent_stub.wait_for_requests(1, timeout=2)
    engine.request_stop()
    await loop


async def test_openai_mode_stores_the_answer_and_feeds_it_to_the_next_prompt(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    agent_stub: AgentStub,
) -> None:
    weekly = await service.create_schedule(
        CHAT,
        ADA,
        name="Weekly review",
        trigger=TriggerSpec(kind="cron", cron="0 17 * * fri", timezone="Europe/Berlin"),
        action=Action(template="weekly_review"),
    )
    usage = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    agent_stub.openai_answer("Shipped the engine; the bot slipped.", usage=usage)
    async with HttpAgentDispatcher(
        url=agent_stub.openai_url, mode="openai", token="agent-token"
    ) as openai:
        engine = make_engine(store, clock, openai)
        await clock.set(utc("2026-11-27T16:00:00Z"))  # Friday 17:00 Berlin
        await engine.run_until_idle()
        await clock.set(utc("2026-12-04T16:00:00Z"))
        await engine.run_until_idle()
        await engine.shutdown()

    first, second = (r.json for r in agent_stub.requests)
    assert first["messages"][-1]["content"].startswith(
        "Run my weekly review for the week ending Friday 27 November (Europe/Berlin)"
    )
    assert "(no earlier output)" in first["messages"][-1]["content"]
    assert "Shipped the engine; the bot slipped." in second["messages"][-1]["content"]
    assert "Weekly review" in first["messages"][0]["content"]
    assert agent_stub.requests[0].headers["authorization"] == "Bearer agent-token"
    latest, _ = await service.history(CHAT, weekly.id)
    assert latest.output == "Shipped the engine; the bot slipped."
    assert latest.token_usage == usage


class _GatedDispatcher:
    """Answers 200 once `gate` opens; notes each request."""

    limits_own_time = False

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.seen: list[str] = []

    async def dispatch(self, request: DispatchRequest, *, timeout: float) -> DispatchResult:
        self.seen.append(request.schedule_id)
        await self.gate.wait()
        return DispatchResult(status_code=200)


async def _two_fires_one_slot(
    service: ScheduleService, store: SqliteStore, clock: FakeClock, **config: object
) -> tuple[Engine, _GatedDispatcher, str, str]:
    """Two schedules due at 09:00 Berlin and one slot: after one tick the engine has
    started one (the first id) and not the other (the second)."""
    first = await create_daily(service, name="First")
    second = await create_daily(service, name="Second")
    gated = _GatedDispatcher()
    engine = make_engine(store, clock, gated, max_concurrency=1, **config)
    await clock.set(utc("2026-11-23T08:00:00Z"))
    await engine.startup()
    await engine._tick(clock.now())
    await asyncio.sleep(0)
    [started] = gated.seen
    return engine, gated, started, second if started == first else first


async def test_a_fire_waits_unclaimed_for_a_slot_then_starts_in_its_claim(
    service: ScheduleService, store: SqliteStore, clock: FakeClock
) -> None:
    engine, gated, started, waiting = await _two_fires_one_slot(service, store, clock)
    # One slot: one fire started straight from its claim (running, no pending step);
    # the other schedule is left due, unclaimed, while it waits for the slot.
    [run] = await service.history(CHAT, started)
    assert (run.status, run.attempt) == (RunStatus.RUNNING, 1)
    assert await service.history(CHAT, waiting) == []
    held = await service.get_schedule(CHAT, waiting)
    assert held.next_run_at == utc("2026-11-23T08:00:00Z")
    # The slot frees: the held fire is claimed and started, on time, in one step.
    gated.gate.set()
    await engine.run_until_idle()
    assert sorted(gated.seen) == sorted([started, waiting])
    for sid in (started, waiting):
        [run] = await service.history(CHAT, sid)
        assert (run.status, run.trigger) == (RunStatus.SUCCEEDED, RunTrigger.SCHEDULE)
    await engine.shutdown()


async def test_a_fire_held_past_the_hold_is_queued_and_a_stop_records_the_rest(
    service: ScheduleService, store: SqliteStore, clock: FakeClock
) -> None:
    engine, gated, _, waiting = await _two_fires_one_slot(
        service, store, clock, hold_for_slot=timedelta(seconds=10)
    )
    assert await service.history(CHAT, waiting) == []
    # Held longer than the hold: written as a pending run (in the ledger), still on time.
    await clock.advance(timedelta(seconds=11))
    await engine._tick(clock.now())
    [queued] = await service.history(CHAT, waiting)
    assert (queued.status, queued.trigger) == (RunStatus.PENDING, RunTrigger.SCHEDULE)
    assert queued.scheduled_for == utc("2026-11-23T08:00:00Z")
    gated.gate.set()
    await engine.run_until_idle()
    [done] = await service.history(CHAT, waiting)
    assert done.status is RunStatus.SUCCEEDED
    await engine.shutdown()


async def test_a_stop_writes_the_fires_held_for_a_slot_as_pending(
    service: ScheduleService, store: SqliteStore, clock: FakeClock
) -> None:
    engine, _, started, waiting = await _two_fires_one_slot(
        service, store, clock, shutdown_grace=0.1
    )
    await engine.shutdown()
    # Nothing held is left only in the schedule: the next start runs it however late.
    [queued] = await service.history(CHAT, waiting)
    assert (queued.status, queued.scheduled_for) == (
        RunStatus.PENDING,
        utc("2026-11-23T08:00:00Z"),
    )
    [put_back] = await service.history(CHAT, started)
    assert put_back.status is RunStatus.PENDING


class _Instant:
    """A dispatcher whose agent accepts at once."""

    limits_own_time = True

    async def dispatch(self, request: DispatchRequest, *, timeout: float) -> DispatchResult:
        return DispatchResult(status_code=200)


class _Counting(RecordingNotifier):
    """Records, and says when `target` runs have finished."""

    def __init__(self, target: int) -> None:
        super().__init__()
        self.target = target
        self.all_done = asyncio.Event()

    async def run_finished(self, finished: FinishedAttempt) -> None:
        await super().run_finished(finished)
        if len(self.finished) >= self.target:
            self.all_done.set()


async def test_a_burst_fills_every_free_slot_on_each_turn_of_the_loop(tmp_path: Path) -> None:
    """On the real clock, a burst larger than the concurrency goes a full batch per loop
    iteration: the loop does not turn again before the runs it just started had their
    turn (an iteration then finds no free slot and claims nothing, at the cost of its
    reads and an empty transaction). 64 slots: a claim that plans more than 50 fires
    lets the loop turn once, and the runs of the batch before then finish, waking it."""
    n, slots = 1280, 64
    db = tmp_path / "burst.db"
    await asyncio.to_thread(seed.seed_tickler, db, n, datetime.now(UTC) - timedelta(seconds=1))
    notifier = _Counting(n)
    async with await SqliteStore.open(db) as store:
        engine = Engine(
            store.engine,
            SystemClock(),
            _Instant(),
            config=EngineConfig(max_concurrency=slots),
            notifier=notifier,
        )
        loop = asyncio.create_task(engine.run_forever())
        await asyncio.wait_for(notifier.all_done.wait(), 30)
        engine.request_stop()
        await loop
    assert len(notifier.finished) == n
    assert engine.ticks <= n // slots + 3


class _Staggered:
    """An agent that answers the runs in the order they came, `gap` seconds apart, the
    first after `first` seconds; it notes the order of arrivals and answers."""

    limits_own_time = True

    def __init__(self, first: float, gap: float) -> None:
        self.first, self.gap = first, gap
        self.events: list[str] = []
        self._arrived = 0

    async def dispatch(self, request: DispatchRequest, *, timeout: float) -> DispatchResult:
        place = self._arrived
        self._arrived += 1
        self.events.append(f"in {place}")
        await asyncio.sleep(self.first + place * self.gap)
        self.events.append(f"out {place}")
        return DispatchResult(status_code=200)


async def test_with_a_slow_agent_a_freed_slot_is_refilled_without_waiting_for_a_batch(
    tmp_path: Path,
) -> None:
    """64 slots, 65 fires due, answers taking seconds: the 65th fire goes out as soon as
    the first answer frees a slot, not once a batch of slots (8) has freed, which would
    leave slots idle for a share of an answer's time each."""
    n, slots = 65, 64
    db = tmp_path / "slow.db"
    await asyncio.to_thread(seed.seed_tickler, db, n, datetime.now(UTC) - timedelta(seconds=1))
    agent = _Staggered(first=0.4, gap=0.15)
    async with await SqliteStore.open(db) as store:
        engine = Engine(
            store.engine,
            SystemClock(),
            agent,
            config=EngineConfig(max_concurrency=slots, shutdown_grace=0.2),
        )
        loop = asyncio.create_task(engine.run_forever())
        async with asyncio.timeout(30):
            while f"in {slots}" not in agent.events or "out 2" not in agent.events:
                await asyncio.sleep(0.01)
        engine.request_stop()
        await loop
    events = agent.events
    # Out of the first answer, the 65th went in before the third answer came (at 8
    # slots a batch, it would have waited for the eighth).
    assert events.index("out 0") < events.index(f"in {slots}") < events.index("out 2")
