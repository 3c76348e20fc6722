"""Pure decisions: which fires a due schedule produces, and when a failed attempt retries.

Nothing here reads a clock or touches storage; the engine passes `now` in and
the store applies the returned plan inside the claiming transaction.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scheduler.ids import new_id
from scheduler.models import (
    ActionKind,
    MissedRunPolicy,
    RetryPolicy,
    Run,
    RunStatus,
    RunTrigger,
    Schedule,
    SkipReason,
)
from scheduler.timeutil import format_utc
from scheduler.triggers import Trigger

__all__ = [
    "APPROVAL_DEADLINE_REASON",
    "APPROVAL_WINDOW",
    "DEFAULT_MISFIRE_GRACE",
    "MAX_RECORDED_MISSES",
    "FirePlan",
    "FireWindow",
    "PlannedFire",
    "approval_deadline",
    "first_step",
    "manual_run",
    "plan_due_fires",
    "retry_delay",
    "runs_for_plan",
    "skipped_run",
    "started_run",
    "walk_fires",
]

#: A fire this late is still "on time": the loop may wake a little after the instant
#: or be briefly busy; only beyond this does the missed-run policy apply.
DEFAULT_MISFIRE_GRACE = timedelta(minutes=5)

#: How many missed fires of one schedule are written one row each; beyond this the
#: plan only counts them, and the operator sees "N missed while offline". Keeps a
#: minutely schedule that was down for a month from writing 43,200 rows at start-up.
MAX_RECORDED_MISSES = 1000
#: The longest a fire waits for an operator's Approve/Skip; see `approval_deadline`.
APPROVAL_WINDOW = timedelta(hours=24)
APPROVAL_DEADLINE_REASON = "approval deadline passed"
_EPSILON = timedelta(microseconds=1)
#: How much of a long outage is walked to measure a trigger's density: whole weeks,
#: or this many fires for a dense trigger, whichever comes first.
_SAMPLE_SPAN = timedelta(days=28)
_SAMPLE_LIMIT = 20_000


@dataclass(frozen=True)
class PlannedFire:
    scheduled_for: datetime
    trigger: RunTrigger
    status: RunStatus
    reason: str | None = None


@dataclass(frozen=True)
class FirePlan:
    schedule_id: str
    chat_id: int
    fires: list[PlannedFire] = field(default_factory=list)
    next_run_at: datetime | None = None
    #: Fires that passed beyond the grace period (run as catch-up or skipped).
    missed: int = 0
    #: True when more fires were missed than were recorded one row each.
    missed_truncated: bool = False
    first_missed: datetime | None = None
    last_missed: datetime | None = None

    @property
    def to_run(self) -> list[PlannedFire]:
        return [f for f in self.fires if f.status is not RunStatus.SKIPPED]


@dataclass(frozen=True)
class FireWindow:
    """The fire instants of a trigger within [first, until]."""

    #: The newest instants, oldest first, at most the `keep` asked for.
    instants: list[datetime]
    #: How many instants the span holds in all.
    total: int
    #: False when `total` was estimated because the span was too long to walk.
    exact: bool
    #: The first instant after `until`, or None if the trigger is exhausted.
    next_after: datetime | None


def walk_fires(trigger: Trigger, first: datetime, until: datetime, keep: int) -> FireWindow:
    """Enumerate the instants from `first` (itself a fire instant) up to `until`.

    A span with more instants than can be walked quickly (a minutely schedule that
    was down for months) is not walked whole: its start is walked over whole weeks
    (so weekday patterns average out), the middle is counted from that density, and
    only the newest part is walked, so planning stays bounded whatever the outage.
    """
    walk_limit = 2 * keep + 16
    head: list[datetime] = []
    walk = itertools.chain([first], trigger.fires(first))
    # The first instant not taken into `head`: past `until`, or where sampling stopped.
    cursor = next(walk, None)
    while cursor is not None and cursor <= until:
        sampled = cursor - first >= _SAMPLE_SPAN or len(head) >= _SAMPLE_LIMIT
        if len(head) >= walk_limit and sampled:
            break
        head.append(cursor)
        cursor = next(walk, None)
    if cursor is None or cursor > until:
        return FireWindow(head[-keep:], len(head), True, cursor)

    density = len(head) / (cursor - first).total_seconds()  # fires per second
    tail_from = max(cursor, until - timedelta(seconds=keep / density))
    middle = round(density * (tail_from - cursor).total_seconds())
    tail: deque[datetime] = deque(maxlen=keep)
    walked_tail = 0
    tail_walk = trigger.fires(tail_from - _EPSILON)
    cursor = next(tail_walk, None)
    while cursor is not None and cursor <= until:
        tail.append(cursor)
        walked_tail += 1
        cursor = next(tail_walk, None)
    instants = (head + list(tail))[-keep:]
    return FireWindow(instants, len(head) + middle + walked_tail, False, cursor)


def plan_due_fires(
    schedule: Schedule,
    now: datetime,
    grace: timedelta = DEFAULT_MISFIRE_GRACE,
) -> FirePlan:
    """Turn the fire instants in [next_run_at, now] into planned runs.

    Instants within `grace` of `now` are on time and run as scheduled. Older ones
    were missed (engine down or stalled) and follow the schedule's missed-run
    policy. Every instant ends in the plan, run or skipped with a reason, or (past
    MAX_RECORDED_MISSES) counted in `missed` for the operator's summary, so nothing
    is skipped silently.
    """
    first = schedule.next_run_at
    if first is None or first > now:
        return FirePlan(schedule.id, schedule.chat_id, next_run_at=first)
    pending = (
        RunStatus.AWAITING_APPROVAL
        if schedule.policies.requires_run_approval or _first_step_waits(schedule)
        else RunStatus.PENDING
    )
    if now - first <= grace:
        # The usual case, and a burst's every fire: one instant due, on time. Whatever
        # the policy, the general path below plans exactly this, only slower.
        after = schedule.trigger.next_after(first)
        if after is None or after > now:
            return FirePlan(
                schedule.id,
                schedule.chat_id,
                fires=[PlannedFire(first, RunTrigger.SCHEDULE, pending)],
                next_run_at=after,
            )

    window = walk_fires(schedule.trigger, first, now, MAX_RECORDED_MISSES)
    on_time = [t for t in window.instants if now - t <= grace]
    missed = [t for t in window.instants if now - t > grace]
    missed_total = window.total - len(on_time)

    fires: list[PlannedFire] = []
    policy = schedule.policies.missed_run
    if policy is MissedRunPolicy.SKIP:
        fires += [
            PlannedFire(t, RunTrigger.SCHEDULE, RunStatus.SKIPPED, "missed: skip policy")
            for t in missed
        ]
    elif policy is MissedRunPolicy.CATCH_UP_ONCE:
        # An on-time fire already catches up; otherwise the newest missed one runs.
        run_one = missed[-1] if missed and not on_time else None
        # Only skipped fires name it; most plans have none (formatting is not free).
        covering = format_utc(run_one or (on_time[0] if on_time else now)) if missed else ""
        for t in missed:
            if t == run_one:
                fires.append(PlannedFire(t, RunTrigger.CATCH_UP, pending))
            else:
                fires.append(
                    PlannedFire(
                        t,
                        RunTrigger.SCHEDULE,
                        RunStatus.SKIPPED,
                        f"missed: caught up once by the run for {covering}",
                    )
                )
    else:
        cap = schedule.policies.catch_up_cap
        kept = missed[-cap:]
        fires += [
            PlannedFire(
                t,
                RunTrigger.SCHEDULE,
                RunStatus.SKIPPED,
                f"missed: beyond the catch-up cap of {cap}",
            )
            for t in missed[: len(missed) - len(kept)]
        ]
        fires += [PlannedFire(t, RunTrigger.CATCH_UP, pending) for t in kept]
    fires += [PlannedFire(t, RunTrigger.SCHEDULE, pending) for t in on_time]
    return FirePlan(
        schedule.id,
        schedule.chat_id,
        fires=fires,
        next_run_at=window.next_after,
        missed=missed_total,
        missed_truncated=missed_total > len(missed),
        first_missed=first if missed_total else None,
        last_missed=missed[-1] if missed else None,
    )


def retry_delay(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with "equal jitter": half fixed, half random, so retries of
    many runs that failed together spread out but never come back sooner than half
    the nominal delay. `attempt` is the number of the attempt that just failed (1-based).
    """
    nominal = min(policy.cap_seconds, policy.base_seconds * 2 ** max(0, attempt - 1))
    r = (rng or random).random()
    return timedelta(seconds=nominal / 2 + r * nominal / 2)


