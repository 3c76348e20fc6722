"""Pure scheduling rules the engine store applies inside its transactions.

The store reads rows, asks these functions what each row becomes, and writes that:
which claimed fire starts at once, waits as a pending run or is held for a slot
(`claim_fates`); which ready run starts, waits or is skipped (`acquisition`); why an
inactive schedule's run does not start (`inactive_reason`); and whether a run that
will not run is `skipped` or `cancelled` (`closing_status`). None of them reads a
clock or a database, so each is tested from a table (tests/test_policies.py).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from scheduler.models import OverlapPolicy, RunStatus, RunTrigger, Schedule, SkipReason
from scheduler.planning import FirePlan

__all__ = [
    "OWN_FIRES",
    "Acquisition",
    "ClaimCandidate",
    "Fate",
    "ReadyRun",
    "acquisition",
    "claim_fates",
    "closing_status",
    "inactive_reason",
    "starts_alone",
]


#: Fires the schedule itself made (an event it listens to among them); an operator's run
#: now or retry goes through a pause.
OWN_FIRES = frozenset(
    {RunTrigger.SCHEDULE, RunTrigger.CATCH_UP, RunTrigger.BACKFILL, RunTrigger.EVENT}
)

ARCHIVED_TEXT = "schedule is archived"
TRIPPED_TEXT = "circuit breaker tripped"
PAUSED_TEXT = "schedule is paused"
OVERLAP_TEXT = "overlap: the previous run was still running"


def inactive_reason(schedule: Schedule, trigger: RunTrigger) -> tuple[SkipReason, str] | None:
    """Why a ready run of `schedule` must not start now (and the sentence for the
    operator), or None when it may. An archived schedule starts nothing; a paused or
    tripped one starts only what an operator asked for (run now, retry)."""
    if schedule.archived_at is not None:
        return SkipReason.ARCHIVED, ARCHIVED_TEXT
    if trigger in OWN_FIRES:
        if schedule.tripped:
            return SkipReason.TRIPPED, TRIPPED_TEXT
        if not schedule.enabled:
            return SkipReason.PAUSED, PAUSED_TEXT
    return None


def closing_status(status: RunStatus, attempt: int, interruptions: int) -> RunStatus:
    """The status of a run closed before it ran: `skipped` means never sent to the
    agent; a run already tried (a planned retry, or one put back after an attempt, or
    interrupted, which may have reached the agent) is `cancelled`."""
    if status is RunStatus.FAILED or attempt > 0 or interruptions > 0:
        return RunStatus.CANCELLED
    return RunStatus.SKIPPED


class Fate(Enum):
    """What one claimed fire becomes in its claim."""

    #: Written already running under the claiming engine: it has a slot.
    START = "start"
    #: Written as pending run(s), for the acquisition (the overlap policy decides).
    PENDING = "pending"
    #: Not claimed: the schedule stays due until a slot frees (`hold_until`).
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class ClaimCandidate:
    """A due schedule read by a claim, with the plan made for it."""

    schedule: Schedule
    plan: FirePlan


def starts_alone(plan: FirePlan) -> bool:
    """A plan of one pending fire may start in its claim; a plan of several (a
    catch-up) is ordered by the acquisition, one run after the other."""
    return len(plan.fires) == 1 and plan.fires[0].status is RunStatus.PENDING


def claim_fates(
    candidates: Sequence[ClaimCandidate],
    *,
    start: int,
    busy: Collection[str],
    settling: Collection[str],
    waiting: datetime | None,
    hold_until: datetime | None,
) -> list[Fate]:
    """What each candidate's fires become, in order.

    A fire starts in its claim (up to `start` of them) only where the acquisition would
    have taken it first: its plan is that one fire; its schedule has no other run open
    (`busy`: running, pending, or failed awaiting a retry; nor `settling`, a run whose
    outcome is being written), since the overlap policy or a retry's place decides
    there; and no ready run waits from an earlier instant (`waiting`). Such a fire that
    finds no slot left is held, unclaimed, if it came due after `hold_until`; any other
    fire is written as pending runs.
    """
    budget = start
    fates: list[Fate] = []
    for candidate in candidates:
        plan = candidate.plan
        schedule = candidate.schedule
        if (
            starts_alone(plan)
            and schedule.id not in busy
            and schedule.id not in settling
            and (waiting is None or plan.fires[0].scheduled_for <= waiting)
        ):
            if budget > 0:
                budget -= 1
                fates.append(Fate.START)
                continue
            due = schedule.next_run_at
            if hold_until is not None and due is not None and due > hold_until:
                fates.append(Fate.HOLD)
                continue
        fates.append(Fate.PENDING)
    return fates


@dataclass(frozen=True, slots=True)
class ReadyRun:
    """The facts about one ready run that decide whether it starts."""

    trigger: RunTrigger
    attempt: int
    interruptions: int
    #: Its schedule has no run running.
    idle: bool
    #: Its place in a plan run (0-based), None for a run that is no plan step.
    step: int | None = None


class Acquisition(Enum):
    START = "start"
    #: Left ready: queued behind the running run, or a catch-up or retry keeping its place.
    WAIT = "wait"
    SKIP = "skip"


def acquisition(
    run: ReadyRun, schedule: Schedule, *, settling: bool
) -> tuple[Acquisition, tuple[SkipReason, str] | None]:
    """Whether a ready run starts now, waits, or is skipped (with why).

    An inactive schedule's run is skipped (`inactive_reason`). With nothing of its
    schedule running, or `overlap: allow`, it starts. Otherwise a fresh fire (never
    tried, never interrupted: an interrupted run may have reached the agent) is skipped
    under `overlap: skip`, unless the running run is only `settling` (its attempt is
    over and being recorded): then it waits to start once that is written.
    """
    later_step = bool(run.step)
    # A plan's later step is the plan going on, not a new fire: a pause or a tripped
    # breaker made since its plan run began stops it whoever started that run.
    inactive = inactive_reason(schedule, RunTrigger.SCHEDULE if later_step else run.trigger)
    if inactive is not None:
        return Acquisition.SKIP, inactive
    if run.idle or schedule.policies.overlap is OverlapPolicy.ALLOW:
        return Acquisition.START, None
    if (
        schedule.policies.overlap is OverlapPolicy.SKIP
        and not later_step  # it waits for its turn: skipping it would cut its plan short
        and run.trigger is RunTrigger.SCHEDULE
        and run.attempt == 0
        and not run.interruptions
        and not settling
    ):
        return Acquisition.SKIP, (SkipReason.OVERLAP, OVERLAP_TEXT)
    return Acquisition.WAIT, None
