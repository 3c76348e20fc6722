"""The service layer: bad input is refused with one clear sentence and changes nothing;
operator actions on runs apply once."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from adapters.clocks import FakeClock
from scheduler.errors import InvalidSchedule, InvalidState, ScheduleNotFound
from scheduler.models import (
    Action,
    ActionKind,
    Owner,
    Policies,
    RetryPolicy,
    RunStatus,
    RunTrigger,
    Step,
    StepKind,
)
from scheduler.service import Limits, ScheduleService, TriggerSpec
from storage.sqlite_store import SqliteStore
from tests.engine_calls import claim_due_fires

CHAT = 5
ADA = Owner(id=5, first_name="Ada")


def cron(expr: str, tz: str | None = "Europe/Berlin") -> TriggerSpec:
    return TriggerSpec(kind="cron", cron=expr, timezone=tz)


@pytest.mark.parametrize(
    ("trigger", "action", "fragment"),
    [
        (cron("0 9 * *"), Action(text="hi"), "five fields"),
        (cron("61 9 * * *"), Action(text="hi"), "minute"),
        (cron("0 9 L * *"), Action(text="hi"), "five fields"),
        (cron("0 9 31 2 *"), Action(text="hi"), "never"),
        (cron("0 9 * * *", "Europe/Berlinn"), Action(text="hi"), "Did you mean Europe/Berlin?"),
        (TriggerSpec(kind="interval", every_seconds=0), Action(text="hi"), "interval"),
        (TriggerSpec(kind="interval", every_seconds=30), Action(text="hi"), "at least 1 minute"),
        (cron("0 9 * * *"), Action(text="x" * 4001), "limit is 4000"),
        (cron("0 9 * * *"), Action(text="   "), "empty"),
        (cron("0 9 * * *"), Action(text="Brief for {dat}"), "Unknown placeholder {dat}"),
        (cron("0 9 * * *"), Action(text="{date.__class__}"), "Unknown placeholder"),
        (cron("0 9 * * *"), Action(template="nope"), "no prompt template 'nope'"),
        (cron("0 9 * * *"), Action(kind=ActionKind.PLAN), "at least one step"),
        (cron("0 9 * * *"), Action(kind=ActionKind.BUNDLE), "at least one step"),
        (cron("0 9 * * *"), Action(text="hi", steps=(Step(text="a"),)), "Only a plan or"),
        (
            cron("0 9 * * *"),
            Action(kind=ActionKind.PLAN, steps=(Step(text="a"), Step(text=" "))),
            "Step 2's prompt is empty",
        ),
        (
            cron("0 9 * * *"),
            Action(kind=ActionKind.PLAN, steps=(Step(kind=StepKind.TASK, title="File it"),)),
            "a plan's steps are agent prompts",
        ),
        (
            cron("0 9 * * *"),
            Action(kind=ActionKind.PLAN, steps=(Step(text="{dat}"),)),
            "Unknown placeholder {dat}",
        ),
        (
            cron("0 9 * * *"),
            Action(kind=ActionKind.BUNDLE, steps=(Step(kind=StepKind.TASK),)),
            "Step 1 is a task without a title",
        ),
        (
            cron("0 9 * * *"),
            Action(
                kind=ActionKind.BUNDLE,
                steps=(Step(kind=StepKind.TASK, title="Send", offset_days=400),),
            ),
            "within 366 days",
        ),
        (
            cron("0 9 * * *"),
            Action(kind=ActionKind.BUNDLE, lead_days=-1, steps=(Step(text="a"),)),
            "Lead days must be",
        ),
        (
            cron("0 9 * * *"),
            Action(kind=ActionKind.BUNDLE, steps=(Step(text="a", continue_on_failure=True),)),
            "belong to plan steps",
        ),
    ],
)
async def test_bad_input_is_refused_with_one_sentence_and_changes_nothing(
    service: ScheduleService,
    store: SqliteStore,
    trigger: TriggerSpec,
    action: Action,
    fragment: str,
) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        await service.create_schedule(CHAT, ADA, name="x", trigger=trigger, action=action)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message and message.endswith((".", "?"))
    assert await store.schedules.list_for_chat(CHAT, include_archived=True) == []


@pytest.mark.parametrize(
    ("name", "trigger", "action", "policies", "field"),
    [
        ("x", cron("0 9 * *"), Action(text="hi"), None, "trigger.cron"),
        ("x", TriggerSpec(kind="cron"), Action(text="hi"), None, "trigger.cron"),
        ("x", cron("0 9 31 2 *"), Action(text="hi"), None, "trigger.cron"),
        ("x", cron("0 9 * * *", "Europe/Berlinn"), Action(text="hi"), None, "trigger.timezone"),
        ("x", TriggerSpec(kind="interval"), Action(text="hi"), None, "trigger.every_seconds"),
        (
            "x",
            TriggerSpec(kind="interval", every_seconds=30),
            Action(text="hi"),
            None,
            "trigger.every_seconds",
        ),
        (
            "x",
            TriggerSpec(kind="interval", every_seconds=3600, start_at=datetime(2030, 1, 1)),
            Action(text="hi"),
            None,
            "trigger.start_at",
        ),
        ("x", TriggerSpec(kind="once"), Action(text="hi"), None, "trigger.at"),
        ("x", cron("0 9 * * *"), Action(text="x" * 4001), None, "action.text"),
        ("x", cron("0 9 * * *"), Action(text="   "), None, "action.text"),
        ("x", cron("0 9 * * *"), Action(text="Brief for {dat}"), None, "action.text"),
        ("x", cron("0 9 * * *"), Action(template="nope"), None, "action.template"),
        (
            "x",
            cron("0 9 * * *"),
            Action(kind=ActionKind.TASK, text="t", assignee="a" * 200),
            None,
            "action.assignee",
        ),
        ("", cron("0 9 * * *"), Action(text="hi"), None, "name"),
        ("a\x00b", cron("0 9 * * *"), Action(text="hi"), None, "name"),
        ("x" * 81, cron("0 9 * * *"), Action(text="hi"), None, "name"),
        (
            "x",
            cron("0 9 * * *"),
            Action(text="hi"),
            Policies(retry=RetryPolicy(base_seconds=60, cap_seconds=30)),
            "policies.retry.cap_seconds",
        ),
    ],
)
async def test_a_refusal_names_the_field_it_is_about(
    service: ScheduleService,
    name: str,
    trigger: TriggerSpec,
    action: Action,
    policies: Policies | None,
    field: str,
) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        await service.create_schedule(
            CHAT, ADA, name=name, trigger=trigger, action=action, policies=policies
        )
    assert caught.value.field == field, str(caught.value)


async def test_a_chat_limit_names_no_field(store: SqliteStore, clock: FakeClock) -> None:
    service = ScheduleService(store, clock, limits=Limits(max_schedules_per_chat=1))
    await service.create_schedule(
        CHAT, ADA, name="one", trigger=cron("0 9 * * *"), action=Action(text="hi")
    )
    with pytest.raises(InvalidSchedule, match="the limit") as caught:
        await service.create_schedule(
            CHAT, ADA, name="two", trigger=cron("0 10 * * *"), action=Action(text="hi")
        )
    assert caught.value.field is None


async def test_a_once_in_the_past_is_refused(
    service: ScheduleService, store: SqliteStore, clock: FakeClock
) -> None:
    with pytest.raises(InvalidSchedule, match="past"):
        await service.create_schedule(
            CHAT,
            ADA,
            name="late",
            trigger=TriggerSpec(kind="once", at=clock.now() - timedelta(minutes=1)),
            action=Action(text="hi"),
        )
    assert await store.schedules.count_active(CHAT) == 0


async def test_per_chat_limit_is_enforced_with_the_limit_named(
    store: SqliteStore, clock: FakeClock
) -> None:
    service = ScheduleService(store, clock, limits=Limits(max_schedules_per_chat=1))
    await service.create_schedule(
        CHAT, ADA, name="a", trigger=cron("0 9 * * *"), action=Action(text="a")
    )
    with pytest.raises(InvalidSchedule, match="already has 1 schedules"):
        await service.create_schedule(
            CHAT, ADA, name="b", trigger=cron("0 9 * * *"), action=Action(text="b")
        )


async def test_an_update_with_bad_input_leaves_the_schedule_as_it_was(
    service: ScheduleService,
) -> None:
    s = await service.create_schedule(
        CHAT, ADA, name="a", trigger=cron("0 9 * * *"), action=Action(text="a")
    )
    with pytest.raises(InvalidSchedule):
        await service.update_schedule(CHAT, s.id, name="b", trigger=cron("0 25 * * *"))
    assert await service.get_schedule(CHAT, s.id) == s


async def test_one_chat_never_sees_another_chats_schedules(service: ScheduleService) -> None:
    s = await service.create_schedule(
        CHAT, ADA, name="a", trigger=cron("0 9 * * *"), action=Action(text="a")
    )
    with pytest.raises(ScheduleNotFound):
        await service.get_schedule(CHAT + 1, s.id)
    with pytest.raises(ScheduleNotFound):
        await service.pause(CHAT + 1, s.id, by=1)
    assert await service.list_schedules(CHAT + 1) == []


async def test_pause_keeps_history_and_resume_fires_only_future_windows(
    service: ScheduleService, clock: FakeClock
) -> None:
    s = await service.create_schedule(
        CHAT, ADA, name="a", trigger=cron("0 9 * * *"), action=Action(text="a")
    )
    run = await service.run_now(CHAT, s.id)
    paused = await service.pause(CHAT, s.id, by=ADA.id, reason="holiday")
    assert not paused.enabled and paused.pause_reason == "holiday"
    [skipped] = await service.history(CHAT, s.id)
    assert skipped.id == run.id and skipped.status is RunStatus.SKIPPED
    with pytest.raises(InvalidState, match="already paused"):
        await service.pause(CHAT, s.id, by=ADA.id)
    await clock.advance(timedelta(days=3))
    result = await service.resume(CHAT, s.id)
    resumed = result.schedule
    assert resumed.next_run_at is not None and resumed.next_run_at > clock.now()
    # The three windows that passed while paused are recorded, not fired.
    assert result.skipped_while_paused == 3
    history = await service.history(CHAT, s.id)
    assert len(history) == 4
    assert [r.error for r in history if r.id != run.id] == ["schedule was paused"] * 3


async def test_run_now_retry_and_decisions_apply_once(
    service: ScheduleService, store: SqliteStore
) -> None:
    s = await service.create_schedule(
        CHAT, ADA, name="a", trigger=cron("0 9 * * *"), action=Action(text="a")
    )
    run = await service.run_now(CHAT, s.id)
    assert run.trigger is RunTrigger.MANUAL and run.status is RunStatus.PENDING
    with pytest.raises(InvalidState, match="only dead runs"):
        await service.retry(CHAT, run.id)
    with pytest.raises(InvalidState):
        await service.mark_done(CHAT, run.id)
    archived = await service.archive(CHAT, s.id)
    assert archived.archived_at is not None
    assert await service.list_schedules(CHAT) == []
    with pytest.raises(ScheduleNotFound):
        await service.get_schedule(CHAT, s.id)


async def test_settle_missed_runs_latest_all_or_none_and_applies_once(
    service: ScheduleService, store: SqliteStore, clock: FakeClock
) -> None:
    from scheduler.models import Policies
    from scheduler.planning import plan_due_fires

    s = await service.create_schedule(
        CHAT,
        ADA,
        name="brief",
        trigger=cron("0 9 * * *"),
        action=Action(text="a"),
        policies=Policies(catch_up_cap=3),
    )
    # Down for four days: the engine's default policy (catch up once) runs the newest
    # missed fire and records the other three as skipped.
    await clock.advance(timedelta(days=4))
    [plan] = await claim_due_fires(store, clock.now(), 10, plan_due_fires)
    assert plan.missed == 4 and plan.first_missed and plan.last_missed
    first, last = plan.first_missed, plan.last_missed

    async def statuses() -> list[tuple[RunStatus, RunTrigger]]:
        runs = await store.runs.list_for_chat(CHAT, schedule_id=s.id)
        return [(r.status, r.trigger) for r in reversed(runs)]  # oldest first

    skipped = (RunStatus.SKIPPED, RunTrigger.SCHEDULE)
    pending = (RunStatus.PENDING, RunTrigger.CATCH_UP)
    assert await statuses() == [skipped, skipped, skipped, pending]

    # Another chat cannot touch it.
    with pytest.raises(ScheduleNotFound):
        await service.settle_missed(CHAT + 1, s.id, first, last, "skip")
    # The latest already runs: nothing to change.
    assert await service.settle_missed(CHAT, s.id, first, last, "latest") == 0
    # Skip: the catch-up run is skipped, once.
    assert await service.settle_missed(CHAT, s.id, first, last, "skip") == 1
    assert await service.settle_missed(CHAT, s.id, first, last, "skip") == 0
    newest = (await store.runs.list_for_chat(CHAT, schedule_id=s.id))[0]
    assert newest.status is RunStatus.SKIPPED
    assert newest.error == "missed: skipped by the operator"
    assert await statuses() == [skipped, skipped, skipped, (RunStatus.SKIPPED, RunTrigger.CATCH_UP)]
    # Latest: only the newest fire runs again, due now.
    assert await service.settle_missed(CHAT, s.id, first, last, "latest") == 1
    assert await service.settle_missed(CHAT, s.id, first, last, "latest") == 0
    newest = (await store.runs.list_for_chat(CHAT, schedule_id=s.id))[0]
    assert newest.next_attempt_at == clock.now() and newest.error is None
    assert await statuses() == [skipped, skipped, skipped, pending]
    # All: every missed fire runs, capped at the newest three.
    assert await service.settle_missed(CHAT, s.id, first, last, "all") == 2
    assert await service.settle_missed(CHAT, s.id, first, last, "all") == 0
    assert await statuses() == [skipped, pending, pending, pending]
    # A window that holds nothing changes nothing.
    later = clock.now() + timedelta(days=1)
    assert await service.settle_missed(CHAT, s.id, later, later, "all") == 0
    # A paused schedule does not run missed fires until it is resumed.
    await service.pause(CHAT, s.id, by=ADA.id)
    with pytest.raises(InvalidState, match="resume"):
        await service.settle_missed(CHAT, s.id, first, last, "latest")
