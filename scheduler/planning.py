"""Pure decisions: which fires a due schedule produces, and when a failed attempt retries.

Nothing here reads a clock or touches storage; the engine passes `now` in and
the store applies the returned plan inside the claiming transaction.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scheduler.ids import new_id
from scheduler.models import MissedRunPolicy, RetryPolicy, Run, RunStatus, RunTrigger, Schedule
from scheduler.timeutil import format_utc

__all__ = [
    "DEFAULT_MISFIRE_GRACE",
    "MAX_RECORDED_MISSES",
    "FirePlan",
    "PlannedFire",
    "manual_run",
    "plan_due_fires",
    "retry_delay",
]

#: A fire this late is still "on time": the loop may wake a little after the instant
#: or be briefly busy; only beyond this does the missed-run policy apply.
DEFAULT_MISFIRE_GRACE = timedelta(minutes=5)

#: How many missed fires of one schedule are written one row each; beyond this the
#: plan only counts them, and the operator sees "N missed while offline". Keeps a
#: minutely schedule that was down for a month from writing 43,200 rows at start-up.
MAX_RECORDED_MISSES = 1000
_JUMP_AFTER = 100_000
_RECENT = timedelta(days=1)


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
    #: True when there were more missed fires than MAX_RECORDED_MISSES.
    missed_truncated: bool = False

    @property
    def to_run(self) -> list[PlannedFire]:
        return [f for f in self.fires if f.status is not RunStatus.SKIPPED]


def plan_due_fires(
    schedule: Schedule,
    now: datetime,
    grace: timedelta = DEFAULT_MISFIRE_GRACE,
) -> FirePlan:
    """Turn the fire instants in [next_run_at, now] into planned runs.

    The latest instant within `grace` of `now` is the current fire and runs as
    scheduled. Older instants were missed (engine down or stalled) and follow the
    schedule's missed-run policy. Every instant ends in the plan, run or skipped
    with a reason, so nothing is skipped silently.
    """
    first = schedule.next_run_at
    if first is None or first > now:
        return FirePlan(schedule.id, schedule.chat_id, next_run_at=first)

    window: deque[datetime] = deque(maxlen=MAX_RECORDED_MISSES + 1)
    seen = 0
    jumped = False
    cursor: datetime | None = first
    while cursor is not None and cursor <= now:
        window.append(cursor)
        seen += 1
        if seen == _JUMP_AFTER and now - cursor > _RECENT:
            # Years of a minutely schedule: stop walking; the recent day is enough
            # to record, and the count of the rest is estimated below.
            cursor = schedule.trigger.next_after(now - _RECENT)
            jumped = True
            continue
        cursor = schedule.trigger.next_after(cursor)
    next_run_at = cursor
    instants = list(window)
    truncated = seen > len(instants)
    dropped = _estimate_dropped(first, instants) if jumped else seen - len(instants)

    current: datetime | None = None
    if now - instants[-1] <= grace:
        current = instants.pop()
    missed = instants

    pending = (
        RunStatus.AWAITING_APPROVAL
        if schedule.policies.requires_run_approval
        else RunStatus.PENDING
    )
    fires: list[PlannedFire] = []
    policy = schedule.policies.missed_run
    if policy is MissedRunPolicy.SKIP:
        fires += [
            PlannedFire(t, RunTrigger.SCHEDULE, RunStatus.SKIPPED, "missed: skip policy")
            for t in missed
        ]
    elif policy is MissedRunPolicy.CATCH_UP_ONCE:
        run_one = missed[-1] if missed and current is None else None
        for t in missed:
            if t == run_one:
                fires.append(PlannedFire(t, RunTrigger.CATCH_UP, pending))
            else:
                later = format_utc(run_one or current or t)
                fires.append(
                    PlannedFire(
                        t,
                        RunTrigger.SCHEDULE,
                        RunStatus.SKIPPED,
                        f"missed: caught up once by the run for {later}",
                    )
                )
    else:
        cap = schedule.policies.catch_up_cap
        keep = missed[-cap:] if cap else []
        for t in missed[: len(missed) - len(keep)]:
            fires.append(
                PlannedFire(
                    t,
                    RunTrigger.SCHEDULE,
                    RunStatus.SKIPPED,
                    f"missed: beyond the catch-up cap of {cap}",
                )
            )
        fires += [PlannedFire(t, RunTrigger.CATCH_UP, pending) for t in keep]
    if current is not None:
        fires.append(PlannedFire(current, RunTrigger.SCHEDULE, pending))
    return FirePlan(
        schedule.id,
        schedule.chat_id,
        fires=fires,
        next_run_at=next_run_at,
        missed=len(missed) + dropped,
        missed_truncated=truncated,
    )


def _estimate_dropped(first: datetime, window: list[datetime]) -> int:
    if len(window) < 2:
        return 0
    spacing = (window[-1] - window[0]) / (len(window) - 1)
    if spacing <= timedelta(0):
        return 0
    return max(0, int((window[0] - first) / spacing))


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
    return Run(
        id=new_id(),
        schedule_id=schedule.id,
        chat_id=schedule.chat_id,
        scheduled_for=now,
        trigger=trigger,
        status=RunStatus.PENDING,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