def manual_run(schedule: Schedule, now: datetime, trigger: RunTrigger = RunTrigger.MANUAL) -> Run:
    """A run outside the schedule's own fires (run now, backfill); its instant is its key."""
    run_id = new_id()
    return Run(
        id=run_id,
        schedule_id=schedule.id,
        chat_id=schedule.chat_id,
        scheduled_for=now,
        trigger=trigger,
        status=RunStatus.PENDING,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
        **first_step(schedule, run_id),
    )


def event_run(schedule: Schedule, now: datetime) -> Run:
    """The run an event (a posted one, a start, an upstream's end) makes: as a manual run,
    but nobody present asked for it, so a schedule whose runs need approval (or whose
    plan's first step does) waits for it as its own fires do."""
    run = manual_run(schedule, now, RunTrigger.EVENT)
    if not (schedule.policies.requires_run_approval or _first_step_waits(schedule)):
        return run
    return run.model_copy(
        update={
            "status": RunStatus.AWAITING_APPROVAL,
            "next_attempt_at": approval_deadline(schedule.next_run_at, now),
        }
    )


def first_step(schedule: Schedule, run_id: str) -> dict[str, object]:
    """The plan fields of a fire's run: a plan schedule's fire is step 0 of a plan run
    whose id is its own (scheduler/plans.py); nothing for other schedules."""
    if schedule.action.kind is not ActionKind.PLAN:
        return {}
    return {"plan_run_id": run_id, "step": 0}


