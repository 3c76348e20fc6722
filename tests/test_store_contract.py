"""The store contract (scheduler/engine_store.py, scheduler/repositories.py), run against
every store implementation: SQLite on a real file and PostgreSQL on a throwaway server
(tests/postgres.py), each test once per store. The engine-level guarantees over the same
stores, driven by the real engine, are in tests/test_store_contract_engine.py; SQLite's
own migration history is in tests/test_sqlite_migrations.py.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from scheduler.engine_store import AttemptOutcome, EngineInstance
from scheduler.ids import new_id
from scheduler.models import (
    Action,
    OverlapPolicy,
    Owner,
    Policies,
    Run,
    RunStatus,
    RunTrigger,
    Schedule,
    SkipReason,
)
from scheduler.planning import plan_due_fires
from scheduler.repositories import ChatPrefs, Notification, Pruned
from scheduler.stores import Stores
from scheduler.triggers import cron_trigger, event_trigger, make_trigger
from storage.bundle import SqlStore
from storage.database import SchemaTooNew
from storage.export import export_database, import_export
from storage.locations import Location, is_postgres, open_store
from tests.engine_calls import claim_due_fires, finish_attempt, next_due_at, next_fire_at
from tests.test_export import rewrite

NOW = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
#: The stores every contract test runs on; the PostgreSQL one is marked `postgres`.
KINDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]


def location_maker(request: pytest.FixtureRequest, kind: str) -> Callable[[], Location]:
    """Makes a new, empty database of that kind at each call: a file under the test's
    tmp_path, or a database on the session's throwaway PostgreSQL server."""
    if kind == "postgres":
        make: Callable[[], str] = request.getfixturevalue("make_postgres_url")
        return make
    folder: Path = request.getfixturevalue("tmp_path")
    numbers = itertools.count(1)
    return lambda: folder / f"contract{next(numbers)}.db"


@pytest.fixture(params=KINDS)
def new_location(request: pytest.FixtureRequest) -> Callable[[], Location]:
    """Makes a new, empty database of the store under test at each call."""
    return location_maker(request, request.param)


@pytest.fixture
def location(new_location: Callable[[], Location]) -> Location:
    """Where the store under test keeps its data (a path or a postgresql:// URL)."""
    return new_location()


@pytest.fixture
async def store(location: Location) -> AsyncIterator[SqlStore]:
    s = await open_store(location)
    yield s
    await s.close()


def schedule(chat_id: int = 1, *, overlap: OverlapPolicy = OverlapPolicy.SKIP) -> Schedule:
    return Schedule(
        id=new_id(),
        chat_id=chat_id,
        name="brief",
        trigger=cron_trigger("0 7 * * *", "UTC"),
        action=Action(text="hi"),
        policies=Policies(overlap=overlap),
        owner=Owner(id=chat_id),
        next_run_at=NOW,
        created_at=NOW - timedelta(days=1),
        updated_at=NOW - timedelta(days=1),
    )


async def test_a_fire_is_claimed_once_and_next_run_advances(store: Stores) -> None:
    s = schedule()
    await store.schedules.add(s)
    first = await claim_due_fires(store, NOW, 10, plan_due_fires)
    again = await claim_due_fires(store, NOW, 10, plan_due_fires)
    assert [len(p.fires) for p in first] == [1] and again == []
    reloaded = await store.schedules.get(1, s.id)
    assert reloaded is not None and reloaded.next_run_at == NOW + timedelta(days=1)
    [run] = await store.runs.list_for_chat(1)
    assert (run.scheduled_for, run.status, run.trigger) == (
        NOW,
        RunStatus.PENDING,
        RunTrigger.SCHEDULE,
    )


