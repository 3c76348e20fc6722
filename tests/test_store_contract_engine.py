"""The engine-level guarantees, on every store: the real engine (scheduler/engine.py)
with a fake clock, posting over loopback HTTP to the agent stub, and the real services
(schedules, proposals, work items) over the `store` of tests/test_store_contract.py, once
on SQLite and once on PostgreSQL. Exactly once per fire with several engines on one
store, the missed-run policies, overlap, retries, the breaker, backfill, proposals, work
items, the outbox, and export/import round trips within and across the two stores."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from scheduler.bundles import BundleService
from scheduler.chat_agents import ChatAgentService
from scheduler.dispatching import Dispatcher
from scheduler.engine import Engine, EngineConfig
from scheduler.errors import InvalidState
from scheduler.ids import new_id
from scheduler.models import (
    Action,
    ActionKind,
    MissedRunPolicy,
    OverlapPolicy,
    Owner,
    Policies,
    RunStatus,
    RunTrigger,
    SkipReason,
    Step,
    StepKind,
)
from scheduler.proposals import Proposal, ProposalService, ProposalStatus
from scheduler.repositories import Notification, NotificationStatus
from scheduler.service import Limits, ScheduleService, TriggerSpec
from scheduler.work_item_model import WorkItemStatus
from scheduler.work_items import WorkItemService
from storage.bundle import SqlStore
from storage.export import export_database, import_export, validate_export
from storage.locations import Location, is_postgres, open_store
from tests import test_store_contract as contract
from tests.test_proposals import HALF_HOURLY, TWICE_A_DAY, ask

# The stores under test, one database each (made fresh per test).
new_location = contract.new_location
location = contract.location
store = contract.store

CHAT = 4242
ADA = Owner(id=CHAT, first_name="Ada")
ADMIN = 1001
DAILY_9 = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")
#: Monday 23 November 2026, 09:00 in Berlin; the clock starts an hour before.
NINE = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def key(schedule_id: str, fire: datetime) -> str:
    return f"{schedule_id}:{fire:%Y-%m-%dT%H:%M:%SZ}"


def keys(stub: AgentStub) -> list[str]:
    return [r.headers["idempotency-key"] for r in stub.requests]


def make_engine(
    store: SqlStore, clock: FakeClock, dispatcher: Dispatcher, *, max_concurrency: int = 64
) -> Engine:
    config = EngineConfig(max_concurrency=max_concurrency)
    return Engine(store.engine, clock, dispatcher, config=config, rng=random.Random(7))


@pytest.fixture
def service(store: SqlStore, clock: FakeClock) -> ScheduleService:
    return ScheduleService(store, clock, default_timezone="Europe/Berlin")


@pytest.fixture
async def engine(
    store: SqlStore, clock: FakeClock, dispatcher: HttpAgentDispatcher
) -> AsyncIterator[Engine]:
    e = make_engine(store, clock, dispatcher)
    yield e
    await e.shutdown()


async def daily(
    service: ScheduleService,
    policies: Policies | None = None,
    *,
    name: str = "Daily brief",
    chat: int = CHAT,
) -> str:
    schedule = await service.create_schedule(
        chat,
        ADA,
        name=name,
        trigger=DAILY_9,
        action=Action(text="Prepare my brief for {date}."),
        policies=policies,
    )
    return schedule.id


# --- exactly once per fire --------------------------------------------------------------------
async def test_engines_racing_on_one_store_dispatch_every_fire_exactly_once(
    store: SqlStore, location: Location, clock: FakeClock, agent_stub: AgentStub
) -> None:
    """Three engines, each on its own connections to the one database (as three replicas
    would be), claim and start the same 24 schedules' fires at once, two days running:
    every fire is one run, run once, and reaches the agent once under its key."""
    service = ScheduleService(store, clock, limits=Limits(max_schedules_per_chat=100))
    chats = [CHAT + i % 3 for i in range(24)]
    sids = [await daily(service, name=f"brief {i}", chat=c) for i, c in enumerate(chats)]
    agent_stub.delay(0.005)  # answers overlap, so the engines claim while others run
    stores = [store, await open_store(location), await open_store(location)]
    dispatchers = [HttpAgentDispatcher(url=agent_stub.url) for _ in stores]
    engines = [
        make_engine(s, clock, d, max_concurrency=4)
        for s, d in zip(stores, dispatchers, strict=True)
    ]
    fires = [NINE, NINE + DAY]
    try:
        for fire in fires:
            await clock.set(fire)
            await asyncio.gather(*(e.run_until_idle() for e in engines))
            # One that found nothing left may have stopped before the others finished.
            await asyncio.gather(*(e.run_until_idle() for e in engines))
    finally:
        for e in engines:
            await e.shutdown()
        for d in dispatchers:
            await d.aclose()
        for s in stores[1:]:
            await s.close()
    assert agent_stub.count_by_key() == {key(s, f): 1 for s in sids for f in fires}
    owners: set[str | None] = set()
    for chat, sid in zip(chats, sids, strict=True):
        runs = await service.history(chat, sid)
        assert sorted((r.scheduled_for, r.status, r.attempt) for r in runs) == [
            (f, RunStatus.SUCCEEDED, 1) for f in fires
        ]
        for run in runs:
            owners.update(a.owner for a in await store.runs.attempts(chat, run.id))
    assert len(owners) >= 2, "the engines raced: more than one took a share"


# --- missed-run policies ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "ran", "skipped"),
    [
        (MissedRunPolicy.SKIP, [], 3),
        (MissedRunPolicy.CATCH_UP_ONCE, [NINE + 2 * DAY], 2),
        (MissedRunPolicy.CATCH_UP_ALL, [NINE, NINE + DAY, NINE + 2 * DAY], 0),
    ],
    ids=["skip", "catch_up_once", "catch_up_all"],
)
async def test_fires_missed_while_down_follow_the_missed_run_policy(
    service: ScheduleService,
    store: SqlStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
    policy: MissedRunPolicy,
    ran: list[datetime],
    skipped: int,
) -> None:
    sid = await daily(service, Policies(missed_run=policy))
    # Down for three days; the engine starts on the fourth morning, before that day's fire.
    await clock.set(NINE + 3 * DAY - timedelta(minutes=30))
    engine = make_engine(store, clock, dispatcher)
    await engine.run_until_idle()
    await engine.shutdown()
    assert keys(agent_stub) == [key(sid, t) for t in ran]
    runs = sorted(await service.history(CHAT, sid), key=lambda r: r.scheduled_for)
    assert [r.scheduled_for for r in runs] == [NINE, NINE + DAY, NINE + 2 * DAY]
    missed = [r for r in runs if r.status is RunStatus.SKIPPED]
    assert len(missed) == skipped
    assert all(r.skip_reason is SkipReason.MISSED for r in missed)
    done = [r for r in runs if r.status is RunStatus.SUCCEEDED]
    assert [(r.scheduled_for, r.trigger) for r in done] == [(t, RunTrigger.CATCH_UP) for t in ran]
    # Nothing more fires until the next real window.
    assert (await service.get_schedule(CHAT, sid)).next_run_at == NINE + 3 * DAY


# --- budgets ----------------------------------------------------------------------------------
async def test_budgets_pause_a_schedules_fires_and_an_events_runs_at_the_limit(
    service: ScheduleService,
    store: SqlStore,
    clock: FakeClock,
    engine: Engine,
    agent_stub: AgentStub,
) -> None:
    sid = await daily(service, Policies(budget_runs_per_week=2))
    for day in range(3):
        await clock.set(NINE + day * DAY)
        await engine.run_until_idle()
    runs = sorted(await service.history(CHAT, sid), key=lambda r: r.scheduled_for)
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * 2 + [RunStatus.SKIPPED]
    assert runs[-1].skip_reason is SkipReason.BUDGET
    assert not (await service.get_schedule(CHAT, sid)).enabled

    # An event's runs are held to the chat's budget too: the schedule's two runs and the
    # first event's run make 3 of 3, the second event's run is refused.
    listener = await service.create_schedule(
        CHAT,
        ADA,
        name="On deploy",
        trigger=TriggerSpec(kind="event", name="deploy"),
        action=Action(text="Deployed: {event}"),
    )
    await service.set_chat_budget(CHAT, 3, None)
    await engine.run_until_idle()  # the engine reads the chat's budget
    first = await service.emit_event([CHAT], "deploy", {"n": 1}, caller="api")
    await engine.run_until_idle()
    second = await service.emit_event([CHAT], "deploy", {"n": 2}, caller="api")
    assert [r.status for r in first.runs + second.runs] == [
        RunStatus.PENDING,
        RunStatus.SKIPPED,
    ]
    assert second.runs[0].error == "chat budget: 3 runs this week reached"
    assert not (await service.get_schedule(CHAT, listener.id)).enabled
    assert len(agent_stub.requests) == 3


# --- overlap ----------------------------------------------------------------------------------
async def test_overlap_skip_records_the_fire_and_queue_runs_it_after(
    service: ScheduleService,
    store: SqlStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
) -> None:
    every_minute = TriggerSpec(kind="interval", every_seconds=60, start_at=clock.now())
    release = asyncio.Event()

    async def slow(_: object) -> int:
        await release.wait()
        return 200

    agent_stub.respond_with(slow)
    skip = await service.create_schedule(
        CHAT, ADA, name="skip", trigger=every_minute, action=Action(text="tick")
    )
    queue = await service.create_schedule(
        CHAT,
        ADA,
        name="queue",
        trigger=every_minute,
        action=Action(text="tock"),
        policies=Policies(overlap=OverlapPolicy.QUEUE),
    )
    engine = make_engine(store, clock, dispatcher)
    loop = asyncio.create_task(engine.run_forever())
    await agent_stub.wait_for_requests(2)
    await clock.advance(timedelta(minutes=1))  # both fire again while the first runs
    async with asyncio.timeout(10):
        while not any(r.status is RunStatus.SKIPPED for r in await service.history(CHAT, skip.id)):
            await asyncio.sleep(0.01)
    release.set()
    await agent_stub.wait_for_requests(3)
    engine.request_stop()
    await loop

    skips = sorted(await service.history(CHAT, skip.id), key=lambda r: r.scheduled_for)
    assert [r.status for r in skips] == [RunStatus.SUCCEEDED, RunStatus.SKIPPED]
    assert skips[1].skip_reason is SkipReason.OVERLAP
    queued = sorted(await service.history(CHAT, queue.id), key=lambda r: r.scheduled_for)
    assert [r.status for r in queued] == [RunStatus.SUCCEEDED, RunStatus.SUCCEEDED]
    assert queued[1].started_at >= queued[0].finished_at  # type: ignore[operator]
    assert sorted(agent_stub.count_by_key().values()) == [1, 1, 1]


# --- retries and the breaker ------------------------------------------------------------------
async def test_a_failing_agent_is_retried_with_backoff_under_one_key_then_trips_the_breaker(
    service: ScheduleService,
    store: SqlStore,
    clock: FakeClock,
    engine: Engine,
    agent_stub: AgentStub,
) -> None:
    agent_stub.respond_with(500)
    sid = await daily(service)
    for day in range(3):
        fire = NINE + day * DAY
        await clock.set(fire)
        await engine.run_until_idle()
        [run] = [r for r in await service.history(CHAT, sid) if r.scheduled_for == fire]
        assert (run.status, run.attempt) == (RunStatus.FAILED, 1)
        # Exponential backoff with jitter: 30 s nominal, then 60 s; at least half of it.
        assert run.next_attempt_at is not None
        assert timedelta(seconds=15) <= run.next_attempt_at - fire <= timedelta(seconds=30)
        await clock.set(run.next_attempt_at)
        await engine.run_until_idle()
        run = await service.get_run(CHAT, run.id)
        assert (run.status, run.attempt) == (RunStatus.FAILED, 2)
        assert run.next_attempt_at is not None
        assert timedelta(seconds=30) <= run.next_attempt_at - clock.now() <= timedelta(seconds=60)
        await clock.set(run.next_attempt_at)
        await engine.run_until_idle()
        run = await service.get_run(CHAT, run.id)
        assert (run.status, run.attempt) == (RunStatus.DEAD, 3)
        assert run.error == "The agent answered HTTP 500."
        attempts = await store.runs.attempts(CHAT, run.id)
        assert [a.status for a in attempts] == [RunStatus.FAILED, RunStatus.FAILED, RunStatus.DEAD]
    # Each fire was tried three times, always under its own key.
    assert agent_stub.count_by_key() == {key(sid, NINE + d * DAY): 3 for d in range(3)}
    tripped = await service.get_schedule(CHAT, sid)
    assert tripped.tripped and tripped.consecutive_failures == 3

    # Tripped: the next days do not fire, even once the agent is healthy again.
    agent_stub.respond_with(200)
    await clock.set(NINE + 4 * DAY + timedelta(hours=1))
    await engine.run_until_idle()
    assert len(agent_stub.requests) == 9
    # Resumed: the fires that passed while tripped are on record as skipped, and the
    # next one runs and clears the streak.
    resumed = await service.resume(CHAT, sid)
    assert resumed.skipped_while_paused == 2
    passed = [r for r in await service.history(CHAT, sid) if r.status is RunStatus.SKIPPED]
    assert [r.skip_reason for r in passed] == [SkipReason.TRIPPED] * 2
    await clock.set(NINE + 5 * DAY)
    await engine.run_until_idle()
    assert keys(agent_stub)[9:] == [key(sid, NINE + 5 * DAY)]
    assert (await service.get_schedule(CHAT, sid)).consecutive_failures == 0


# --- backfill ---------------------------------------------------------------------------------
async def test_backfilled_fires_are_dispatched_once_each_and_never_doubled(
    service: ScheduleService,
    store: SqlStore,
    clock: FakeClock,
    engine: Engine,
    agent_stub: AgentStub,
) -> None:
    sid = await daily(service)
    start, end = NINE - 4 * DAY - timedelta(hours=9), NINE - DAY + timedelta(hours=1)
    preview = await service.backfill_preview(CHAT, sid, start, end)
    assert preview.instants == [NINE - d * DAY for d in (4, 3, 2, 1)]
    assert (preview.existing, preview.missing) == (0, 4)
    assert await service.backfill(CHAT, sid, start, end) == (4, 0)
    await engine.run_until_idle()
    assert sorted(keys(agent_stub)) == [key(sid, NINE - d * DAY) for d in (4, 3, 2, 1)]
    runs = await service.history(CHAT, sid)
    assert {(r.trigger, r.status) for r in runs} == {(RunTrigger.BACKFILL, RunStatus.SUCCEEDED)}
    # Over the same range again: nothing new, nothing sent.
    assert await service.backfill(CHAT, sid, start, end) == (0, 4)
    assert (await service.backfill_preview(CHAT, sid, start, end)).missing == 0
    await engine.run_until_idle()
    assert len(agent_stub.requests) == 4


# --- proposals --------------------------------------------------------------------------------
@pytest.fixture
def proposals(service: ScheduleService, store: SqlStore, clock: FakeClock) -> ProposalService:
    return ProposalService(service, store, clock)


async def test_a_proposal_approved_by_several_presses_at_once_creates_one_schedule(
    proposals: ProposalService,
    service: ScheduleService,
    clock: FakeClock,
    engine: Engine,
    agent_stub: AgentStub,
) -> None:
    proposal = await proposals.propose(CHAT, ask(HALF_HOURLY), proposed_by="api")
    assert (proposal.status, proposal.schedule_id) == (ProposalStatus.PENDING, None)
    assert await service.list_schedules(CHAT) == []
    results = await asyncio.gather(
        *(proposals.approve(CHAT, proposal.id, by=ADMIN) for _ in range(3)),
        return_exceptions=True,
    )
    [approved] = [r for r in results if isinstance(r, Proposal)]
    assert sum(isinstance(r, InvalidState) for r in results) == 2
    [schedule] = await service.list_schedules(CHAT)
    assert approved.schedule_id == schedule.id and schedule.enabled
    for decide in (proposals.approve, proposals.reject):
        with pytest.raises(InvalidState, match=r"^That proposal is already approved\.$"):
            await decide(CHAT, proposal.id, by=ADMIN)
    assert len(await service.list_schedules(CHAT)) == 1
    # The approved schedule fires like any other.
    assert schedule.next_run_at is not None
    await clock.set(schedule.next_run_at)
    await engine.run_until_idle()
    assert keys(agent_stub) == [key(schedule.id, schedule.next_run_at)]


async def test_a_medium_proposal_fires_only_once_approved(
    proposals: ProposalService,
    service: ScheduleService,
    clock: FakeClock,
    engine: Engine,
    agent_stub: AgentStub,
) -> None:
    proposal = await proposals.propose(CHAT, ask(TWICE_A_DAY), proposed_by="agent:chat")
    assert proposal.status is ProposalStatus.PENDING and proposal.schedule_id is not None
    await clock.set(NINE)
    await engine.run_until_idle()
    assert agent_stub.requests == []  # paused, awaiting approval
    await proposals.approve(CHAT, proposal.id, by=ADMIN)
    with pytest.raises(InvalidState, match=r"^That proposal is already approved\.$"):
        await proposals.approve(CHAT, proposal.id, by=ADMIN)
    five_pm = NINE + timedelta(hours=8)
    await clock.set(five_pm)
    await engine.run_until_idle()
    assert keys(agent_stub) == [key(proposal.schedule_id, five_pm)]


async def test_a_run_awaiting_approval_runs_once_approved_or_is_skipped_at_its_deadline(
    service: ScheduleService, clock: FakeClock, engine: Engine, agent_stub: AgentStub
) -> None:
    sid = await daily(service, Policies(requires_run_approval=True))
    await clock.set(NINE)
    await engine.run_until_idle()
    [first] = await service.history(CHAT, sid)
    assert first.status is RunStatus.AWAITING_APPROVAL and agent_stub.requests == []
    await service.approve_run(CHAT, first.id)
    with pytest.raises(InvalidState, match=r"^That run is already pending\.$"):
        await service.approve_run(CHAT, first.id)
    await engine.run_until_idle()
    assert keys(agent_stub) == [key(sid, NINE)]
    # Tomorrow's waits too; nobody answers, and it is skipped at the next fire.
    for day in (1, 2):
        await clock.set(NINE + day * DAY)
        await engine.run_until_idle()
    latest, unanswered, done = await service.history(CHAT, sid)
    assert (done.id, done.status) == (first.id, RunStatus.SUCCEEDED)
    assert unanswered.skip_reason is SkipReason.APPROVAL_DEADLINE
    assert latest.status is RunStatus.AWAITING_APPROVAL
    assert len(agent_stub.requests) == 1


# --- work items -------------------------------------------------------------------------------
async def test_a_task_makes_one_work_item_per_fire_date_closed_with_its_proof(
    service: ScheduleService,
    store: SqlStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
) -> None:
    items = WorkItemService(store.work_items, clock)
    task = await service.create_schedule(
        CHAT,
        ADA,
        name="Backup",
        trigger=DAILY_9,
        action=Action(kind=ActionKind.TASK, text="Back up the mailing list", proof="link"),
    )
    engine = Engine(store.engine, clock, dispatcher, tasks=items, rng=random.Random(7))
    await clock.set(NINE)
    await engine.run_until_idle()
    # A second run the same day (run now, an hour later) makes no second item.
    await clock.advance(timedelta(hours=1))
    await service.run_now(CHAT, task.id)
    await engine.run_until_idle()
    [item] = await store.work_items.list_work_items(CHAT, list(WorkItemStatus))
    assert item.title == "Back up the mailing list"
    await clock.set(NINE + DAY)
    await engine.run_until_idle()
    await engine.shutdown()
    made = await store.work_items.list_work_items(CHAT, list(WorkItemStatus))
    assert len(made) == 2

    with pytest.raises(InvalidState, match="needs a link"):
        await items.done(item, actor="ada")
    done = await items.done(item, "https://example.org/backup", actor="ada")
    assert done.status is WorkItemStatus.DONE
    with pytest.raises(InvalidState, match="already done"):
        await items.done(await items.get(CHAT, item.id), "https://x", actor="ada")
    assert [h.action for h in await items.history(done)] == ["created", "done"]
    open_items = await store.work_items.list_work_items(CHAT, [WorkItemStatus.TODO])
    assert [i.id for i in open_items] == [i.id for i in made if i.id != item.id]

    # A follow-up comes due once, and its ping is claimed once.
    follow = await items.add_followup(CHAT, "Sponsor X", clock.now() + DAY, actor="ada")
    assert await items.next_followup() == clock.now() + DAY
    assert await items.due_followups(clock.now()) == []
    await clock.advance(DAY)
    [due] = await items.due_followups(clock.now())
    assert due.id == follow.id
    assert await items.mark_pinged(due, clock.now())
    assert not await items.mark_pinged(due, clock.now())
    assert await items.due_followups(clock.now()) == []


# --- the outbox -------------------------------------------------------------------------------
async def test_the_outbox_keeps_each_chats_messages_in_order_until_each_is_settled(
    store: SqlStore, clock: FakeClock
) -> None:
    now = clock.now()
    alice, bob = 1, 2

    def message(chat: int, text: str, kind: str = "notice", run: str | None = None) -> Notification:
        return Notification(new_id(), chat, kind, text, now, run_id=run, next_attempt_at=now)

    b1 = message(bob, "b1", kind="run_sent", run="R1")
    a = [message(alice, f"a{i}") for i in range(1, 12)]
    b2 = message(bob, "b2")
    await store.outbox.queue([b1, *a[:6]])
    await store.outbox.queue([*a[6:], b2])
    # Each chat's queue oldest first; the chat with the oldest message first.
    assert [n.text for n in await store.outbox.pending(alice, 20)] == [n.text for n in a]
    assert [n.text for n in await store.outbox.pending(alice, 3)] == ["a1", "a2", "a3"]
    assert await store.outbox.chats_with_pending(None) == [bob, alice]
    assert await store.outbox.next_due() == now

    await store.outbox.mark_sent(b1.id, 42, now)
    sent = await store.outbox.sent_run_message(bob, "R1")
    assert sent is not None and (sent.status, sent.message_id) == (NotificationStatus.SENT, 42)
    assert await store.outbox.sent_run_message(alice, "R1") is None
    later = now + timedelta(seconds=30)
    await store.outbox.postpone(b2.id, "Bad Gateway", later)
    assert await store.outbox.chats_with_pending(now) == [alice]
    assert await store.outbox.chats_with_pending(later) == [alice, bob]

    await store.outbox.settle(a[0].id, NotificationStatus.GIVEN_UP, "Bad Request")
    assert (await store.outbox.pending(alice, 1))[0].text == "a2"
    assert await store.outbox.block_pending(alice, "Forbidden") == 10
    assert await store.outbox.pending(alice, 20) == []
    assert await store.outbox.chats_with_pending(None) == [bob]
    assert await store.outbox.next_due() == later
    # A settled message is not postponed back into the queue.
    await store.outbox.postpone(a[0].id, "again", later)
    assert await store.outbox.chats_with_pending(None) == [bob]

    [waiting] = await store.outbox.pending(bob, 5)
    assert (waiting.id, waiting.attempts, waiting.last_error) == (b2.id, 1, "Bad Gateway")
    assert waiting.next_attempt_at == later


# --- export and import ------------------------------------------------------------------------
async def seed(store: SqlStore, clock: FakeClock, agent_stub: AgentStub) -> None:
    """A bit of everything an export carries: schedules of two chats with runs (one
    retried, at a time with microseconds, one fired by an event), a chat's zone,
    proposals decided and waiting, work items with their history, and messages sent
    and postponed."""
    service = ScheduleService(store, clock, default_timezone="Europe/Berlin")
    await service.set_chat_timezone(CHAT, "Europe/Berlin")
    await ChatAgentService(store.agents, clock).update(
        CHAT, url="https://agent.example/hook", model="chat-model"
    )
    sid = await daily(service)
    await service.create_schedule(
        CHAT + 1,
        Owner(id=7),
        name="Other chat",
        trigger=TriggerSpec(kind="cron", cron="30 9 * * 1", timezone="UTC"),
        action=Action(text="hello"),
        policies=Policies(missed_run=MissedRunPolicy.CATCH_UP_ALL, overlap=OverlapPolicy.QUEUE),
    )
    await service.create_schedule(
        CHAT,
        ADA,
        name="Backup",
        trigger=DAILY_9,
        action=Action(kind=ActionKind.TASK, text="Back up the list", proof="link"),
    )
    await service.create_schedule(
        CHAT,
        ADA,
        name="Release notes",
        trigger=TriggerSpec(kind="event", name="deploy"),
        action=Action(text="Deployed: {event}"),
    )
    fired = await service.emit_event(
        [CHAT, CHAT + 1], "deploy", {"v": "1.4"}, caller="api", idempotency_key="d-1"
    )
    assert len(fired.runs) == 1
    proposals = ProposalService(service, store, clock)
    high = await proposals.propose(CHAT, ask(HALF_HOURLY, name="Often"), proposed_by="api")
    await proposals.approve(CHAT, high.id, by=ADMIN)
    await proposals.propose(CHAT, ask(TWICE_A_DAY, name="Twice"), proposed_by="agent:chat")
    items = WorkItemService(store.work_items, clock)
    async with HttpAgentDispatcher(url=agent_stub.url) as dispatcher:
        engine = Engine(store.engine, clock, dispatcher, tasks=items, rng=random.Random(7))
        agent_stub.script([503])  # the brief's first attempt fails, its retry succeeds
        await clock.set(NINE + timedelta(microseconds=250_000))
        await engine.run_until_idle()
        await clock.advance(timedelta(minutes=1))
        await engine.run_until_idle()
        await engine.shutdown()
    [item] = await store.work_items.list_work_items(CHAT, [WorkItemStatus.TODO])
    await items.done(item, "https://example.org/backup", actor="ada")
    follow = await items.add_followup(CHAT, "Sponsor X", clock.now() + 3 * DAY, actor="ada")
    await items.followup_sent(follow, clock.now() + 5 * DAY, actor="ada", note="mailed")
    newsletter = await service.create_schedule(
        CHAT,
        ADA,
        name="Newsletter",
        trigger=TriggerSpec(kind="cron", cron="0 9 * * 4", timezone="Europe/Berlin"),
        action=Action(
            kind=ActionKind.BUNDLE,
            lead_days=7,
            steps=(Step(kind=StepKind.TASK, title="Links", offset_days=-6, proof="note"),),
        ),
    )
    await BundleService(store, clock, items).create_from_fire(newsletter, clock.now())
    [run] = await store.runs.list_for_chat(CHAT, schedule_id=sid, limit=1)
    from scheduler.sinks import SinkService

    sinks = SinkService(store.sinks, clock.now, lambda: "k" * 64)
    await sinks.add(CHAT, "webhook", "https://example.com/hook", events="failed")
    markup = {"inline_keyboard": [[{"text": "Retry", "callback_data": "r:1"}]]}
    await store.outbox.queue(
        [
            Notification(
                "n1",
                CHAT,
                "alert",
                "❌ <b>Daily brief</b> failed",
                clock.now(),
                reply_markup=markup,
                run_id=run.id,
                schedule_id=sid,
                proposal_id=high.id,
            ),
            Notification("n2", CHAT, "followup", "⏰ Follow-up due", clock.now(), item_id=item.id),
        ]
    )
    await store.outbox.mark_sent("n1", 42, clock.now())
    await store.outbox.postpone("n2", "Bad Gateway", clock.now() + timedelta(seconds=2))


def read(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


async def test_an_export_imports_into_a_new_database_byte_for_byte(
    store: SqlStore,
    location: Location,
    new_location: Callable[[], Location],
    clock: FakeClock,
    agent_stub: AgentStub,
    tmp_path: Path,
) -> None:
    await seed(store, clock, agent_stub)
    first, second = tmp_path / "first", tmp_path / "second"
    counts = await export_database(location, first)
    assert validate_export(first) == []
    assert all(counts.values()), counts  # every table has rows to carry
    copy = new_location()
    assert await import_export(first, copy) == counts
    await export_database(copy, second)
    assert read(second) == read(first)
    async with await open_store(copy) as restored:
        for chat in (CHAT, CHAT + 1):
            assert await restored.schedules.list_for_chat(chat) == (
                await store.schedules.list_for_chat(chat)
            )
            assert await restored.runs.list_for_chat(chat) == await store.runs.list_for_chat(chat)
        assert await restored.outbox.pending(CHAT, 10) == await store.outbox.pending(CHAT, 10)
    with pytest.raises(ValueError, match="is not empty"):
        await import_export(first, copy)
    assert set((await import_export(first, copy, merge=True)).values()) == {0}


@pytest.mark.postgres  # both cases need the PostgreSQL server
async def test_an_export_moves_to_the_other_store_and_back_byte_for_byte(
    store: SqlStore,
    location: Location,
    new_location: Callable[[], Location],
    request: pytest.FixtureRequest,
    clock: FakeClock,
    agent_stub: AgentStub,
    tmp_path: Path,
) -> None:
    """From SQLite to PostgreSQL and back (the [sqlite] case), or from PostgreSQL to
    SQLite and back (the [postgres] case): each hop's export is the first one's bytes."""
    await seed(store, clock, agent_stub)
    other = contract.location_maker(request, "sqlite" if is_postgres(location) else "postgres")()
    home = new_location()
    exported = tmp_path / "exported"
    counts = await export_database(location, exported)
    assert await import_export(exported, other) == counts
    await export_database(other, tmp_path / "there")
    assert read(tmp_path / "there") == read(exported)
    assert await import_export(tmp_path / "there", home) == counts
    await export_database(home, tmp_path / "back")
    assert read(tmp_path / "back") == read(exported)
    async with await open_store(other) as moved:
        assert await moved.schedules.list_for_chat(CHAT) == (
            await store.schedules.list_for_chat(CHAT)
        )


# --- notification sinks ----------------------------------------------------------------------
async def test_a_sink_gets_its_events_with_the_chats_messages_in_order_and_dies_once(
    store: SqlStore,
) -> None:
    from scheduler.sinks import SinkService

    now = NINE
    sinks = SinkService(store.sinks, lambda: now, lambda: "k" * 64)
    failed = (await sinks.add(CHAT, "webhook", "https://example.com/a", events="failed")).sink
    every = (await sinks.add(CHAT, "email", "ops@example.com", events="all")).sink
    await sinks.add(CHAT + 1, "webhook", "https://example.com/other", events="all")

    def note(kind: str, text: str) -> Notification:
        return Notification(id=new_id(), chat_id=CHAT, kind=kind, text=text, created_at=now)

    queued = [
        note("alert", "<b>A</b> &amp; B failed"),
        note("notice", "not for sinks"),
        note("run_answer", "the answer"),
        note("alert", "second failure"),
    ]
    await store.outbox.queue(queued[:2])
    await store.outbox.queue(queued[2:])
    pending = await store.sinks.pending_for(failed.id)
    assert [d.text for d in pending] == ["A & B failed", "second failure"]
    assert [d.event for d in await store.sinks.pending_for(every.id)] == [
        "failed",
        "result",
        "failed",
    ]
    heads = {d.sink_id: d.notification_id for d in await store.sinks.heads()}
    assert heads == {failed.id: queued[0].id, every.id: queued[0].id}

    await store.sinks.delivered(failed.id, queued[0].id, now)
    later = now + timedelta(minutes=1)
    since = await store.sinks.failed(failed.id, queued[3].id, "HTTP 503", later, now)
    assert since == now
    assert await store.sinks.failed(failed.id, queued[3].id, "HTTP 503", later, later) == now
    [head] = [d for d in await store.sinks.heads() if d.sink_id == failed.id]
    assert (head.notification_id, head.attempts) == (queued[3].id, 2)
    assert await store.sinks.mark_dead(failed.id, "HTTP 503")
    assert not await store.sinks.mark_dead(failed.id, "HTTP 503")  # told once
    assert failed.id not in {d.sink_id for d in await store.sinks.heads()}
    await sinks.remove(CHAT, every.id)
    assert await store.sinks.pending_for(every.id) == []