def _first_step_waits(schedule: Schedule) -> bool:
    steps = schedule.action.steps
    return schedule.action.kind is ActionKind.PLAN and bool(steps) and steps[0].requires_approval


def approval_deadline(next_fire: datetime | None, now: datetime) -> datetime:
    """When a fire planned at `now` that waits for approval is skipped unanswered: at the
    schedule's next fire (an answer after it would run two windows back to back), and
    never later than APPROVAL_WINDOW after it was asked (a one-time schedule has no next
    fire; a weekly one should not wait a week). A waiting run keeps this instant in its
    `next_attempt_at`, the time the engine next acts on it."""
    latest = now + APPROVAL_WINDOW
    return latest if next_fire is None else min(next_fire, latest)


def runs_for_plan(schedule: Schedule, plan: FirePlan, now: datetime) -> list[Run]:
    """The ledger rows a plan writes."""
    out = []
    deadline = approval_deadline(plan.next_run_at, now)
    for fire in plan.fires:
        if fire.status is RunStatus.SKIPPED:
            out.append(skipped_run(schedule, fire.scheduled_for, fire.reason or "skipped", now))
            continue
        # A pending run is ready at its instant; one awaiting approval keeps its deadline.
        waits = fire.status is RunStatus.AWAITING_APPROVAL
        run_id = new_id()
        out.append(
            Run(
                id=run_id,
                schedule_id=schedule.id,
                chat_id=schedule.chat_id,
                scheduled_for=fire.scheduled_for,
                trigger=fire.trigger,
                status=fire.status,
                next_attempt_at=deadline if waits else fire.scheduled_for,
                created_at=now,
                updated_at=now,
                **first_step(schedule, run_id),
            )
        )
    return out


def started_run(schedule: Schedule, fire: PlannedFire, owner: str, now: datetime) -> Run:
    """The run of a plan's one pending fire, written already running as its first
    attempt: what `runs_for_plan` and then starting it (runs.mark_running) would leave,
    built as one model instead of a model and a copy of it."""
    run_id = new_id()
    return Run(
        id=run_id,
        schedule_id=schedule.id,
        chat_id=schedule.chat_id,
        scheduled_for=fire.scheduled_for,
        trigger=fire.trigger,
        status=RunStatus.RUNNING,
        attempt=1,
        next_attempt_at=fire.scheduled_for,
        started_at=now,
        owner=owner,
        created_at=now,
        updated_at=now,
        **first_step(schedule, run_id),
    )


def skipped_run(
    schedule: Schedule,
    instant: datetime,
    reason: str,
    now: datetime,
    kind: SkipReason = SkipReason.MISSED,
) -> Run:
    """A fire instant recorded as not run, with the reason: never a silent skip. A plan
    schedule's carries its plan fields: an operator may still run it (/backfill)."""
    run_id = new_id()
    return Run(
        id=run_id,
        schedule_id=schedule.id,
        chat_id=schedule.chat_id,
        scheduled_for=instant,
        trigger=RunTrigger.SCHEDULE,
        status=RunStatus.SKIPPED,
        finished_at=now,
        error=reason,
        skip_reason=kind,
        created_at=now,
        updated_at=now,
        **first_step(schedule, run_id),
    )