async def test_schedules_are_listed_by_trigger_kind_across_chats(store: SqlStore) -> None:
    deploy = schedule(1).model_copy(update={"trigger": event_trigger("deploy")})
    other_chat = schedule(2).model_copy(update={"trigger": event_trigger("deploy")})
    boot = schedule(1).model_copy(update={"trigger": make_trigger({"kind": "startup"})})
    for s in (schedule(1), deploy, other_chat, boot, schedule(3)):
        await store.schedules.add(s)
    # A row written by an older version keeps its own JSON spacing.
    async with store.connection.write() as db:
        await db.execute(
            "UPDATE schedules SET trigger_json = ? WHERE id = ?",
            (json.dumps(deploy.trigger.model_dump(mode="json")), deploy.id),
        )
    assert [s.id for s in await store.schedules.list_by_trigger({1, 2}, "event")] == [
        deploy.id,
        other_chat.id,
    ]
    assert [s.id for s in await store.schedules.list_by_trigger({1}, "startup")] == [boot.id]
    assert await store.schedules.list_by_trigger({3}, "event") == []
    await store.schedules.archive(1, deploy.id, now=NOW)
    assert await store.schedules.list_by_trigger({1}, "event") == []


async def test_claims_are_bounded_by_the_limit(store: Stores) -> None:
    for _ in range(5):
        await store.schedules.add(schedule())
    assert len(await claim_due_fires(store, NOW, 3, plan_due_fires)) == 3
    assert len(await claim_due_fires(store, NOW, 3, plan_due_fires)) == 2
    assert (
        await next_due_at(
            store,
        )
        == NOW
    )  # the runs, ready to start


async def test_next_due_says_what_is_due_in_one_read(store: Stores) -> None:
    s = schedule()
    await store.schedules.add(s)
    due = await store.engine.next_due()
    assert (due.fire, due.ready, due.deadline) == (NOW, None, None)
    assert (
        due.earliest
        == await next_due_at(
            store,
        )
        == NOW
    )
    await claim_due_fires(store, NOW, 10, plan_due_fires)
    due = await store.engine.next_due()
    # The fire became a ready run; the schedule's next fire is a day on.
    assert (
        due.fire
        == await next_fire_at(
            store,
        )
        == NOW + timedelta(days=1)
    )
    assert due.ready == NOW
    assert (
        due.earliest
        == await next_due_at(
            store,
        )
        == NOW
    )


async def test_a_run_is_acquired_once_and_only_its_owner_finishes_it(store: Stores) -> None:
    await store.schedules.add(schedule())
    await claim_due_fires(store, NOW, 10, plan_due_fires)
    [mine] = await store.engine.acquire(NOW, 10, "A")
    assert await store.engine.acquire(NOW, 10, "B") == []
    assert mine.run.status is RunStatus.RUNNING and mine.run.attempt == 1
    done = AttemptOutcome(RunStatus.SUCCEEDED, finished_at=NOW + timedelta(seconds=2))
    assert await finish_attempt(store, mine, "B", done, trip_after=3) is None
    finished = await finish_attempt(store, mine, "A", done, trip_after=3)
    assert finished is not None and finished.run.status is RunStatus.SUCCEEDED
    assert await finish_attempt(store, mine, "A", done, trip_after=3) is None
    [attempt] = await store.runs.attempts(1, mine.run.id)
    assert (attempt.attempt, attempt.owner, attempt.status) == (1, "A", RunStatus.SUCCEEDED)


async def test_overlap_skip_skips_a_fresh_fire_while_one_runs(store: Stores) -> None:
    s = schedule()
    await store.schedules.add(s)
    await claim_due_fires(store, NOW, 10, plan_due_fires)
    [running] = await store.engine.acquire(NOW, 10, "A")
    later = NOW + timedelta(days=1)
    await claim_due_fires(store, later, 10, plan_due_fires)
    assert await store.engine.acquire(later, 10, "A") == []
    runs = {r.scheduled_for: r for r in await store.runs.list_for_chat(1)}
    assert runs[later].status is RunStatus.SKIPPED and "overlap" in (runs[later].error or "")
    assert runs[later].skip_reason is SkipReason.OVERLAP
    assert runs[NOW].id == running.run.id


