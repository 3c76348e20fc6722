"""The domain: schedules, runs and the policies that govern them.

Models are frozen; a change is a `model_copy(update=...)` handed back to the store.
Every datetime inside is timezone-aware UTC; local time exists only at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from scheduler.triggers import Trigger

__all__ = [
    "AWAITING_RESULT_OWNER",
    "INTERRUPTED",
    "Action",
    "ActionKind",
    "Attempt",
    "CreatedBy",
    "EmittedEvent",
    "Event",
    "MissedRunPolicy",
    "OverlapPolicy",
    "Owner",
    "PauseKind",
    "Policies",
    "RetryPolicy",
    "RiskTier",
    "Run",
    "RunFigure",
    "RunStatus",
    "RunTrigger",
    "Schedule",
    "SkipReason",
    "Step",
    "StepKind",
    "TimeoutPolicy",
    "interrupted_error",
]


class MissedRunPolicy(StrEnum):
    """What to do with fire instants that passed while the engine was not running."""

    SKIP = "skip"  # record each missed fire as skipped
    CATCH_UP_ONCE = "catch_up_once"  # run the latest missed fire once, skip the rest
    CATCH_UP_ALL = "catch_up_all"  # run every missed fire in order, up to a cap


class OverlapPolicy(StrEnum):
    """What a fire does while the schedule's previous run is still running."""

    SKIP = "skip"  # record the new fire as skipped
    QUEUE = "queue"  # run it after the current one finishes
    ALLOW = "allow"  # run both at once


class TimeoutPolicy(StrEnum):
    """What to do when an attempt timed out after the agent may have received it."""

    RETRY = "retry"  # retry with the same idempotency key; the agent deduplicates
    ASK = "ask"  # mark the run unknown and let the operator decide


