"""Multi-step plans (`action.kind: plan`), on every store: the real engine with a fake
clock posting over loopback HTTP to the agent stub. Each step is a run of its own that
shares the plan run's id and carries a key of its own; a failed step stops the plan
(the rest skipped, one notice), `continue_on_failure` goes on, a step may wait for
approval, and export/validate/import keeps the plan runs and their steps."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import HANG, AgentStub, RecordedRequest
from scheduler.engine import Engine, EngineConfig
from scheduler.engine_store import AttemptOutcome, FinishedAttempt
from scheduler.errors import UnreadableSchedule
from scheduler.models import (
    Action,
    ActionKind,
    MissedRunPolicy,
    Owner,
    Policies,
    RetryPolicy,
    Run,
    RunStatus,
    SkipReason,
    Step,
    TimeoutPolicy,
)
from scheduler.planning import FirePlan
from scheduler.service import LifecycleFires, ScheduleService, TriggerSpec
from storage.bundle import SqlStore
from storage.export import export_database, import_export, validate_export
from storage.locations import Location, is_postgres, open_store
from tests import test_store_contract as contract
from tests.test_export import rewrite

new_location = contract.new_location
location = contract.location
store = contract.store

CHAT = 4242
ADA = Owner(id=CHAT, first_name="Ada")
NIGHTLY = TriggerSpec(kind="cron", cron="0 2 * * *", timezone="Europe/Berlin")
#: Tuesday 24 November 2026, 02:00 in Berlin.
TWO = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
FAST_RETRY = RetryPolicy(max_attempts=2, base_seconds=1, cap_seconds=1)


def plan(*steps: Step) -> Action:
    return Action(kind=ActionKind.PLAN, text="Nightly", steps=steps)


COLLECT = Step(title="Collect", text="Collect what changed on {date}.")
SUMMARISE = Step(title="Summarise", text="Summarise it: {last_output}")
PUBLISH = Step(title="Publish", text="Publish the summary.")


class Notices:
    """The engine's Notifier, recording what it was told."""

    def __init__(self) -> None:
        self.finished: list[FinishedAttempt] = []

    async def run_finished(self, finished: FinishedAttempt) -> None:
        self.finished.append(finished)

    async def schedule_tripped(self, finished: FinishedAttempt) -> None:
        pass

    async def fires_missed(self, plan: FirePlan) -> None:
        pass

    async def runs_awaiting_approval(self, plan: FirePlan) -> None:
        pass

    async def schedule_quarantined(self, broken: UnreadableSchedule) -> None:
        pass

    async def schedule_over_budget(self, paused: object) -> None:
        pass

    def plans_stopped(self) -> list[FinishedAttempt]:
        """What bot/notifier.py turns into a "plan stopped" message: one per stop."""
        return [
            f
            for f in self.finished
            if f.run.status is RunStatus.DEAD and any(r.status is RunStatus.SKIPPED for r in f.then)
        ]


@pytest.fixture
def service(store: SqlStore, clock: FakeClock) -> ScheduleService:
    return ScheduleService(store, clock, default_timezone="Europe/Berlin")


@pytest.fixture
def notices() -> Notices:
    return Notices()


@pytest.fixture
async def engine(
    store: SqlStore, clock: FakeClock, dispatcher: HttpAgentDispatcher, notices: Notices
) -> AsyncIterator[Engine]:
    e = Engine(
        store.engine,
        clock,
        dispatcher,
        config=EngineConfig(),
        notifier=notices,
        rng=random.Random(7),
    )
    yield e
    await e.shutdown()


def answer_500_to(step: int) -> object:
    """The stub's behaviour: 500 to every delivery of that step (1-based), 200 otherwise."""

    def behaviour(request: RecordedRequest) -> int:
        return 500 if request.headers["idempotency-key"].endswith(f"#step-{step}") else 200

    return behaviour


def keys(stub: AgentStub) -> list[str]:
    return [r.headers["idempotency-key"] for r in stub.requests]


async def ledger(store: SqlStore, sid: str) -> list[Run]:
    runs = await store.runs.list_for_chat(CHAT, schedule_id=sid, limit=50)
    return sorted(runs, key=lambda r: r.scheduled_for)


async def make_plan(
    service: ScheduleService, action: Action, policies: Policies | None = None
) -> str:
    schedule = await service.create_schedule(
        CHAT,
        ADA,
        name="Nightly report",
        trigger=NIGHTLY,
        action=action,
        policies=policies or Policies(retry=FAST_RETRY),
    )
    return schedule.id