async def test_overlap_skip_waits_instead_when_the_running_one_is_settling(
    store: Stores,
) -> None:
    # The engine has the running run's answer and is recording it: that run is over, so
    # the next fire waits for the record instead of being skipped as an overlap.
    s = schedule()
    await store.schedules.add(s)
    await claim_due_fires(store, NOW, 10, plan_due_fires)
    [first] = await store.engine.acquire(NOW, 10, "A")
    later = NOW + timedelta(days=1)
    await claim_due_fires(store, later, 10, plan_due_fires)
    assert await store.engine.acquire(later, 10, "A", settling={s.id}) == []
    runs = {r.scheduled_for: r for r in await store.runs.list_for_chat(1)}
    assert runs[later].status is RunStatus.PENDING
    done = AttemptOutcome(RunStatus.SUCCEEDED, finished_at=later)
    await finish_attempt(store, first, "A", done, trip_after=3)
    [second] = await store.engine.acquire(later, 10, "A")
    assert second.run.scheduled_for == later


async def test_overlap_queue_waits_for_the_running_one(store: Stores) -> None:
    s = schedule(overlap=OverlapPolicy.QUEUE)
    await store.schedules.add(s)
    await claim_due_fires(store, NOW, 10, plan_due_fires)
    [first] = await store.engine.acquire(NOW, 10, "A")
    later = NOW + timedelta(days=1)
    await claim_due_fires(store, later, 10, plan_due_fires)
    assert await store.engine.acquire(later, 10, "A") == []
    done = AttemptOutcome(RunStatus.SUCCEEDED, finished_at=later)
    await finish_attempt(store, first, "A", done, trip_after=3)
    [second] = await store.engine.acquire(later, 10, "A")
    assert second.run.scheduled_for == later


async def test_released_runs_go_back_to_pending_without_counting_the_attempt(
    store: Stores,
) -> None:
    await store.schedules.add(schedule())
    await claim_due_fires(store, NOW, 10, plan_due_fires)
    [mine] = await store.engine.acquire(NOW, 10, "A")
    assert await store.engine.release("B", [mine.run.id], NOW) == 0
    assert await store.engine.release("A", [mine.run.id], NOW) == 1
    [run] = await store.runs.list_for_chat(1)
    assert (run.status, run.attempt, run.owner) == (RunStatus.PENDING, 0, None)


async def test_orphans_of_dead_owners_are_reaped_by_the_decision_given(store: Stores) -> None:
    await store.schedules.add(schedule())
    await claim_due_fires(store, NOW, 10, plan_due_fires)
    await store.engine.acquire(NOW, 10, "dead-one")
    await store.engine.register(EngineInstance("dead-one", "h", 1, NOW, NOW, None))
    assert await store.engine.running_owners() == {"dead-one"}
    told: list[int] = []

    def decide(run: Run, s: Schedule, interruptions: int) -> AttemptOutcome:
        told.append(interruptions)
        return AttemptOutcome(
            RunStatus.PENDING, finished_at=NOW, error="interrupted", next_attempt_at=NOW
        )

    assert await store.engine.reap(["someone-else"], NOW, decide) == []
    [reaped] = await store.engine.reap(["dead-one"], NOW, decide)
    assert reaped.run.status is RunStatus.PENDING and reaped.run.error == "interrupted"
    # The interrupted attempt is in the history but not counted: the next one is
    # attempt 1 again, and the next interruption is the second.
    [again] = await store.engine.acquire(NOW, 10, "dead-two")
    assert again.run.attempt == 1
    [attempt] = await store.runs.attempts(1, again.run.id)
    assert (attempt.attempt, attempt.error) == (1, "interrupted")
    await store.engine.reap(["dead-two"], NOW, decide)
    assert told == [1, 2]


async def test_three_dead_runs_trip_the_breaker_once(store: Stores) -> None:
    s = schedule()
    await store.schedules.add(s)
    tripped = []
    for day in range(4):
        now = NOW + timedelta(days=day)
        await claim_due_fires(store, now, 10, plan_due_fires)
        for acquired in await store.engine.acquire(now, 10, "A"):
            dead = AttemptOutcome(RunStatus.DEAD, finished_at=now, error="boom")
            result = await finish_attempt(store, acquired, "A", dead, trip_after=3)
            assert result is not None
            tripped.append(result.tripped_now)
    assert tripped == [False, False, True]  # tripped: the fourth day never fired
    reloaded = await store.schedules.get(1, s.id)
    assert reloaded is not None and reloaded.tripped and reloaded.consecutive_failures == 3


