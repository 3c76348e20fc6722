"""History retention: which runs, attempts and chat messages the daily pass deletes and
which stay, over a real SQLite file written by the engine on a fake clock."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import start_bot, stop_bot
from bot.demo_kit.telegram_server import TelegramServer
from bot.metrics import Metrics
from bot.retention import KEEP_RUNS_PER_SCHEDULE, PRUNE_EVERY, prune_history_forever
from scheduler.ids import new_id
from scheduler.models import Action, RiskTier, Run, RunStatus
from scheduler.proposals import Proposal, ProposalRequest, ProposalStatus
from scheduler.repositories import Notification, NotificationStatus, Pruned
from scheduler.service import ScheduleService, TriggerSpec
from storage.runs import ALL_ATTEMPTS
from storage.sqlite_store import SqliteStore
from tests.engine_calls import list_notifications
from tests.test_engine import ADA, CHAT, make_engine

RETENTION = timedelta(days=90)
DAY = timedelta(days=1)


async def create(service: ScheduleService, name: str, cron: str) -> str:
    trigger = TriggerSpec(kind="cron", cron=cron, timezone="UTC")
    schedule = await service.create_schedule(
        CHAT, ADA, name=name, trigger=trigger, action=Action(text="Prepare the brief.")
    )
    return schedule.id


async def all_runs(store: SqliteStore, schedule_id: str) -> list[Run]:
    """The schedule's runs, oldest first."""
    found = await store.runs.list_for_chat(CHAT, schedule_id=schedule_id, limit=10_000)
    return sorted(found, key=lambda r: r.scheduled_for)


def count(db_path: Path, sql: str) -> int:
    with sqlite3.connect(db_path) as db:
        return int(db.execute(sql).fetchone()[0])


class Passes:
    """The retention loop, running beside the test; each pass's result in order."""

    def __init__(self) -> None:
        self.results: asyncio.Queue[Pruned] = asyncio.Queue()
        self.metrics = Metrics()

    def __call__(self, pruned: Pruned) -> None:
        self.metrics.history_pruned(pruned)
        self.results.put_nowait(pruned)


@pytest.fixture
async def passes(store: SqliteStore, clock: FakeClock) -> AsyncIterator[Passes]:
    seen = Passes()
    task = asyncio.create_task(prune_history_forever(store, clock, RETENTION, seen))
    yield seen
    task.cancel()
    await asyncio.wait({task})


async def test_old_finished_runs_go_and_open_recent_and_each_schedules_last_runs_stay(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    db_path: Path,
) -> None:
    engine = make_engine(store, clock, dispatcher)
    # An hourly schedule that fired 25 times on the first day and was archived: all its
    # runs are old, and only its last 20 stay.
    hourly = await create(service, "Hourly check", "0 * * * *")
    for _ in range(25):
        await clock.advance(timedelta(hours=1))
        await engine.run_until_idle()
    await service.archive(CHAT, hourly)
    # Each day's clock step (to 07:00) runs that day's 06:30 fire.
    daily = await create(service, "Daily brief", "30 6 * * *")
    monthly = await create(service, "Monthly report", "0 9 1 * *")
    for _ in range(200):
        await clock.advance(DAY)
        await engine.run_until_idle()
    # The cutoff falls between one day's run and the next one's fire.
    await clock.advance(timedelta(hours=4))
    now = clock.now()
    cutoff = now - RETENTION

    # Old runs that must stay open or wait for the operator, each left as it was then.
    old = await all_runs(store, daily)
    assert len(old) == 200 and all(r.status is RunStatus.SUCCEEDED for r in old)
    never = datetime(2030, 1, 1, tzinfo=now.tzinfo)
    unresolved: dict[RunStatus, dict[str, object]] = {
        RunStatus.DEAD: {},
        RunStatus.UNKNOWN: {},
        RunStatus.FAILED: {"next_attempt_at": never},
        RunStatus.PENDING: {"next_attempt_at": never},
        RunStatus.AWAITING_APPROVAL: {"next_attempt_at": never},
        RunStatus.RUNNING: {"owner": "ghost"},
    }
    closed: dict[RunStatus, dict[str, object]] = {RunStatus.SKIPPED: {}, RunStatus.CANCELLED: {}}
    for run, (status, extra) in zip(old, [*unresolved.items(), *closed.items()], strict=False):
        changed = await store.runs.transition(
            CHAT,
            run.id,
            expected=[RunStatus.SUCCEEDED],
            changes={"status": status, **extra},
            now=run.scheduled_for + timedelta(minutes=5),
        )
        assert changed is not None
    # An old fire touched yesterday (an operator's verdict) is recent history.
    touched = old[len(unresolved) + len(closed)]
    assert await store.runs.transition(
        CHAT,
        touched.id,
        expected=[RunStatus.SUCCEEDED],
        changes={"status": RunStatus.CANCELLED},
        now=now - DAY,
    )
    before = {s: await all_runs(store, s) for s in (hourly, daily, monthly)}
    attempts_before = count(db_path, f"SELECT COUNT(*) FROM {ALL_ATTEMPTS} AS a")

    passes = Passes()
    task = asyncio.create_task(prune_history_forever(store, clock, RETENTION, passes))
    try:
        pruned = await passes.results.get()
    finally:
        task.cancel()
        await asyncio.wait({task})

    after = {s: await all_runs(store, s) for s in (hourly, daily, monthly)}
    # The daily schedule: every run since the cutoff, the open and unresolved old ones
    # and the one touched yesterday stay; its other old runs (succeeded, skipped,
    # cancelled) go.
    kept_old = [r for r in after[daily] if r.scheduled_for < cutoff]
    assert {r.status for r in kept_old} == set(unresolved) | {RunStatus.CANCELLED}
    assert [r.id for r in kept_old if r.status is RunStatus.CANCELLED] == [touched.id]
    recent = [r.id for r in before[daily] if r.scheduled_for >= cutoff]
    assert [r.id for r in after[daily] if r.scheduled_for >= cutoff] == recent
    assert len(recent) == 90
    # The archived hourly schedule keeps its last runs though all are old.
    assert [r.id for r in after[hourly]] == [r.id for r in before[hourly][-KEEP_RUNS_PER_SCHEDULE:]]
    assert len(before[hourly]) == 25
    # The monthly one has fewer than that: all stay, however old.
    assert after[monthly] == before[monthly]
    assert any(r.scheduled_for < cutoff for r in after[monthly])

    gone = sum(len(before[s]) - len(after[s]) for s in before)
    assert pruned.runs == gone == 5 + (200 - len(recent) - len(kept_old))
    # Each run the engine finished had one attempt (derived from the run, or written
    # when the run was changed since); they went with their runs.
    assert pruned.attempts == gone
    assert count(db_path, f"SELECT COUNT(*) FROM {ALL_ATTEMPTS} AS a") == attempts_before - gone
    assert (
        count(
            db_path, "SELECT COUNT(*) FROM run_attempts WHERE run_id NOT IN (SELECT id FROM runs)"
        )
        == 0
    )