async def until_idle(engine: Engine, clock: FakeClock, rounds: int = 4) -> None:
    """Run, and let retries come due, a few times over."""
    for _ in range(rounds):
        await engine.run_until_idle()
        await clock.advance(timedelta(seconds=5))
    await engine.run_until_idle()


async def test_a_failed_step_skips_the_rest_with_one_notice_and_keys_per_step(
    service: ScheduleService,
    store: SqlStore,
    clock: FakeClock,
    engine: Engine,
    agent_stub: AgentStub,
    notices: Notices,
) -> None:
    sid = await make_plan(service, plan(COLLECT, SUMMARISE, PUBLISH))
    agent_stub.respond_with(answer_500_to(2))  # type: ignore[arg-type]
    await clock.set(TWO)
    await until_idle(engine, clock)

    first, second, third = await ledger(store, sid)
    assert [r.status for r in (first, second, third)] == [
        RunStatus.SUCCEEDED,
        RunStatus.DEAD,
        RunStatus.SKIPPED,
    ]
    assert [r.step for r in (first, second, third)] == [0, 1, 2]
    assert {r.plan_run_id for r in (first, second, third)} == {first.id}
    assert (third.skip_reason, third.error) == (SkipReason.PLAN_STOPPED, "step 2 failed")
    assert second.attempt == 2

    base = f"{sid}:2026-11-24T01:00:00Z"
    assert keys(agent_stub) == [f"{base}#step-1", f"{base}#step-2", f"{base}#step-2"]
    # Each step's prompt is its own, rendered for the plan's fire; {last_output} is the
    # previous step's answer (the stub answers telegram-mode deliveries with no text).
    texts = [r.json["message"]["text"] for r in agent_stub.requests]
    assert texts[0] == "Collect what changed on 24 November."
    assert texts[1].startswith("Summarise it:")
    update_ids = {r.json["update_id"] for r in agent_stub.requests}
    assert len(update_ids) == 2  # one per step; a retry repeats its step's id

    # One notice says the plan stopped, with the step that failed and the one skipped.
    [stopped] = notices.plans_stopped()
    assert stopped.run.id == second.id
    assert [r.id for r in stopped.then] == [third.id]
    assert [f for f in notices.finished if f.run.status is RunStatus.DEAD] == [stopped]

    # The next night is a plan run of its own, with keys of its own.
    agent_stub.respond_with(200)
    await clock.set(TWO + timedelta(days=1))
    await until_idle(engine, clock)
    runs = await ledger(store, sid)
    assert [r.status for r in runs[3:]] == [RunStatus.SUCCEEDED] * 3
    assert {r.plan_run_id for r in runs[3:]} == {runs[3].id}
    assert len(set(keys(agent_stub))) == 5


async def test_continue_on_failure_goes_on_to_the_next_step(
    service: ScheduleService,
    store: SqlStore,
    clock: FakeClock,
    engine: Engine,
    agent_stub: AgentStub,
    notices: Notices,
) -> None:
    lenient = SUMMARISE.model_copy(update={"continue_on_failure": True})
    sid = await make_plan(service, plan(COLLECT, lenient, PUBLISH))
    agent_stub.respond_with(answer_500_to(2))  # type: ignore[arg-type]
    await clock.set(TWO)
    await until_idle(engine, clock)
    assert [r.status for r in await ledger(store, sid)] == [
        RunStatus.SUCCEEDED,
        RunStatus.DEAD,
        RunStatus.SUCCEEDED,
    ]
    assert keys(agent_stub)[-1].endswith("#step-3")
    assert notices.plans_stopped() == []


