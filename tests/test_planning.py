"""Pure planning decisions: which fires a due schedule produces, and retry delays."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.models import (
    Action,
    MissedRunPolicy,
    Owner,
    Policies,
    RetryPolicy,
    RunStatus,
    RunTrigger,
    Schedule,
)
from scheduler.planning import (
    APPROVAL_WINDOW,
    MAX_RECORDED_MISSES,
    approval_deadline,
    plan_due_fires,
    retry_delay,
    runs_for_plan,
    walk_fires,
)
from scheduler.triggers import Trigger, cron_trigger, interval_trigger

T0 = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)


def schedule(trigger: Trigger, **policies: object) -> Schedule:
    return Schedule(
        id="S",
        chat_id=1,
        name="s",
        trigger=trigger,
        action=Action(text="x"),
        policies=Policies(**policies),
        owner=Owner(id=1),
        next_run_at=T0,
        created_at=T0 - timedelta(days=30),
        updated_at=T0,
    )


DAILY = cron_trigger("0 7 * * *", "UTC")


@pytest.mark.parametrize("policy", list(MissedRunPolicy))
def test_a_slightly_late_fire_is_on_time_whatever_the_policy(policy: MissedRunPolicy) -> None:
    plan = plan_due_fires(schedule(DAILY, missed_run=policy), T0 + timedelta(minutes=4))
    assert [(f.scheduled_for, f.trigger, f.status) for f in plan.fires] == [
        (T0, RunTrigger.SCHEDULE, RunStatus.PENDING)
    ]
    assert plan.missed == 0 and plan.next_run_at == T0 + timedelta(days=1)


def test_a_fire_late_beyond_the_grace_is_missed() -> None:
    plan = plan_due_fires(
        schedule(DAILY, missed_run=MissedRunPolicy.SKIP), T0 + timedelta(minutes=6)
    )
    assert [f.status for f in plan.fires] == [RunStatus.SKIPPED] and plan.missed == 1


def test_catch_up_once_with_a_current_fire_skips_every_missed_one() -> None:
    plan = plan_due_fires(schedule(DAILY), T0 + timedelta(days=2, minutes=1))
    assert [(f.trigger, f.status) for f in plan.fires] == [
        (RunTrigger.SCHEDULE, RunStatus.SKIPPED),
        (RunTrigger.SCHEDULE, RunStatus.SKIPPED),
        (RunTrigger.SCHEDULE, RunStatus.PENDING),
    ]
    assert plan.fires[0].reason == "missed: caught up once by the run for 2026-11-26T07:00:00Z"


def test_runs_that_need_approval_wait_for_it() -> None:
    plan = plan_due_fires(schedule(DAILY, requires_run_approval=True), T0)
    assert [f.status for f in plan.fires] == [RunStatus.AWAITING_APPROVAL]
    # Unanswered, it is skipped when the next fire comes (a day later here)...
    [run] = runs_for_plan(schedule(DAILY, requires_run_approval=True), plan, T0)
    assert run.next_attempt_at == T0 + timedelta(days=1)
    # ...or after a day at most, when the next fire is further off or never comes.
    assert approval_deadline(T0 + timedelta(days=7), T0) == T0 + APPROVAL_WINDOW
    assert approval_deadline(None, T0) == T0 + timedelta(hours=24)
    assert approval_deadline(T0 + timedelta(hours=1), T0) == T0 + timedelta(hours=1)


def test_a_minutely_schedule_down_for_a_year_is_summarised_not_walked_forever() -> None:
    every_minute = interval_trigger(60, T0)
    now = T0 + timedelta(days=365, seconds=30)
    plan = plan_due_fires(schedule(every_minute, missed_run=MissedRunPolicy.SKIP), now)
    assert len(plan.fires) == MAX_RECORDED_MISSES  # the newest, one row each
    assert plan.missed_truncated
    # The five fires of the last five minutes are on time and still run.
    on_time = [f for f in plan.fires if f.status is RunStatus.PENDING]
    assert [f.scheduled_for for f in on_time] == [
        T0 + timedelta(days=365) - timedelta(minutes=m) for m in range(4, -1, -1)
    ]
    expected = 365 * 24 * 60 + 1 - 5
    assert abs(plan.missed - expected) <= expected // 100
    assert plan.next_run_at == T0 + timedelta(days=365, minutes=1)


def test_walking_a_long_outage_counts_a_cron_closely() -> None:
    workdays = cron_trigger("*/10 9-17 * * 1-5", "Europe/Berlin")
    first = workdays.next_after(T0)
    assert first is not None
    until = first + timedelta(days=400)
    window = walk_fires(workdays, first, until, 100)
    exact = 1
    cursor = first
    while (cursor := workdays.next_after(cursor)) is not None and cursor <= until:  # type: ignore[assignment]
        exact += 1
    assert not window.exact
    assert abs(window.total - exact) <= exact // 20
    assert len(window.instants) == 100 and window.instants[-1] <= until


@pytest.mark.parametrize("attempt", range(1, 9))
def test_retry_delay_is_exponential_with_jitter_and_capped(attempt: int) -> None:
    policy = RetryPolicy()
    nominal = min(900.0, 30.0 * 2 ** (attempt - 1))
    rng = random.Random(attempt)
    delays = [retry_delay(policy, attempt, rng).total_seconds() for _ in range(200)]
    assert all(nominal / 2 <= d <= nominal for d in delays)
    assert len(set(delays)) > 100  # jittered, so retries of many runs spread out
