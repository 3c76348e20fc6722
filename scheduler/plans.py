"""Multi-step plans (`action.kind: plan`), as pure rules.

A fire of a plan schedule makes one plan run: its steps run one after another, each a
run of its own in the ledger, all sharing `plan_run_id` (the id of step 0's run, which
is the run the fire made). A step starts when the previous one succeeded, or ended dead
with `continue_on_failure`; any other end of a step (dead, rejected, its approval
expired) stops the plan: its remaining steps are written `skipped` (PLAN_STOPPED).

The store writes what `following_runs` returns in the transaction that records the
step's end, with ids derived from the plan run, so a crash between two steps can
neither lose the next one nor write it twice (`INSERT OR IGNORE` on the same id and
instant).

Why step k's `scheduled_for` is the plan's fire instant plus k microseconds: the
ledger's idempotency is UNIQUE(schedule_id, scheduled_for), one row per instant, and
every step needs a row of its own. A microsecond keeps the steps in order (runs of a
schedule start in `scheduled_for` order), ahead of the schedule's next fire, and no
trigger fires a microsecond apart (cron and interval instants are whole seconds; a
manual run is keyed by the instant it was asked for).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from scheduler.models import (
    ActionKind,
    Run,
    RunStatus,
    Schedule,
    SkipReason,
    Step,
)
from scheduler.planning import approval_deadline

__all__ = [
    "PlanStep",
    "following_runs",
    "plan_step",
    "step_label",
    "step_run_id",
    "stopped_reason",
]

_MICRO = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class PlanStep:
    """Where a run stands in its plan run."""

    plan_run_id: str
    #: 0-based.
    index: int
    #: How many steps the plan has now.
    total: int
    #: The plan's fire instant (step 0's `scheduled_for`).
    instant: datetime
    step: Step

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def last(self) -> bool:
        return self.index + 1 >= self.total


def plan_step(run: Run, schedule: Schedule) -> PlanStep | None:
    """The run's place in its plan run; None unless its schedule is a plan. A run
    written without a step (by a path that does not know plans) is step 0 of its own
    plan run. None as well for a step the plan no longer has (the schedule was edited
    down meanwhile): such a run is treated as an ordinary one and ends the plan run."""
    steps = schedule.action.steps
    if schedule.action.kind is not ActionKind.PLAN or not steps:
        return None
    index = run.step or 0
    if index >= len(steps):
        return None
    return PlanStep(
        plan_run_id=run.plan_run_id or run.id,
        index=index,
        total=len(steps),
        instant=run.scheduled_for - index * _MICRO,
        step=steps[index],
    )


def step_run_id(plan_run_id: str, index: int) -> str:
    """The id of step `index`'s run (0-based; step 0's run is the plan run itself):
    derived, so that writing the next step twice writes one row."""
    return plan_run_id if index == 0 else f"{plan_run_id}-s{index + 1}"


def step_label(place: PlanStep) -> str:
    """`step 2/3` or `step 2/3 (Summarise)`, as history and notices show a step run."""
    text = f"step {place.number}/{place.total}"
    return f"{text} ({place.step.title})" if place.step.title else text


def stopped_reason(place: PlanStep, status: RunStatus) -> str:
    """The error of the steps a stopped plan leaves unrun."""
    how = "failed" if status is RunStatus.DEAD else "did not run"
    return f"step {place.number} {how}"


def following_runs(run: Run, schedule: Schedule, now: datetime) -> tuple[Run, ...]:
    """The runs that `run`'s end writes in the same transaction: the next step (pending,
    or awaiting approval if it requires it) when the plan goes on, the remaining steps
    skipped when it stops, nothing when the run is not a step, is the last step, or has
    not ended for good (failed for a retry, unknown for the operator, running)."""
    place = plan_step(run, schedule)
    if place is None or place.last:
        return ()
    goes_on = run.status is RunStatus.SUCCEEDED or (
        run.status is RunStatus.DEAD and place.step.continue_on_failure
    )
    if goes_on:
        return (_next_step(run, schedule, place, now),)
    if run.status in (RunStatus.DEAD, RunStatus.SKIPPED, RunStatus.CANCELLED):
        reason = stopped_reason(place, run.status)
        return tuple(
            _step_run(run, schedule, place, index, now).model_copy(
                update={
                    "status": RunStatus.SKIPPED,
                    "next_attempt_at": None,
                    "finished_at": now,
                    "error": reason,
                    "skip_reason": SkipReason.PLAN_STOPPED,
                }
            )
            for index in range(place.index + 1, place.total)
        )
    return ()


def _next_step(run: Run, schedule: Schedule, place: PlanStep, now: datetime) -> Run:
    step = _step_run(run, schedule, place, place.index + 1, now)
    if schedule.action.steps[place.index + 1].requires_approval:
        return step.model_copy(
            update={
                "status": RunStatus.AWAITING_APPROVAL,
                "next_attempt_at": approval_deadline(schedule.next_run_at, now),
            }
        )
    return step


def _step_run(run: Run, schedule: Schedule, place: PlanStep, index: int, now: datetime) -> Run:
    return Run(
        id=step_run_id(place.plan_run_id, index),
        schedule_id=schedule.id,
        chat_id=schedule.chat_id,
        scheduled_for=place.instant + index * _MICRO,
        # The plan run's trigger: a step of a manual run is manual too.
        trigger=run.trigger,
        status=RunStatus.PENDING,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
        plan_run_id=place.plan_run_id,
        step=index,
    )