async def test_a_step_waits_for_approval_and_approving_it_goes_on(
    service: ScheduleService,
    store: SqlStore,
    clock: FakeClock,
    engine: Engine,
    agent_stub: AgentStub,
    notices: Notices,
) -> None:
    guarded = PUBLISH.model_copy(update={"requires_approval": True})
    sid = await make_plan(service, plan(COLLECT, SUMMARISE, guarded))
    await clock.set(TWO)
    await until_idle(engine, clock)
    _, second, third = await ledger(store, sid)
    assert third.status is RunStatus.AWAITING_APPROVAL
    # Its deadline is the schedule's next fire, as for any run awaiting approval.
    assert third.next_attempt_at == TWO + timedelta(days=1)
    assert [f.then for f in notices.finished if f.run.id == second.id] == [(third,)]
    assert len(agent_stub.requests) == 2

    await service.approve_run(CHAT, third.id)
    await until_idle(engine, clock)
    assert [r.status for r in await ledger(store, sid)] == [RunStatus.SUCCEEDED] * 3
    assert keys(agent_stub)[-1].endswith("#step-3")

    # The next night the operator rejects it: the plan ends there, the step skipped.
    await clock.set(TWO + timedelta(days=1))
    await until_idle(engine, clock)
    waiting = (await ledger(store, sid))[-1]
    assert waiting.status is RunStatus.AWAITING_APPROVAL
    await service.skip_run(CHAT, waiting.id)
    assert (await ledger(store, sid))[-1].skip_reason is SkipReason.REJECTED


async def test_a_rejected_middle_step_skips_the_rest(
    service: ScheduleService,
    store: SqlStore,
    clock: FakeClock,
    engine: Engine,
) -> None:
    guarded = SUMMARISE.model_copy(update={"requires_approval": True})
    sid = await make_plan(service, plan(COLLECT, guarded, PUBLISH))
    await clock.set(TWO)
    await until_idle(engine, clock)
    _, second, *rest = await ledger(store, sid)
    assert second.status is RunStatus.AWAITING_APPROVAL and rest == []
    await service.skip_run(CHAT, second.id)
    runs = await ledger(store, sid)
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED, RunStatus.SKIPPED, RunStatus.SKIPPED]
    assert (runs[2].skip_reason, runs[2].error) == (SkipReason.PLAN_STOPPED, "step 2 did not run")

    # An approval nobody gives before its deadline stops the plan the same way.
    await clock.set(TWO + timedelta(days=1))
    await until_idle(engine, clock)
    assert (await ledger(store, sid))[-1].status is RunStatus.AWAITING_APPROVAL
    await clock.set(TWO + timedelta(days=2))
    await until_idle(engine, clock)
    second_night = (await ledger(store, sid))[3:6]
    assert [r.status for r in second_night] == [
        RunStatus.SUCCEEDED,
        RunStatus.SKIPPED,
        RunStatus.SKIPPED,
    ]
    assert second_night[2].skip_reason is SkipReason.PLAN_STOPPED


async def test_an_unknown_step_holds_the_plan_until_the_operator_retries_it(
    service: ScheduleService,
    store: SqlStore,
    clock: FakeClock,
    engine: Engine,
    agent_stub: AgentStub,
) -> None:
    policies = Policies(timeout_seconds=0.3, timeout_policy=TimeoutPolicy.ASK)
    sid = await make_plan(service, plan(COLLECT, SUMMARISE, PUBLISH), policies)
    agent_stub.script([200, HANG])
    await clock.set(TWO)
    await until_idle(engine, clock)
    assert [r.status for r in await ledger(store, sid)] == [
        RunStatus.SUCCEEDED,
        RunStatus.UNKNOWN,
    ]
    second = (await ledger(store, sid))[1]
    await service.retry(CHAT, second.id)
    await until_idle(engine, clock)
    assert [r.status for r in await ledger(store, sid)] == [RunStatus.SUCCEEDED] * 3
    # The retried step went out with the key it had.
    assert keys(agent_stub)[1] == keys(agent_stub)[2]
    assert len(set(keys(agent_stub))) == 3

    # The next night the operator marks the uncertain step done: the plan goes on.
    agent_stub.script([200, HANG])
    await clock.set(TWO + timedelta(days=1))
    await until_idle(engine, clock)
    night = (await ledger(store, sid))[3:]
    assert [r.status for r in night] == [RunStatus.SUCCEEDED, RunStatus.UNKNOWN]
    await service.mark_done(CHAT, night[1].id)
    await until_idle(engine, clock)
    assert [r.status for r in (await ledger(store, sid))[3:]] == [RunStatus.SUCCEEDED] * 3


async def test_retrying_a_failed_step_resumes_its_plan(
    service: ScheduleService,
    store: SqlStore,
    clock: FakeClock,
    engine: Engine,
    agent_stub: AgentStub,
) -> None:
    sid = await make_plan(service, plan(COLLECT, SUMMARISE, PUBLISH))
    agent_stub.respond_with(answer_500_to(2))  # type: ignore[arg-type]
    await clock.set(TWO)
    await until_idle(engine, clock)
    second = (await ledger(store, sid))[1]
    agent_stub.respond_with(200)
    await service.retry(CHAT, second.id)
    await until_idle(engine, clock)
    runs = await ledger(store, sid)
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * 3
    assert (runs[2].skip_reason, runs[2].error) == (None, None)