async def test_settled_chat_messages_older_than_the_retention_go(
    store: SqliteStore, clock: FakeClock
) -> None:
    now = clock.now()
    old, recent = now - RETENTION - DAY, now - RETENTION + DAY
    pending_proposal = Proposal(
        id=new_id(),
        chat_id=CHAT,
        request=ProposalRequest(
            name="Nightly purge",
            trigger=TriggerSpec(kind="cron", cron="0 3 * * *", timezone="UTC"),
            action=Action(text="Purge the cache."),
            reason="Asked for it.",
        ),
        tier=RiskTier.HIGH,
        status=ProposalStatus.PENDING,
        proposed_by="api",
        created_at=old,
        expires_at=now + DAY,
    )
    await store.proposals.add(pending_proposal)

    def message(
        text: str, created_at: datetime, kind: str = "notice", proposal_id: str | None = None
    ) -> Notification:
        return Notification(
            id=new_id(),
            chat_id=CHAT,
            kind=kind,
            text=text,
            created_at=created_at,
            proposal_id=proposal_id,
        )

    queued = [
        message("old sent", old),
        message("old given up", old),
        message("old blocked", old),
        message("old, still waiting", old),
        message("recent sent", recent),
        message(
            "old proposal, still pending", old, kind="proposal", proposal_id=pending_proposal.id
        ),
    ]
    await store.outbox.queue(queued)
    for n in (queued[0], queued[4], queued[5]):
        await store.outbox.mark_sent(n.id, 7, n.created_at)
    await store.outbox.settle(queued[1].id, NotificationStatus.GIVEN_UP, "400")
    await store.outbox.settle(queued[2].id, NotificationStatus.BLOCKED, "403")

    passes = Passes()
    task = asyncio.create_task(prune_history_forever(store, clock, RETENTION, passes))
    try:
        pruned = await passes.results.get()
    finally:
        task.cancel()
        await asyncio.wait({task})

    left = await list_notifications(store, CHAT)
    assert [n.text for n in left] == [
        "old, still waiting",
        "recent sent",
        "old proposal, still pending",
    ]
    assert pruned == Pruned(notifications=3)


async def test_the_pass_runs_daily_and_its_counts_are_exported(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    passes: Passes,
) -> None:
    assert await passes.results.get() == Pruned()  # the pass at start: nothing to do
    engine = make_engine(store, clock, dispatcher)
    hourly = await create(service, "Hourly check", "0 * * * *")
    for _ in range(KEEP_RUNS_PER_SCHEDULE + 3):
        await clock.advance(timedelta(hours=1))
        await engine.run_until_idle()
    await service.archive(CHAT, hourly)
    # Past the retention and the next daily pass: the 3 oldest runs go.
    await clock.advance(RETENTION + PRUNE_EVERY)
    assert await passes.results.get() == Pruned(runs=3, attempts=3)
    page = generate_latest(passes.metrics.registry).decode()
    assert 'tickler_history_pruned_total{kind="runs"} 3.0' in page
    assert 'tickler_history_pruned_total{kind="attempts"} 3.0' in page
    assert len(await all_runs(store, hourly)) == KEEP_RUNS_PER_SCHEDULE


async def test_the_bot_prunes_at_start_unless_retention_is_0(
    telegram_server: TelegramServer,
    agent_stub: AgentStub,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tickler.retention")
    bot = await start_bot(telegram_server, agent_stub, tmp_path / "kept.db", retention_days=0)
    try:
        assert "retention" not in bot.app.started.sweeps  # RETENTION_DAYS=0 keeps everything
    finally:
        await stop_bot(bot)
    bot = await start_bot(telegram_server, agent_stub, tmp_path / "pruned.db")
    try:
        assert "retention" in bot.app.started.sweeps
        async with asyncio.timeout(5):
            while not [r for r in caplog.records if r.getMessage() == "history pruned"]:
                await asyncio.sleep(0.01)
        [record] = [r for r in caplog.records if r.getMessage() == "history pruned"]
        assert record.__dict__["days"] == 90 and record.__dict__["runs"] == 0
    finally:
        await stop_bot(bot)