async def test_every_read_is_scoped_by_chat(store: Stores) -> None:
    s = schedule(chat_id=1)
    await store.schedules.add(s)
    await claim_due_fires(store, NOW, 10, plan_due_fires)
    [run] = await store.runs.list_for_chat(1)
    assert await store.schedules.get(2, s.id) is None
    assert await store.schedules.list_for_chat(2) == []
    assert await store.runs.list_for_chat(2) == []
    assert await store.runs.get(2, run.id) is None
    assert await store.runs.attempts(2, run.id) == []
    assert (
        await store.runs.transition(
            2,
            run.id,
            expected=[RunStatus.PENDING],
            changes={"status": RunStatus.CANCELLED},
            now=NOW,
        )
        is None
    )
    assert await store.schedules.pause(2, s.id, by=None, reason=None, now=NOW) is None


async def test_a_transition_applies_once(store: Stores) -> None:
    await store.schedules.add(schedule())
    await claim_due_fires(store, NOW, 10, plan_due_fires)
    [run] = await store.runs.list_for_chat(1)
    change = {"status": RunStatus.CANCELLED}
    first = await store.runs.transition(
        1, run.id, expected=[RunStatus.PENDING], changes=change, now=NOW
    )
    second = await store.runs.transition(
        1, run.id, expected=[RunStatus.PENDING], changes=change, now=NOW
    )
    assert first is not None and first.status is RunStatus.CANCELLED and second is None


async def test_a_manual_run_for_an_existing_instant_is_refused(store: Stores) -> None:
    s = schedule()
    await store.schedules.add(s)
    await claim_due_fires(store, NOW, 10, plan_due_fires)
    [existing] = await store.runs.list_for_chat(1)
    duplicate = existing.model_copy(update={"id": new_id(), "trigger": RunTrigger.MANUAL})
    assert await store.runs.add(duplicate) is False
    assert len(await store.runs.list_for_chat(1)) == 1


async def test_old_history_is_pruned_but_each_schedules_latest_and_open_runs_stay(
    store: Stores,
) -> None:
    s = schedule()
    await store.schedules.add(s)
    for day in range(6):
        now = NOW + timedelta(days=day)
        await claim_due_fires(store, now, 10, plan_due_fires)
        [acquired] = await store.engine.acquire(now, 10, "A")
        status = RunStatus.DEAD if day == 0 else RunStatus.SUCCEEDED
        outcome = AttemptOutcome(status, finished_at=now + timedelta(seconds=2))
        await finish_attempt(store, acquired, "A", outcome, trip_after=3)
    old = [
        Notification(new_id(), 1, "notice", text, NOW, next_attempt_at=NOW)
        for text in ("sent", "waiting")
    ]
    await store.outbox.queue(old)
    await store.outbox.mark_sent(old[0].id, 7, NOW)
    pruned = await store.operations.prune_history(NOW + timedelta(days=30), keep=2, batch=2)
    # Days 1-3 go (finished, old); the dead one waits for the operator; the last two stay.
    assert pruned == Pruned(runs=3, attempts=3, notifications=1)
    kept = await store.runs.list_for_chat(1, limit=10)
    assert sorted(r.scheduled_for for r in kept) == [NOW + timedelta(days=d) for d in (0, 4, 5)]
    assert [n.text for n in await store.outbox.pending(1, 10)] == ["waiting"]
    again = await store.operations.prune_history(NOW + timedelta(days=30), keep=2, batch=2)
    assert again == Pruned()