async def test_export_validate_import_keeps_plan_runs_and_refuses_a_broken_one(
    service: ScheduleService,
    store: SqlStore,
    location: Location,
    new_location: object,
    clock: FakeClock,
    engine: Engine,
    agent_stub: AgentStub,
    tmp_path: Path,
) -> None:
    sid = await make_plan(service, plan(COLLECT, SUMMARISE, PUBLISH))
    other = await make_plan(service, plan(COLLECT))
    agent_stub.respond_with(answer_500_to(2))  # type: ignore[arg-type]
    await clock.set(TWO)
    await until_idle(engine, clock)
    await engine.shutdown()
    before = await ledger(store, sid)

    folder = tmp_path / "export"
    await export_database(location, folder)
    assert validate_export(folder) == []
    rows = [json.loads(line) for line in (folder / "runs.jsonl").read_text().splitlines()]
    steps = sorted((r for r in rows if r["schedule_id"] == sid), key=lambda r: r["step"])
    assert [(r["plan_run_id"], r["step"]) for r in steps] == [(before[0].id, n) for n in range(3)]

    fresh = new_location()  # type: ignore[operator]
    await import_export(folder, fresh)
    restored = await open_store(fresh)
    try:
        assert await ledger(restored, sid) == before
    finally:
        await restored.close()
    if is_postgres(location):
        return

    # A step naming a plan run of another schedule, or none, is refused in one sentence.
    [other_first] = [r for r in rows if r["schedule_id"] == other]
    line = next(n for n, r in enumerate(rows, 1) if r["id"] == steps[2]["id"])
    rewrite(folder, "runs.jsonl", line, lambda r: r.update(plan_run_id=other_first["id"]))
    assert validate_export(folder) == [
        f"runs.jsonl:{line}: plan_run_id {other_first['id']!r} is a plan run of another schedule."
    ]
    rewrite(folder, "runs.jsonl", line, lambda r: r.update(plan_run_id="01NOSUCHPLANRUN"))
    [problem] = validate_export(folder)
    assert problem.endswith("does not match any plan run.")
    with pytest.raises(ValueError, match="does not match any plan run"):
        await import_export(folder, tmp_path / "refused.db")


async def test_a_schedule_after_a_plan_fires_once_when_the_plan_run_ends(
    service: ScheduleService,
    store: SqlStore,
    clock: FakeClock,
    engine: Engine,
    agent_stub: AgentStub,
) -> None:
    sid = await make_plan(service, plan(COLLECT, SUMMARISE, PUBLISH))
    followers = {}
    for on in ("success", "failure"):
        followers[on] = await service.create_schedule(
            CHAT,
            ADA,
            name=f"On {on}",
            trigger=TriggerSpec.model_validate({"kind": "after", "schedule": sid, "on": on}),
            action=Action(text="After: {event}"),
        )
    engine.lifecycle = LifecycleFires(service, [CHAT])
    await clock.set(TWO)
    await until_idle(engine, clock)
    assert [len(await ledger(store, f.id)) for f in followers.values()] == [1, 0]
    [after] = await ledger(store, followers["success"].id)
    last = (await ledger(store, sid))[-1]
    assert last.id in agent_stub.requests[-1].json["message"]["text"]
    assert after.status is RunStatus.SUCCEEDED

    # A step that stops the plan is its failure, once.
    agent_stub.respond_with(answer_500_to(2))  # type: ignore[arg-type]
    await clock.set(TWO + timedelta(days=1))
    await until_idle(engine, clock)
    assert [len(await ledger(store, f.id)) for f in followers.values()] == [1, 1]


async def test_retention_never_leaves_a_step_without_its_plan_run(
    service: ScheduleService,
    store: SqlStore,
    clock: FakeClock,
    engine: Engine,
    location: Location,
    tmp_path: Path,
) -> None:
    sid = await make_plan(service, plan(COLLECT, SUMMARISE, PUBLISH))
    for night in range(3):
        await clock.set(TWO + timedelta(days=night))
        await until_idle(engine, clock, rounds=1)
    await engine.shutdown()
    assert len(await ledger(store, sid)) == 9
    # Keeping the 5 latest would cut the middle night's plan run between its steps:
    # its first run stays as long as a later step of it does.
    await store.operations.prune_history(clock.now() + timedelta(days=1), keep=5, batch=100)
    kept = await ledger(store, sid)
    assert [(r.scheduled_for.date().day, r.step) for r in kept] == [
        (25, 0),
        (25, 1),
        (25, 2),
        (26, 0),
        (26, 1),
        (26, 2),
    ]
    folder = tmp_path / "pruned"
    await export_database(location, folder)
    assert validate_export(folder) == []