class RiskTier(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class CreatedBy(StrEnum):
    OPERATOR = "operator"
    AGENT = "agent"
    CONFIG = "config"


class ActionKind(StrEnum):
    AGENT = "agent"  # render a prompt and dispatch it to the agent endpoint
    REMINDER = "reminder"  # send the text to the chat, no agent involved
    TASK = "task"  # create a work item for the operator (scheduler/work_items.py)
    PLAN = "plan"  # run `steps` (agent prompts) in order, one plan run per fire
    BUNDLE = "bundle"  # a workflow template: one bundle of `steps` per anchor date


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # an attempt failed; another one is planned at next_attempt_at
    DEAD = "dead"  # retries exhausted: the dead-letter list
    SKIPPED = "skipped"
    AWAITING_APPROVAL = "awaiting_approval"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"  # timed out after delivery; the operator decides


class PauseKind(StrEnum):
    """Why a schedule is paused, for code to act on. The reason shown to people is
    `Schedule.pause_reason` (free text an operator may write); code never reads it.
    A tripped circuit breaker is not a pause: it is `Schedule.tripped`."""

    #: Paused by an operator (the chat, the API), with or without a reason of their own.
    OPERATOR = "operator"
    #: An agent's medium-tier proposal waiting for an admin: only the proposal's
    #: approval may resume it, never a plain resume or run-now.
    AWAITING_APPROVAL = "awaiting_approval"
    #: A schedule of schedules.yaml whose id left the file; it comes back when the id
    #: returns.
    REMOVED_FROM_FILE = "removed_from_file"
    #: Its stored definition cannot be decoded (quarantined); fixed only by hand.
    UNREADABLE = "unreadable"
    #: It reached its budget (runs or tokens per week, scheduler/budgets.py); resumed
    #: by the notice's buttons or /resume.
    BUDGET = "budget"


#: The pause reason shown for PauseKind.AWAITING_APPROVAL.
AWAITING_APPROVAL_REASON = "awaiting approval"

#: How the error of an attempt cut off by Tickler itself (an orphan) begins.
INTERRUPTED = "interrupted"


def interrupted_error(times: int) -> str:
    """The error of a run whose attempt Tickler cut off, the `times`-th time."""
    count = f" {times} times" if times > 1 else ""
    return f"{INTERRUPTED}{count}: Tickler stopped while the attempt ran (not the agent's fault)"


#: The owner of a running run whose agent answered 202 ("result later"): no engine holds
#: it, so none reaps it; its result, or `next_attempt_at` (the deadline), ends it.
AWAITING_RESULT_OWNER = "agent"

#: Statuses from which the engine may start an attempt.
READY_STATUSES = (RunStatus.PENDING, RunStatus.FAILED)
#: Statuses that will never change again without an operator's action.
FINAL_STATUSES = (
    RunStatus.SUCCEEDED,
    RunStatus.DEAD,
    RunStatus.SKIPPED,
    RunStatus.CANCELLED,
)


class RunTrigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    CATCH_UP = "catch_up"
    BACKFILL = "backfill"
    RETRY = "retry"
    EVENT = "event"  # an event its schedule listens to was posted (scheduler/events.py)


_frozen = ConfigDict(frozen=True, extra="forbid")


class RetryPolicy(BaseModel):
    model_config = _frozen

    max_attempts: int = Field(default=3, ge=1, le=20)
    base_seconds: float = Field(default=30.0, gt=0, le=3600)
    cap_seconds: float = Field(default=900.0, gt=0, le=86400)


class Policies(BaseModel):
    model_config = _frozen

    missed_run: MissedRunPolicy = MissedRunPolicy.CATCH_UP_ONCE
    catch_up_cap: int = Field(default=10, ge=1, le=1000)
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    retry: RetryPolicy = RetryPolicy()
    timeout_seconds: float = Field(default=300.0, gt=0, le=3600)
    timeout_policy: TimeoutPolicy = TimeoutPolicy.RETRY
    risk_tier: RiskTier = RiskTier.LOW
    requires_run_approval: bool = False
    #: Spend and volume limits over the last 7 days (scheduler/budgets.py): reaching
    #: one pauses the schedule (PauseKind.BUDGET) instead of running on. None: no limit.
    budget_runs_per_week: int | None = Field(default=None, ge=1, le=100_000)
    budget_tokens_per_week: int | None = Field(default=None, ge=1, le=10_000_000_000)
    #: The model this schedule's runs ask for (openai mode), whatever the chat's agent
    #: is configured with. None: the agent's model.
    model: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^\S+$")


class StepKind(StrEnum):
    AGENT = "agent"  # a prompt sent to the agent
    TASK = "task"  # a work item for the operator


#: A task's or a template step's required proof.
ProofKind = Literal["link", "file", "note"]


class Step(BaseModel):
    """One step of a plan (`kind: plan`: agent prompts run in order, each after the
    previous one succeeded) or of a workflow template (`kind: bundle`: tasks and prompts
    due `offset_days` from the bundle's anchor date). The service checks which fields
    each kind allows (`scheduler.workflow_steps`)."""

    model_config = _frozen

    kind: StepKind = StepKind.AGENT
    #: A task's title; a prompt step's short name (shown in history and notices).
    title: str = ""
    #: An agent step's prompt (placeholders as in `Action.text`).
    text: str = ""
    instructions: str = ""
    assignee: str | None = None
    proof: ProofKind | None = None
    #: Template steps: days from the anchor date (negative: before it).
    offset_days: int = 0
    #: Plan steps: a failure of this step does not stop the plan.
    continue_on_failure: bool = False
    #: Plan steps: this step's run waits for an operator's approval.
    requires_approval: bool = False


class Action(BaseModel):
    """What a fire does. `text` is the prompt template (agent) or the message (reminder);
    `template` names a file in `prompts/` used instead of `text` when set."""

    model_config = _frozen

    kind: ActionKind = ActionKind.AGENT
    text: str = ""
    template: str | None = None
    #: Task only: what completing the item needs ("link", "file" or "note"), whom it is
    #: for, and the longer instructions shown with it.
    proof: ProofKind | None = None
    assignee: str | None = None
    instructions: str = ""
    #: Plan and bundle only: the ordered steps.
    steps: tuple[Step, ...] = ()
    #: Bundle only: a fire on day D makes the bundle anchored on D + lead_days.
    lead_days: int = 0


class Owner(BaseModel):
    """The operator on whose behalf a schedule fires (the synthetic update's `from`)."""

    model_config = _frozen

    id: int
    first_name: str = "Operator"


class Schedule(BaseModel):
    model_config = _frozen

    id: str
    chat_id: int
    name: str
    description: str = ""
    trigger: Trigger
    action: Action
    policies: Policies = Policies()
    owner: Owner
    enabled: bool = True
    paused_by: int | None = None
    #: Why it is paused, as shown to people; free text.
    pause_reason: str | None = None
    #: Why it is paused, for code to act on; None unless it is paused (an archived
    #: schedule is disabled, not paused).
    pause_kind: PauseKind | None = None
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    consecutive_failures: int = 0
    tripped: bool = False
    created_by: CreatedBy = CreatedBy.OPERATOR
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None = None
    #: The short number within the chat (`#3`), given by the store when it is added.
    number: int | None = None

    @property
    def timezone(self) -> str:
        """The zone the schedule was made in; every trigger kind keeps one."""
        return self.trigger.timezone

    @property
    def ref(self) -> str:
        """What an operator types to name it: `#3`, or the id before it has a number."""
        return f"#{self.number}" if self.number is not None else self.id


@dataclass(frozen=True)
class RunFigure:
    """One run in a stats window, as much of it as the figures need (scheduler/stats.py)."""

    schedule_id: str
    status: RunStatus
    trigger: RunTrigger
    scheduled_for: datetime
    started_at: datetime | None
    duration_ms: int | None
    #: Tokens the agent reported for the run (openai mode), None when it reported none.
    tokens: int | None = None


class Attempt(BaseModel):
    """One finished attempt of a run, kept for the operator's history."""

    model_config = _frozen

    attempt: int
    owner: str
    started_at: datetime | None
    finished_at: datetime | None
    status: RunStatus
    error: str | None = None


class SkipReason(StrEnum):
    """Why a run ended without being sent to the agent (again), stored with the run
    (`runs.skip_reason`) beside the sentence the operator reads (`runs.error`)."""

    #: A fire that passed while the engine was down, not run under the missed-run policy.
    MISSED = "missed"
    #: The operator skipped a missed fire's catch-up run (/backfill's "skip").
    MISSED_BY_OPERATOR = "missed_by_operator"
    #: A fresh fire whose previous run was still running, under `overlap: skip`.
    OVERLAP = "overlap"
    #: The schedule was paused (by the operator, schedules.yaml, or pending approval).
    PAUSED = "paused"
    #: The schedule was archived.
    ARCHIVED = "archived"
    #: The schedule's circuit breaker tripped.
    TRIPPED = "tripped"
    #: The schedule's stored definition cannot be decoded (quarantined).
    UNREADABLE = "unreadable"
    #: Nobody approved or skipped the run before its approval deadline.
    APPROVAL_DEADLINE = "approval_deadline"
    #: An operator rejected the run awaiting approval.
    REJECTED = "rejected"
    #: An operator dropped the run by hand.
    OPERATOR = "operator"
    #: An earlier step of its plan run failed (or was rejected), so this step never ran.
    PLAN_STOPPED = "plan_stopped"
    #: Its schedule reached its budget (runs or tokens per week) and paused instead.
    BUDGET = "budget"


class Run(BaseModel):
    model_config = _frozen

    id: str
    schedule_id: str
    chat_id: int
    scheduled_for: datetime
    trigger: RunTrigger
    status: RunStatus
    attempt: int = 0
    #: When the engine next acts on the run: its (next) attempt while pending or failed;
    #: the approval deadline (then it is skipped) while awaiting approval.
    next_attempt_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None
    output: str | None = None
    error: str | None = None
    token_usage: dict[str, int] | None = None
    owner: str | None = None
    created_at: datetime
    updated_at: datetime
    #: Why a skipped or cancelled run did not run (`error` words it for the operator).
    skip_reason: SkipReason | None = None
    #: What an agent that answered asynchronously reported (docs/agent-protocol.md): a
    #: short summary, a link to what it produced, and an excerpt of its log.
    summary: str | None = None
    outputs_url: str | None = None
    log_excerpt: str | None = None
    #: A step of a plan run (`action.kind: plan`): the id of the plan run's first run
    #: (step 0's own id) and the 0-based step. None for other runs, and for a plan
    #: schedule's run written without them, which is step 0 of its own plan run
    #: (`scheduler.plans.plan_step`).
    plan_run_id: str | None = None
    step: int | None = None

    @property
    def awaiting_result(self) -> bool:
        """Running, but only the agent's report (or its deadline) will end it: the
        agent accepted the attempt with a 202 and no engine holds it."""
        return self.status is RunStatus.RUNNING and self.owner == AWAITING_RESULT_OWNER


class Event(BaseModel):
    """One posted event (POST /api/v1/events/{name}, the agent's emit_event)."""

    model_config = _frozen

    id: str
    #: Who posted it, the scope of its idempotency key: `api`, or `chat:<id>` (an agent).
    caller: str
    name: str
    #: The caller's Idempotency-Key; a repeat of it is the same event. None: always new.
    idempotency_key: str | None = None
    #: The JSON object given with it, as the prompt's {event} shows it.
    payload: dict[str, object] = Field(default_factory=dict)
    received_at: datetime


class EmittedEvent(BaseModel):
    """An event and the runs it fired; `repeated` when it was a repeat of the key."""

    model_config = _frozen

    event: Event
    runs: list[Run]
    repeated: bool = False
