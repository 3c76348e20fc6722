"""The scheduling rules the engine store applies, as tables: no database needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler.models import (
    Action,
    OverlapPolicy,
    Owner,
    Policies,
    RunStatus,
    RunTrigger,
    Schedule,
    SkipReason,
)
from scheduler.planning import FirePlan, PlannedFire
from scheduler.policies import (
    Acquisition,
    ClaimCandidate,
    Fate,
    ReadyRun,
    acquisition,
    claim_fates,
    closing_status,
    inactive_reason,
)
from scheduler.triggers import cron_trigger

NOW = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
HOLD = NOW - timedelta(seconds=10)


def schedule(
    sid: str = "s1",
    *,
    overlap: OverlapPolicy = OverlapPolicy.SKIP,
    enabled: bool = True,
    tripped: bool = False,
    archived: bool = False,
    due: datetime = NOW,
) -> Schedule:
    return Schedule(
        id=sid,
        chat_id=1,
        name=sid,
        trigger=cron_trigger("* * * * *", "UTC"),
        action=Action(text="hi"),
        policies=Policies(overlap=overlap),
        owner=Owner(id=1),
        enabled=enabled,
        tripped=tripped,
        archived_at=NOW if archived else None,
        next_run_at=due,
        created_at=NOW - timedelta(days=1),
        updated_at=NOW - timedelta(days=1),
    )


def one_fire(s: Schedule, status: RunStatus = RunStatus.PENDING) -> ClaimCandidate:
    assert s.next_run_at is not None
    fire = PlannedFire(s.next_run_at, RunTrigger.SCHEDULE, status)
    return ClaimCandidate(s, FirePlan(s.id, 1, [fire], s.next_run_at + timedelta(minutes=1)))


def catch_up(s: Schedule) -> ClaimCandidate:
    assert s.next_run_at is not None
    fires = [
        PlannedFire(s.next_run_at - timedelta(minutes=10), RunTrigger.CATCH_UP, RunStatus.PENDING),
        PlannedFire(s.next_run_at, RunTrigger.SCHEDULE, RunStatus.PENDING),
    ]
    return ClaimCandidate(s, FirePlan(s.id, 1, fires, s.next_run_at + timedelta(minutes=1)))


S = schedule
OLD = NOW - timedelta(minutes=1)  # came due before the hold: never held


@pytest.mark.parametrize(
    ("case", "candidates", "start", "busy", "settling", "waiting", "hold_until", "fates"),
    [
        ("a free slot starts the fire", [one_fire(S())], 1, (), (), None, HOLD, [Fate.START]),
        ("no slot, fresh: held", [one_fire(S())], 0, (), (), None, HOLD, [Fate.HOLD]),
        (
            "no slot, due before the hold: pending",
            [one_fire(S(due=OLD))],
            0,
            (),
            (),
            None,
            HOLD,
            [Fate.PENDING],
        ),
        ("no slot and no hold: pending", [one_fire(S())], 0, (), (), None, None, [Fate.PENDING]),
        (
            "slots run out in order",
            [one_fire(S("a")), one_fire(S("b")), one_fire(S("c"))],
            2,
            (),
            (),
            None,
            HOLD,
            [Fate.START, Fate.START, Fate.HOLD],
        ),
        (
            "a schedule with a run open waits for the overlap policy",
            [one_fire(S())],
            1,
            ("s1",),
            (),
            None,
            HOLD,
            [Fate.PENDING],
        ),
        (
            "a settling schedule waits for its last run to be written",
            [one_fire(S())],
            1,
            (),
            ("s1",),
            None,
            HOLD,
            [Fate.PENDING],
        ),
        (
            "an earlier ready run goes first",
            [one_fire(S())],
            1,
            (),
            (),
            NOW - timedelta(seconds=1),
            HOLD,
            [Fate.PENDING],
        ),
        (
            "a ready run from the same instant does not hold it back",
            [one_fire(S())],
            1,
            (),
            (),
            NOW,
            HOLD,
            [Fate.START],
        ),
        (
            "a catch-up of several fires is ordered by the acquisition",
            [catch_up(S())],
            1,
            (),
            (),
            None,
            HOLD,
            [Fate.PENDING],
        ),
        (
            "a fire awaiting approval is never started",
            [one_fire(S(), RunStatus.AWAITING_APPROVAL)],
            1,
            (),
            (),
            None,
            HOLD,
            [Fate.PENDING],
        ),
        (
            "a waiting fire does not use up a slot",
            [one_fire(S("a")), one_fire(S("b"))],
            1,
            ("a",),
            (),
            None,
            HOLD,
            [Fate.PENDING, Fate.START],
        ),
    ],
)
def test_claim_fates(
    case: str,
    candidates: list[ClaimCandidate],
    start: int,
    busy: tuple[str, ...],
    settling: tuple[str, ...],
    waiting: datetime | None,
    hold_until: datetime | None,
    fates: list[Fate],
) -> None:
    got = claim_fates(
        candidates,
        start=start,
        busy=busy,
        settling=settling,
        waiting=waiting,
        hold_until=hold_until,
    )
    assert got == fates, case


FRESH = ReadyRun(RunTrigger.SCHEDULE, attempt=0, interruptions=0, idle=False)


@pytest.mark.parametrize(
    ("case", "run", "sched", "settling", "decision", "reason"),
    [
        (
            "idle schedule: start",
            ReadyRun(RunTrigger.SCHEDULE, 0, 0, idle=True),
            S(),
            False,
            Acquisition.START,
            None,
        ),
        (
            "busy, overlap skip: a fresh fire is skipped",
            FRESH,
            S(),
            False,
            Acquisition.SKIP,
            SkipReason.OVERLAP,
        ),
        (
            "busy, overlap queue: it waits",
            FRESH,
            S(overlap=OverlapPolicy.QUEUE),
            False,
            Acquisition.WAIT,
            None,
        ),
        (
            "busy, overlap allow: it starts beside",
            FRESH,
            S(overlap=OverlapPolicy.ALLOW),
            False,
            Acquisition.START,
            None,
        ),
        (
            "busy but only settling: it waits, never an overlap",
            FRESH,
            S(),
            True,
            Acquisition.WAIT,
            None,
        ),
        (
            "a retry keeps its place",
            ReadyRun(RunTrigger.SCHEDULE, 1, 0, idle=False),
            S(),
            False,
            Acquisition.WAIT,
            None,
        ),
        (
            "an interrupted run may have reached the agent: it waits",
            ReadyRun(RunTrigger.SCHEDULE, 0, 1, idle=False),
            S(),
            False,
            Acquisition.WAIT,
            None,
        ),
        (
            "a catch-up keeps its place",
            ReadyRun(RunTrigger.CATCH_UP, 0, 0, idle=False),
            S(),
            False,
            Acquisition.WAIT,
            None,
        ),
        (
            "paused: the schedule's own fire is skipped",
            ReadyRun(RunTrigger.SCHEDULE, 0, 0, idle=True),
            S(enabled=False),
            False,
            Acquisition.SKIP,
            SkipReason.PAUSED,
        ),
        (
            "paused: an operator's run now still runs",
            ReadyRun(RunTrigger.MANUAL, 0, 0, idle=True),
            S(enabled=False),
            False,
            Acquisition.START,
            None,
        ),
        (
            "tripped: a catch-up is skipped",
            ReadyRun(RunTrigger.CATCH_UP, 0, 0, idle=True),
            S(tripped=True),
            False,
            Acquisition.SKIP,
            SkipReason.TRIPPED,
        ),
        (
            "busy, overlap skip: a plan's later step waits for its turn, never skipped",
            ReadyRun(RunTrigger.SCHEDULE, 0, 0, idle=False, step=1),
            S(),
            False,
            Acquisition.WAIT,
            None,
        ),
        (
            "paused after a run now began its plan: the later step is skipped",
            ReadyRun(RunTrigger.MANUAL, 0, 0, idle=True, step=2),
            S(enabled=False),
            False,
            Acquisition.SKIP,
            SkipReason.PAUSED,
        ),
        (
            "paused: a run now's first plan step still runs",
            ReadyRun(RunTrigger.MANUAL, 0, 0, idle=True, step=0),
            S(enabled=False),
            False,
            Acquisition.START,
            None,
        ),
        (
            "archived: even a run now is skipped",
            ReadyRun(RunTrigger.MANUAL, 0, 0, idle=True),
            S(archived=True),
            False,
            Acquisition.SKIP,
            SkipReason.ARCHIVED,
        ),
    ],
)
def test_acquisition(
    case: str,
    run: ReadyRun,
    sched: Schedule,
    settling: bool,
    decision: Acquisition,
    reason: SkipReason | None,
) -> None:
    got, why = acquisition(run, sched, settling=settling)
    assert (got, None if why is None else why[0]) == (decision, reason), case
    if why is not None:
        assert why[1], "every skip says why in words"


def test_an_archived_schedule_reads_as_archived_before_paused() -> None:
    archived_and_paused = S(archived=True, enabled=False, tripped=True)
    assert inactive_reason(archived_and_paused, RunTrigger.SCHEDULE) == (
        SkipReason.ARCHIVED,
        "schedule is archived",
    )
    assert inactive_reason(S(), RunTrigger.SCHEDULE) is None


@pytest.mark.parametrize(
    ("status", "attempt", "interruptions", "closed"),
    [
        (RunStatus.PENDING, 0, 0, RunStatus.SKIPPED),
        (RunStatus.AWAITING_APPROVAL, 0, 0, RunStatus.SKIPPED),
        (RunStatus.FAILED, 1, 0, RunStatus.CANCELLED),
        (RunStatus.PENDING, 1, 0, RunStatus.CANCELLED),
        (RunStatus.PENDING, 0, 2, RunStatus.CANCELLED),
    ],
)
def test_a_run_never_tried_is_skipped_and_one_tried_is_cancelled(
    status: RunStatus, attempt: int, interruptions: int, closed: RunStatus
) -> None:
    assert closing_status(status, attempt, interruptions) is closed