async def test_the_operations_counts_are_what_health_and_metrics_report(store: Stores) -> None:
    # Chat 2's is not due: a claim would take it before chat 1's second (a fair share).
    first, second, third = schedule(), schedule(), schedule()
    other = schedule(chat_id=2).model_copy(update={"next_run_at": NOW + timedelta(hours=1)})
    for s in (first, second, third, other):
        await store.schedules.add(s)
    await store.operations.ping()
    assert await store.operations.count_all_schedules() == 4
    assert await store.operations.count_due_schedules(NOW) == 3
    await claim_due_fires(store, NOW, 2, plan_due_fires)
    assert await store.operations.count_due_schedules(NOW) == 1
    assert await store.operations.count_due_runs(NOW) == 2
    assert await store.operations.count_due_runs(NOW - timedelta(seconds=1)) == 0
    [running] = await store.engine.acquire(NOW, 1, "A")
    assert await store.operations.count_runs_by_status() == {
        RunStatus.PENDING: 1,
        RunStatus.RUNNING: 1,
    }
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    done = AttemptOutcome(
        RunStatus.SUCCEEDED,
        finished_at=NOW + timedelta(seconds=3),
        duration_ms=3000,
        output="Two meetings.",
        token_usage=usage,
    )
    await finish_attempt(store, running, "A", done, trip_after=3)
    finished = await store.runs.get(running.run.chat_id, running.run.id)
    assert finished is not None
    assert (finished.output, finished.token_usage, finished.duration_ms) == (
        "Two meetings.",
        usage,
        3000,
    )
    [figure] = [
        f
        for f in await store.runs.figures(1, NOW - timedelta(days=1), NOW)
        if f.status is RunStatus.SUCCEEDED
    ]
    assert (figure.started_at, figure.duration_ms, figure.tokens) == (NOW, 3000, 15)
    # /stats sums tokens; a run that reported none counts as none, not as zero.
    assert {f.tokens for f in await store.runs.figures(1, NOW - timedelta(days=1), NOW)} == {
        15,
        None,
    }
    assert await store.operations.count_tripped_schedules() == 0
    await store.schedules.archive(2, other.id, now=NOW)
    assert await store.operations.count_all_schedules() == 3


async def test_a_schedule_is_found_by_its_number_or_an_id_prefix_in_any_case(
    store: Stores,
) -> None:
    first = await store.schedules.add(schedule())
    second = await store.schedules.add(schedule())
    assert (first.number, second.number) == (1, 2)
    assert [s.id for s in await store.schedules.find(1, number=2)] == [second.id]
    assert await store.schedules.find(2, number=2) == []
    found = await store.schedules.find(1, prefix=second.id[-8:].lower())
    assert found == []  # a prefix, not any part
    found = await store.schedules.find(1, prefix=second.id.lower())
    assert [s.id for s in found] == [second.id]
    await store.schedules.archive(1, second.id, now=NOW)
    assert await store.schedules.find(1, prefix=second.id) == []
    assert [s.id for s in await store.schedules.find(1, number=2)] == [second.id]
    assert await store.schedules.count_active(1) == 1
    assert (await store.schedules.add(schedule())).number == 3  # never reused


async def test_a_chat_keeps_its_zone_and_whether_it_blocked_the_bot(store: Stores) -> None:
    assert await store.chats.get(5) == ChatPrefs(5)
    await store.chats.set_timezone(5, "Europe/Berlin", NOW)
    await store.chats.set_blocked(5, "Forbidden: bot was blocked by the user", NOW)
    prefs = await store.chats.get(5)
    assert (prefs.timezone, prefs.blocked_at, prefs.block_reason) == (
        "Europe/Berlin",
        NOW,
        "Forbidden: bot was blocked by the user",
    )
    await store.chats.set_blocked(5, None, NOW + timedelta(hours=1))
    assert await store.chats.get(5) == ChatPrefs(5, "Europe/Berlin")
    assert await store.chats.get(6) == ChatPrefs(6)


async def set_schema_version(where: Location, version: int) -> None:
    """Stamp the database as written by a Tickler of that schema version: SQLite's
    user_version, or a row of PostgreSQL's tickler_schema (storage/postgres/schema.py)."""
    if is_postgres(where):
        raw = await asyncpg.connect(str(where))
        try:
            await raw.execute("INSERT INTO tickler_schema (version) VALUES ($1)", version)
        finally:
            await raw.close()
        return
    with sqlite3.connect(where) as lite:
        lite.execute(f"PRAGMA user_version = {version}")