async def test_a_pause_ends_a_plan_begun_by_run_now_and_skips_what_is_left(
    service: ScheduleService,
    store: SqlStore,
    clock: FakeClock,
    engine: Engine,
    agent_stub: AgentStub,
) -> None:
    """The operator runs a plan now, sees step 2 go wrong (a retry is planned) and
    pauses the schedule: nothing more goes to the agent, and the plan's remaining step
    is in the ledger as skipped, not missing."""
    sid = await make_plan(service, plan(COLLECT, SUMMARISE, PUBLISH))
    agent_stub.respond_with(answer_500_to(2))  # type: ignore[arg-type]
    await service.run_now(CHAT, sid)
    await engine.run_until_idle()
    assert [r.status for r in await ledger(store, sid)] == [RunStatus.SUCCEEDED, RunStatus.FAILED]
    await service.pause(CHAT, sid, by=None)
    agent_stub.respond_with(200)
    await until_idle(engine, clock)
    first, second, third = await ledger(store, sid)
    assert [r.status for r in (first, second, third)] == [
        RunStatus.SUCCEEDED,
        RunStatus.CANCELLED,
        RunStatus.SKIPPED,
    ]
    assert third.skip_reason is SkipReason.PLAN_STOPPED and third.step == 2
    assert len(agent_stub.requests) == 2  # step 1, and step 2's one failed try


async def test_a_later_step_is_skipped_when_the_schedule_was_paused_after_it_was_written(
    store: SqlStore, service: ScheduleService, clock: FakeClock
) -> None:
    """A step written after a pause (its previous step ended meanwhile) of a plan an
    operator started by hand does not run: the pause came later than the run now."""
    sid = await make_plan(service, plan(COLLECT, SUMMARISE, PUBLISH))
    await service.run_now(CHAT, sid)
    [acquired] = await store.engine.acquire(clock.now(), 10, "e1")
    await service.pause(CHAT, sid, by=None)  # step 1 is running: nothing to close yet
    await store.engine.finish(
        [(acquired, AttemptOutcome(RunStatus.SUCCEEDED, finished_at=clock.now()))],
        "e1",
        trip_after=5,
    )
    assert await store.engine.acquire(clock.now(), 10, "e1") == []
    statuses = [(r.step, r.status, r.skip_reason) for r in await ledger(store, sid)]
    assert statuses == [
        (0, RunStatus.SUCCEEDED, None),
        (1, RunStatus.SKIPPED, SkipReason.PAUSED),
        (2, RunStatus.SKIPPED, SkipReason.PLAN_STOPPED),
    ]


async def test_a_missed_plan_fire_run_by_the_operator_runs_its_whole_plan(
    service: ScheduleService,
    store: SqlStore,
    clock: FakeClock,
    engine: Engine,
    agent_stub: AgentStub,
) -> None:
    """A fire missed while Tickler was down (missed_run: skip) is recorded as step 0 of
    its own plan run, so the operator's "run the latest" later runs every step."""
    sid = await make_plan(
        service,
        plan(COLLECT, SUMMARISE, PUBLISH),
        Policies(retry=FAST_RETRY, missed_run=MissedRunPolicy.SKIP),
    )
    await clock.set(TWO + timedelta(hours=3))  # the 02:00 fire passed while down
    await engine.run_until_idle()
    [missed] = await ledger(store, sid)
    assert (missed.status, missed.plan_run_id, missed.step) == (RunStatus.SKIPPED, missed.id, 0)
    changed = await service.settle_missed(
        CHAT, sid, missed.scheduled_for, missed.scheduled_for, "latest"
    )
    assert changed == 1
    await until_idle(engine, clock)
    assert [r.status for r in await ledger(store, sid)] == [RunStatus.SUCCEEDED] * 3
    assert [k.rsplit("#", 1)[1] for k in keys(agent_stub)] == ["step-1", "step-2", "step-3"]
