"""The engine store: what the scheduling engine asks of durable storage, and nothing else.

Modelled on APScheduler 4's `abc.DataStore`: a handful of domain verbs, each one atomic
(one transaction), so that a second implementation (PostgreSQL) can pass the same
contract tests and several engines can share one database. Operator screens do not use
it; they go through the repositories in `scheduler.repositories`.

The engine's life with it, per iteration: `next_due` tells whether anything is due and
when to wake; `expire_approvals` closes runs nobody approved in time; `claim` plans due
schedules (by the planner the engine passes) and writes the plans, starting the fires
that have a free slot; `acquire` starts ready runs (pending, or failed and due for a
retry); `finish` records outcomes. `release` gives runs back at shutdown; `register`,
`heartbeat`, `unregister`, `instances`, `running_owners` and `reap` let engines notice a
dead one and redeliver its runs. Which fire starts, waits or is skipped is decided by the
pure rules in `scheduler.policies`; the store applies them inside its transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from scheduler.budgets import BudgetKind, BudgetScope
from scheduler.errors import UnreadableSchedule
from scheduler.models import Run, RunStatus, Schedule
from scheduler.planning import FirePlan

__all__ = [
    "OUTPUT_LIMIT",
    "AcquiredRun",
    "AttemptOutcome",
    "BudgetPause",
    "ClaimedFires",
    "DueInstants",
    "EngineInstance",
    "EngineStore",
    "FinishedAttempt",
    "Planner",
]

Planner = Callable[[Schedule, datetime], FirePlan]

#: Characters of an agent's answer kept with the run.
OUTPUT_LIMIT = 4000


@dataclass(frozen=True)
class AcquiredRun:
    run: Run
    schedule: Schedule


@dataclass(frozen=True)
class BudgetPause:
    """A schedule a claim paused because it reached its budget (scheduler/budgets.py),
    with its fire recorded skipped for that reason."""

    #: The schedule as the claim left it: paused, PauseKind.BUDGET.
    schedule: Schedule
    #: The fire's run, skipped (SkipReason.BUDGET).
    run: Run
    kind: BudgetKind
    limit: int
    #: Whose budget it was: the schedule's own, or its chat's.
    scope: BudgetScope = BudgetScope.SCHEDULE


@dataclass(frozen=True)
class ClaimedFires:
    """What one claim did (`EngineStore.claim`)."""

    #: The plans applied: their runs are in the ledger, and `next_run_at` moved on.
    plans: list[FirePlan]
    #: Fires written already `running` under the claiming owner: start them now.
    started: list[AcquiredRun]
    #: A read filled its limit, or fires were held for a slot: more may be due now.
    more: bool = False
    #: Due schedules whose rows cannot be decoded, paused by this claim (each reported
    #: once: a paused schedule is not due again).
    quarantined: list[UnreadableSchedule] = field(default_factory=list)
    #: Due schedules that reached their budget: paused by this claim instead of firing,
    #: each fire recorded skipped (the engine tells the chat).
    over_budget: list[BudgetPause] = field(default_factory=list)


@dataclass(frozen=True)
class AttemptOutcome:
    """How one attempt ended, as the engine decided it."""

    status: RunStatus  # SUCCEEDED, FAILED (retry at next_attempt_at), DEAD or UNKNOWN
    finished_at: datetime
    duration_ms: int | None = None
    #: The agent's answer; the store keeps its first OUTPUT_LIMIT characters.
    output: str | None = None
    error: str | None = None
    token_usage: dict[str, int] | None = None
    next_attempt_at: datetime | None = None
    #: What an agent answering asynchronously reported (`scheduler.service` checked it).
    summary: str | None = None
    outputs_url: str | None = None
    log_excerpt: str | None = None


@dataclass(frozen=True)
class FinishedAttempt:
    run: Run
    schedule: Schedule
    #: True when this outcome tripped the schedule's circuit breaker just now.
    tripped_now: bool
    #: The agent's whole answer (the run keeps only its first OUTPUT_LIMIT characters).
    answer: str | None = None
    #: The attempt was cut off by an engine that died (`EngineStore.reap`), not ended
    #: by the agent: it may have reached the agent all the same.
    interrupted: bool = False
    #: A plan's step: what its end wrote in the same transaction
    #: (`scheduler.plans.following_runs`): the next step, or the remaining steps
    #: skipped because the plan stopped.
    then: tuple[Run, ...] = ()


@dataclass(frozen=True, slots=True)
class DueInstants:
    """When the engine next has work, each None when there is none of that kind."""

    #: The earliest `next_run_at` of an active schedule.
    fire: datetime | None
    #: The earliest instant a pending run or a planned retry becomes ready.
    ready: datetime | None
    #: The earliest approval deadline of a run awaiting approval.
    deadline: datetime | None
    #: The earliest deadline of a run awaiting the agent's asynchronous result.
    result: datetime | None = None

    @property
    def earliest(self) -> datetime | None:
        instants = (self.fire, self.ready, self.deadline, self.result)
        present = [t for t in instants if t is not None]
        return min(present) if present else None


@dataclass(frozen=True)
class EngineInstance:
    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None


class EngineStore(Protocol):
    """Durable state of the scheduling engine. Every write is atomic: one transaction (a
    claim may first quarantine unreadable rows in one of its own)."""

    async def next_due(self) -> DueInstants:
        """When the engine next has work: the earliest fire of an active schedule, the
        earliest instant a run becomes ready, and the earliest approval deadline."""

    async def claim(
        self,
        now: datetime,
        limit: int,
        plan: Planner,
        *,
        owner: str,
        start: int,
        hold_until: datetime | None = None,
        settling: Collection[str] = (),
    ) -> ClaimedFires:
        """Claim the fires of up to `limit` schedules due at `now`.

        Each due schedule is planned by `plan` (its missed-run policy); its runs are
        written and its `next_run_at` advanced in one transaction, only if `next_run_at`
        is still what was planned from (compare-and-set: two engines never both claim a
        fire, and a fire instant is in the ledger at most once). What each claimed fire
        becomes is `scheduler.policies.claim_fates`: up to `start` of them are written
        already `running` under `owner` (returned in `started`: start them now); with
        `hold_until`, one that could start so but finds no slot left is held (not
        claimed, its schedule stays due) if it came due after `hold_until`; any other is
        written as pending runs. `settling` names schedules whose run is being recorded.

        A due schedule whose row cannot be decoded is quarantined: paused with the
        reason, its runs not yet started closed (returned in `quarantined`).

        A due schedule with a budget (`scheduler.budgets`), its own or its chat's, has
        its use in the window read in the claim's transaction: if
        `scheduler.budgets.verdict` says it pauses, its fires are written skipped
        (SkipReason.BUDGET) and it is paused (PauseKind.BUDGET), returned in
        `over_budget`. Schedules without a budget, in a chat without one, are not
        counted (the chats' budgets are read at most every 30 s)."""

    async def acquire(
        self, now: datetime, limit: int, owner: str, *, settling: Collection[str] = ()
    ) -> list[AcquiredRun]:
        """Start up to `limit` ready runs (pending, or failed and due for a retry) under
        `owner`: each ready run starts, waits or is skipped as
        `scheduler.policies.acquisition` says (overlap policy, inactive schedule); one
        schedule's runs start in `scheduled_for` order."""

    async def finish(
        self,
        items: Sequence[tuple[AcquiredRun, AttemptOutcome]],
        owner: str,
        *,
        trip_after: int,
    ) -> list[FinishedAttempt | None]:
        """Record attempts' outcomes, with each schedule's failure streak and circuit
        breaker (tripped after `trip_after` dead runs in a row), all in one transaction,
        results in the order given. None for a run `owner` no longer holds (reaped
        meanwhile): a late finish never overwrites. An outcome still `running` means
        the agent accepted the attempt (202) and will report its result later: the run
        stays running, held by no engine (AWAITING_RESULT_OWNER), until the report or
        the outcome's `next_attempt_at` (its deadline).

        A plan's step that ends writes, in the same transaction, what
        `scheduler.plans.following_runs` says (the next step, or the rest skipped),
        returned in `FinishedAttempt.then`."""

    async def overdue_results(self, now: datetime, limit: int) -> list[AcquiredRun]:
        """Runs awaiting the agent's result past their deadline, each with its schedule
        (finish them with `finish(..., AWAITING_RESULT_OWNER)`)."""

    async def awaited_run(self, chat_id: int, run_id: str) -> AcquiredRun | None:
        """The chat's run with its schedule, if it awaits the agent's result."""

    async def release(self, owner: str, run_ids: Collection[str], now: datetime) -> int:
        """Put runs interrupted by shutdown back to pending; the attempt is not counted."""

    async def expire_approvals(self, now: datetime) -> int:
        """Skip runs awaiting approval whose deadline is not after `now`; how many. A
        plan's step skipped so stops its plan (the remaining steps are skipped too)."""

    async def last_output(self, chat_id: int, schedule_id: str) -> str | None:
        """The answer of the schedule's latest successful run (a prompt's {last_output})."""

    async def event_payload(self, run_id: str) -> str | None:
        """The JSON payload of the event that fired the run (a prompt's {event}); None
        when no event did."""

    async def register(self, instance: EngineInstance) -> None:
        """Record a starting engine (or restart one with the same id)."""

    async def heartbeat(self, instance_id: str, now: datetime) -> None:
        """The engine is alive at `now`."""

    async def unregister(self, instance_id: str, now: datetime) -> None:
        """The engine stopped cleanly."""

    async def instances(self) -> list[EngineInstance]:
        """Every engine that ever registered, with its last heartbeat."""

    async def running_owners(self) -> set[str]:
        """Instance ids that hold at least one running run."""

    async def reap(
        self,
        dead_owners: Collection[str],
        now: datetime,
        decide: Callable[[Run, Schedule, int], AttemptOutcome],
        *,
        keep: Collection[str] = (),
    ) -> list[FinishedAttempt]:
        """Interrupt runs left `running` by dead instances (except those in `keep`):
        `decide(run, schedule, interruptions)` (counting this one) gives the status
        they take (PENDING or FAILED to be redelivered at `next_attempt_at`, or UNKNOWN
        for the operator). The attempt is recorded as Tickler's fault, not the agent's:
        the attempt number is given back and the breaker is left alone."""