async def test_a_database_from_a_newer_version_is_refused(location: Location) -> None:
    async with await open_store(location) as first:
        await first.schedules.add(schedule())
    await set_schema_version(location, 999)
    with pytest.raises(SchemaTooNew, match="version 999"):
        await open_store(location)


# --- EngineStore.claim: a fire with a free slot is written once, already running -------


def _a_minute_before(s: Schedule) -> Schedule:
    """`s` firing daily at 06:59, next at a minute before NOW."""
    return s.model_copy(
        update={
            "trigger": cron_trigger("59 6 * * *", "UTC"),
            "next_run_at": NOW - timedelta(minutes=1),
        }
    )


async def test_a_fire_with_a_free_slot_is_claimed_already_running(store: Stores) -> None:
    s = schedule()
    await store.schedules.add(s)
    claimed = await store.engine.claim(NOW, 10, plan_due_fires, owner="A", start=5)
    [started] = claimed.started
    assert [p.schedule_id for p in claimed.plans] == [s.id]
    assert started.run.status is RunStatus.RUNNING and started.run.attempt == 1
    assert (started.run.owner, started.run.started_at) == ("A", NOW)
    assert started.schedule.next_run_at == NOW + timedelta(days=1)
    # In the ledger as the acquisition would have left it, and not acquirable again.
    [row] = await store.runs.list_for_chat(1)
    assert (row.id, row.status, row.owner, row.attempt) == (
        started.run.id,
        RunStatus.RUNNING,
        "A",
        1,
    )
    assert await store.engine.acquire(NOW, 10, "B") == []
    assert await claim_due_fires(store, NOW, 10, plan_due_fires) == []
    done = AttemptOutcome(RunStatus.SUCCEEDED, finished_at=NOW + timedelta(seconds=1))
    finished = await finish_attempt(store, started, "A", done, trip_after=3)
    assert finished is not None and finished.run.status is RunStatus.SUCCEEDED
    [attempt] = await store.runs.attempts(1, started.run.id)
    assert (attempt.attempt, attempt.owner, attempt.started_at) == (1, "A", NOW)


async def test_without_a_slot_a_fresh_fire_is_held_and_an_old_one_queued(store: Stores) -> None:
    fresh, old = schedule(), schedule()
    old = _a_minute_before(old)
    await store.schedules.add(fresh)
    await store.schedules.add(old)
    claimed = await store.engine.claim(
        NOW, 10, plan_due_fires, owner="A", start=0, hold_until=NOW - timedelta(seconds=10)
    )
    # The old fire is in the ledger as pending; the fresh one's schedule is still due.
    assert [p.schedule_id for p in claimed.plans] == [old.id]
    assert claimed.started == []
    [pending] = await store.runs.list_for_chat(1)
    assert (pending.schedule_id, pending.status) == (old.id, RunStatus.PENDING)
    still = await store.schedules.get(1, fresh.id)
    assert still is not None and still.next_run_at == NOW
    assert await store.operations.count_due_schedules(NOW) == 1
    # The queued run takes the next slot; once it is done, the held fire starts at once.
    [first] = await store.engine.acquire(NOW, 1, "A")
    assert first.run.id == pending.id
    done = AttemptOutcome(RunStatus.SUCCEEDED, finished_at=NOW)
    await finish_attempt(store, first, "A", done, trip_after=3)
    claimed = await store.engine.claim(
        NOW, 10, plan_due_fires, owner="A", start=1, hold_until=NOW - timedelta(seconds=10)
    )
    [started] = claimed.started
    assert started.run.schedule_id == fresh.id and started.run.status is RunStatus.RUNNING


async def test_a_fire_behind_a_ready_backlog_is_queued_not_started(store: Stores) -> None:
    old, fresh = schedule(), schedule()
    old = _a_minute_before(old)
    await store.schedules.add(old)
    await store.schedules.add(fresh)
    await claim_due_fires(store, NOW - timedelta(minutes=1), 10, plan_due_fires)
    # A slot is free, but an earlier fire waits for one: the fresh fire queues behind
    # it instead of overtaking it.
    claimed = await store.engine.claim(NOW, 10, plan_due_fires, owner="A", start=1)
    assert claimed.started == [] and [p.schedule_id for p in claimed.plans] == [fresh.id]
    [first] = await store.engine.acquire(NOW, 1, "A")
    assert first.run.schedule_id == old.id
    [second] = await store.engine.acquire(NOW, 1, "A")
    assert second.run.schedule_id == fresh.id


async def test_a_fire_of_a_busy_schedule_is_queued_for_its_overlap_policy(store: Stores) -> None:
    s = schedule()
    await store.schedules.add(s)
    [running] = (await store.engine.claim(NOW, 10, plan_due_fires, owner="A", start=5)).started
    later = NOW + timedelta(days=1)
    claimed = await store.engine.claim(later, 10, plan_due_fires, owner="A", start=5)
    # Not started beside its running predecessor: written pending, and the overlap
    # policy (skip) decides at the acquisition.
    assert claimed.started == [] and len(claimed.plans) == 1
    assert await store.engine.acquire(later, 10, "A") == []
    runs = {r.scheduled_for: r for r in await store.runs.list_for_chat(1)}
    assert runs[later].status is RunStatus.SKIPPED and "overlap" in (runs[later].error or "")
    assert runs[NOW].id == running.run.id


async def test_a_settling_schedule_is_not_started_beside_its_last_run(store: Stores) -> None:
    s = schedule()
    await store.schedules.add(s)
    [first] = (await store.engine.claim(NOW, 10, plan_due_fires, owner="A", start=5)).started
    done = AttemptOutcome(RunStatus.SUCCEEDED, finished_at=NOW)
    await finish_attempt(store, first, "A", done, trip_after=3)
    later = NOW + timedelta(days=1)
    claimed = await store.engine.claim(
        later, 10, plan_due_fires, owner="A", start=5, settling={s.id}
    )
    assert claimed.started == []
    runs = {r.scheduled_for: r for r in await store.runs.list_for_chat(1)}
    assert runs[later].status is RunStatus.PENDING


async def test_an_instant_already_in_the_ledger_is_not_started_again(store: Stores) -> None:
    s = schedule()
    await store.schedules.add(s)
    # A backfill (or a second engine) wrote the very instant meanwhile, already done.
    done = Run(
        id=new_id(),
        schedule_id=s.id,
        chat_id=1,
        scheduled_for=NOW,
        trigger=RunTrigger.BACKFILL,
        status=RunStatus.SUCCEEDED,
        created_at=NOW,
        updated_at=NOW,
    )
    assert await store.runs.add(done)
    claimed = await store.engine.claim(NOW, 10, plan_due_fires, owner="A", start=5)
    assert claimed.started == []
    [row] = await store.runs.list_for_chat(1)
    assert (row.id, row.status) == (done.id, RunStatus.SUCCEEDED)


async def test_a_pause_skips_what_never_ran_and_cancels_a_planned_retry_saying_why(
    store: Stores,
) -> None:
    tried, fresh = schedule(), schedule()
    await store.schedules.add(tried)
    await claim_due_fires(store, NOW, 10, plan_due_fires)
    [one] = await store.engine.acquire(NOW, 10, "A")
    retry = AttemptOutcome(
        RunStatus.FAILED,
        finished_at=NOW + timedelta(seconds=1),
        error="HTTP 503",
        next_attempt_at=NOW + timedelta(minutes=1),
    )
    await finish_attempt(store, one, "A", retry, trip_after=3)
    await store.schedules.add(fresh)
    await claim_due_fires(store, NOW, 10, plan_due_fires)
    for s in (tried, fresh):
        await store.schedules.pause(1, s.id, by=None, reason="holiday", now=NOW)
    closed = {r.schedule_id: r for r in await store.runs.list_for_chat(1)}
    assert closed[tried.id].status is RunStatus.CANCELLED
    assert closed[fresh.id].status is RunStatus.SKIPPED
    for run in closed.values():
        assert run.skip_reason is SkipReason.PAUSED and run.error == "paused: holiday"


async def test_an_export_from_before_skip_reasons_imports_with_the_reason_its_text_meant(
    store: Stores, location: Location, new_location: Callable[[], Location], tmp_path: Path
) -> None:
    """What migration 0013 does to an old database, an import does to an old export: a
    skipped run without a stored reason gets the one its sentence meant, so /backfill
    still finds the missed fires; an unknown reason is refused."""
    s = schedule()
    await store.schedules.add(s)
    await claim_due_fires(store, NOW, 10, plan_due_fires)
    [paused] = await store.runs.list_for_chat(1)
    missed = paused.model_copy(
        update={
            "id": new_id(),
            "scheduled_for": NOW - timedelta(days=1),
            "status": RunStatus.SKIPPED,
            "error": "missed: skip policy",
            "skip_reason": SkipReason.MISSED,
        }
    )
    await store.runs.add(missed)
    await store.schedules.pause(1, s.id, by=None, reason="holiday", now=NOW)
    await export_database(location, tmp_path / "out")
    rewrite(tmp_path / "out", "runs.jsonl", None, lambda row: row.pop("skip_reason"))
    manifest = tmp_path / "out" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "schema_version": 12}))
    copy = new_location()
    await import_export(tmp_path / "out", copy)
    async with await open_store(copy) as imported:
        got = {r.error: r.skip_reason for r in await imported.runs.list_for_chat(1)}
    assert got == {"missed: skip policy": SkipReason.MISSED, "paused: holiday": SkipReason.PAUSED}

    rewrite(tmp_path / "out", "runs.jsonl", 1, lambda row: row.update(skip_reason="bogus"))
    with pytest.raises(ValueError, match="unknown skip_reason 'bogus'"):
        await import_export(tmp_path / "out", new_location())


async def _interruptions_after_one_more(where: Location) -> int:
    """Interrupt the imported run once more (its engine dies): how many times it has
    now been interrupted, as the engine's decision is told."""
    told: list[int] = []

    def put_back(run: Run, s: Schedule, times: int) -> AttemptOutcome:
        told.append(times)
        return AttemptOutcome(RunStatus.PENDING, finished_at=NOW, next_attempt_at=NOW)

    async with await open_store(where) as imported:
        await imported.engine.acquire(NOW, 10, "B")
        await imported.engine.reap(["B"], NOW, put_back)
    return told[0]


async def test_how_often_a_run_was_interrupted_survives_an_export_and_import(
    store: Stores, location: Location, new_location: Callable[[], Location], tmp_path: Path
) -> None:
    """After an import a run interrupted before may not be redelivered more often than
    it would have been; an export made before the tally was exported counts none."""
    await store.schedules.add(schedule())
    await claim_due_fires(store, NOW, 10, plan_due_fires)
    [running] = await store.engine.acquire(NOW, 10, "A")

    def put_back(run: Run, s: Schedule, times: int) -> AttemptOutcome:
        return AttemptOutcome(RunStatus.PENDING, finished_at=NOW, next_attempt_at=NOW)

    [reaped] = await store.engine.reap(["A"], NOW, put_back)
    assert reaped.run.id == running.run.id
    await export_database(location, tmp_path / "out")
    exported = (tmp_path / "out" / "runs.jsonl").read_text().splitlines()
    assert [json.loads(line)["interruptions"] for line in exported] == [1]
    copy = new_location()
    await import_export(tmp_path / "out", copy)
    assert await _interruptions_after_one_more(copy) == 2

    rewrite(tmp_path / "out", "runs.jsonl", 1, lambda row: row.pop("interruptions"))
    old = new_location()
    await import_export(tmp_path / "out", old)
    assert await _interruptions_after_one_more(old) == 1

    rewrite(tmp_path / "out", "runs.jsonl", 1, lambda row: row.update(interruptions=-1))
    with pytest.raises(ValueError, match="interruptions must be a whole number, 0 or more"):
        await import_export(tmp_path / "out", new_location())
