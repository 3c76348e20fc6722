"""The store contract the engine and the service are written against.

Worded in domain operations, not SQL, so a second implementation (PostgreSQL) can
pass the same contract tests. Every method that reads or changes operator data takes
the `chat_id` that owns it: one chat never sees another's schedules or runs.

Engine-side operations are atomic: each runs in one transaction, so a fire is
claimed once together with advancing `next_run_at`, and a run is acquired once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from scheduler.errors import UnreadableSchedule
from scheduler.models import Attempt, PauseKind, Run, RunFigure, RunStatus, Schedule
from scheduler.planning import FirePlan
from scheduler.proposal_model import Proposal, ProposalStatus

__all__ = [
    "OUTPUT_LIMIT",
    "AcquiredRun",
    "AttemptOutcome",
    "ChatPrefs",
    "ClaimedFires",
    "EngineInstance",
    "FinishedAttempt",
    "Notification",
    "NotificationStatus",
    "Planner",
    "Pruned",
    "ScheduleChange",
    "Store",
]

Planner = Callable[[Schedule, datetime], FirePlan]

#: Characters of an agent's answer kept with the run.
OUTPUT_LIMIT = 4000


@dataclass(frozen=True)
class ChatPrefs:
    chat_id: int
    #: The zone new schedules of this chat use; None means the bot's default.
    timezone: str | None = None
    #: Set while Telegram refuses delivery to the chat (the user blocked the bot).
    blocked_at: datetime | None = None
    block_reason: str | None = None


@dataclass(frozen=True)
class ScheduleChange:
    schedule: Schedule
    new_runs: Sequence[Run] = ()


@dataclass(frozen=True)
class AcquiredRun:
    run: Run
    schedule: Schedule


@dataclass(frozen=True)
class ClaimedFires:
    """What one claim did (`Store.claim_and_start`)."""

    #: The plans applied: their runs are in the ledger, and `next_run_at` moved on.
    plans: list[FirePlan]
    #: Fires written already `running` under the claiming owner: start them now.
    started: list[AcquiredRun]
    #: A read filled its limit, or fires were held for a slot: more may be due now.
    more: bool = False
    #: Due schedules whose rows cannot be decoded, paused by this claim (each reported
    #: once: a paused schedule is not due again).
    quarantined: list[UnreadableSchedule] = field(default_factory=list)


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


@dataclass(frozen=True)
class FinishedAttempt:
    run: Run
    schedule: Schedule
    #: True when this outcome tripped the schedule's circuit breaker just now.
    tripped_now: bool
    #: The agent's whole answer (the run keeps only its first OUTPUT_LIMIT characters).
    answer: str | None = None


@dataclass(frozen=True, slots=True)
class DueInstants:
    """When the engine next has work, each None when there is none of that kind."""

    #: The earliest `next_run_at` of an active schedule.
    fire: datetime | None
    #: The earliest instant a pending run or a planned retry becomes ready.
    ready: datetime | None
    #: The earliest approval deadline of a run awaiting approval.
    deadline: datetime | None

    @property
    def earliest(self) -> datetime | None:
        present = [t for t in (self.fire, self.ready, self.deadline) if t is not None]
        return min(present) if present else None


@dataclass(frozen=True)
class Pruned:
    """What one retention pass deleted (see bot/retention.py)."""

    runs: int = 0
    attempts: int = 0
    notifications: int = 0

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(
            self.runs + other.runs,
            self.attempts + other.attempts,
            self.notifications + other.notifications,
        )


@dataclass(frozen=True)
class EngineInstance:
    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None


class NotificationStatus(StrEnum):
    PENDING = "pending"  # waiting for Telegram (or for its turn in the chat's queue)
    SENT = "sent"
    GIVEN_UP = "given_up"  # Telegram refused it (400) or it waited too long
    BLOCKED = "blocked"  # the chat blocked the bot; not sent


@dataclass(frozen=True)
class Notification:
    """One chat message in the outbox (written before it is sent; see bot/outbox.py)."""

    id: str
    chat_id: int
    #: What it is: run_answer, alert, tripped, missed, approval, proposal, followup,
    #: reminder, notice, run_sent (a /runnow answer, edited when the run ends).
    kind: str
    text: str
    created_at: datetime
    parse_mode: str | None = "HTML"
    #: The inline keyboard as the Bot API takes it (InlineKeyboardMarkup.to_dict()).
    reply_markup: dict[str, Any] | None = None
    run_id: str | None = None
    schedule_id: str | None = None
    proposal_id: str | None = None
    item_id: str | None = None
    status: NotificationStatus = NotificationStatus.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    sent_at: datetime | None = None
    #: Telegram's id for the message, once sent.
    message_id: int | None = None
    #: Why the last attempt failed: one line, no secrets.
    last_error: str | None = None


class Store(Protocol):
    async def close(self) -> None:
        """Release the connection; the store is unusable afterwards."""

    # --- schedules -----------------------------------------------------------------
    async def add_schedule(self, schedule: Schedule) -> Schedule:
        """Insert a new schedule; returns it with its number within the chat (one more
        than the chat's highest so far, never reused)."""

    async def find_schedules(
        self, chat_id: int, *, number: int | None = None, prefix: str | None = None, limit: int = 5
    ) -> list[Schedule]:
        """The chat's schedule numbered `number` (archived ones too), or its active
        schedules whose id starts with `prefix` in any letter case (at most `limit`)."""

    async def get_schedule(self, chat_id: int, schedule_id: str) -> Schedule | None:
        """The schedule with that id in that chat, or None."""

    async def list_schedules(
        self, chat_id: int, *, include_archived: bool = False
    ) -> list[Schedule]:
        """The chat's schedules, oldest first."""

    async def count_active_schedules(self, chat_id: int) -> int:
        """How many non-archived schedules the chat has (for per-chat limits)."""

    async def modify_schedule(
        self, chat_id: int, schedule_id: str, change: Callable[[Schedule], ScheduleChange]
    ) -> Schedule | None:
        """Read the schedule, apply `change` and write the result (and the runs it
        adds) in one transaction, so a concurrent pause, trip or claim is never
        overwritten by a stale copy. An exception from `change` changes nothing.
        None if there is no such schedule in that chat."""

    async def pause_schedule(
        self,
        chat_id: int,
        schedule_id: str,
        *,
        by: int | None,
        reason: str | None,
        now: datetime,
        kind: PauseKind = PauseKind.OPERATOR,
    ) -> Schedule | None:
        """Disable the schedule (paused for `kind`); runs not yet started are skipped
        (pending, awaiting approval) or cancelled (waiting for a retry), with the reason.
        History stays."""

    async def archive_schedule(
        self, chat_id: int, schedule_id: str, *, now: datetime
    ) -> Schedule | None:
        """Archive (never delete): disabled, hidden from lists, history kept."""

    # --- chats ------------------------------------------------------------------------
    async def get_chat(self, chat_id: int) -> ChatPrefs:
        """The chat's preferences (defaults if it never set any)."""

    async def set_chat_timezone(self, chat_id: int, zone: str, now: datetime) -> None: ...

    async def set_chat_blocked(self, chat_id: int, reason: str | None, now: datetime) -> None:
        """Record that delivery to the chat fails (`reason`), or works again (None)."""

    # --- the engine ------------------------------------------------------------------
    async def claim_due_fires(self, now: datetime, limit: int, plan: Planner) -> list[FirePlan]:
        """For up to `limit` enabled schedules due at `now`: apply `plan`, then insert
        its runs and advance `next_run_at` in one transaction, only if `next_run_at` is
        still what was planned from. A fire instant is inserted at most once
        (UNIQUE(schedule_id, scheduled_for)). Returns the plans that were applied."""

    async def claim_and_start(
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
        """`claim_due_fires`, and up to `start` of the claimed fires written already
        `running` under `owner` in the same transaction (returned in `started`), so a
        fire that finds a free slot costs one write and no acquisition. A fire starts
        so only when `acquire_ready_runs` would take it first: it is its plan's only
        fire and pending, its schedule has no other run open (running, pending, or
        failed awaiting a retry; nor in `settling`), and no ready run waits from an
        earlier instant.

        With `hold_until`, a fire due after `hold_until` that could start that way but
        finds no slot left is not claimed at all (held): its schedule stays due, and
        it is written once, running, when a slot frees. Fires due at or before
        `hold_until`, and fires that could not start that way, are claimed as pending
        runs as `claim_due_fires` does, slot or not.

        A due schedule whose row cannot be decoded is quarantined instead: paused with
        the reason, its runs not yet started closed (returned in `quarantined`), while
        the other schedules are claimed as usual."""

    async def acquire_ready_runs(
        self, now: datetime, limit: int, owner: str, *, settling: Collection[str] = ()
    ) -> list[AcquiredRun]:
        """Move up to `limit` ready runs (pending, or failed and due for a retry) to
        running under `owner`, honouring each schedule's overlap policy: a fresh
        fire whose previous run is still running is skipped (`skip`) or left
        waiting (`queue`); one schedule's runs start in `scheduled_for` order.
        `settling` names schedules whose running run has ended its attempt and is being
        recorded: it is over, so their next fire is left waiting (to start once it is
        recorded), never skipped as an overlap."""

    async def finish_attempt(
        self, acquired: AcquiredRun, owner: str, outcome: AttemptOutcome, *, trip_after: int
    ) -> FinishedAttempt | None:
        """Record an attempt's outcome and update the schedule's failure count and
        circuit breaker in the same transaction. None if `owner` no longer holds
        the run (it was reaped meanwhile), so a late finish cannot overwrite."""

    async def finish_attempts(
        self,
        items: Sequence[tuple[AcquiredRun, AttemptOutcome]],
        owner: str,
        *,
        trip_after: int,
    ) -> list[FinishedAttempt | None]:
        """`finish_attempt` for many runs in one transaction (group commit); results
        in the order given."""

    async def release_runs(self, owner: str, run_ids: Collection[str], now: datetime) -> int:
        """Put runs interrupted by shutdown back to pending; the attempt is not counted."""

    async def next_fire_at(self) -> datetime | None:
        """The earliest `next_run_at` of an active schedule."""

    async def next_due_at(self) -> datetime | None:
        """The earliest instant at which anything (a fire, a retry, an approval
        deadline) becomes due."""

    async def due_instants(self) -> DueInstants:
        """`next_fire_at` and the parts of `next_due_at`, in one read. The engine reads it
        at the start of each iteration; until the store writes again, the store may
        answer its own "anything due?" checks (claim, acquire, expired approvals) from
        it instead of reading again."""

    async def register_instance(self, instance: EngineInstance) -> None: ...

    async def heartbeat(self, instance_id: str, now: datetime) -> None: ...

    async def mark_instance_stopped(self, instance_id: str, now: datetime) -> None: ...

    async def list_instances(self) -> list[EngineInstance]: ...

    async def running_owners(self) -> set[str]:
        """Instance ids that hold at least one running run."""

    async def reap_orphans(
        self,
        dead_owners: Collection[str],
        now: datetime,
        decide: Callable[[Run, Schedule, int], AttemptOutcome],
        *,
        keep: Collection[str] = (),
    ) -> list[FinishedAttempt]:
        """Runs left `running` by dead instances are interrupted: `decide(run, schedule,
        interruptions)` (counting this one) gives the status they take (PENDING or
        FAILED to be redelivered at `next_attempt_at`, or UNKNOWN for the operator) and
        the error; the attempt is recorded, but it is Tickler's fault, not the agent's:
        the run's attempt number is given back and the schedule's failure streak and
        circuit breaker are left alone. Runs whose ids are in `keep` are left alone."""

    # --- runs, for operators ------------------------------------------------------------
    async def add_run(self, run: Run) -> bool:
        """Insert a run (a manual one); False if that fire instant already exists."""

    async def get_run(self, chat_id: int, run_id: str) -> Run | None: ...

    async def list_runs(
        self,
        chat_id: int,
        *,
        schedule_id: str | None = None,
        statuses: Collection[RunStatus] | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Run]:
        """Newest first."""

    async def list_attempts(self, chat_id: int, run_id: str) -> list[Attempt]:
        """A run's finished attempts, oldest first."""

    async def run_figures(self, chat_id: int, since: datetime, until: datetime) -> list[RunFigure]:
        """The chat's runs whose fire instant lies in [since, until], for /stats."""

    async def transition_run(
        self,
        chat_id: int,
        run_id: str,
        *,
        expected: Collection[RunStatus],
        changes: dict[str, Any],
        now: datetime,
    ) -> Run | None:
        """Apply `changes` only if the run is still in one of `expected`; None otherwise.
        This is how a button pressed twice is applied once."""

    async def skip_expired_approvals(self, now: datetime) -> int:
        """Skip the runs still awaiting approval whose deadline (`next_attempt_at`, see
        `scheduler.planning.approval_deadline`) is not after `now`, with the reason
        "approval deadline passed". Returns how many were skipped."""

    # --- proposals -------------------------------------------------------------------------
    async def add_proposal(
        self, proposal: Proposal, schedule: Schedule | None = None
    ) -> Schedule | None:
        """Insert a new proposal (in whatever status the policy gave it) and, in the same
        transaction, the schedule it made (paused awaiting approval, or active): both or
        neither. Returns the schedule as stored (with its number)."""

    async def decide_proposal(
        self,
        chat_id: int,
        proposal_id: str,
        *,
        expected: Collection[ProposalStatus],
        changes: dict[str, Any],
        add_schedule: Schedule | None = None,
        change_schedule: Callable[[Schedule], ScheduleChange] | None = None,
        archive_at: datetime | None = None,
    ) -> Proposal | None:
        """A decision and what it does to the proposal's schedule, in one transaction:
        `changes` applied only if the proposal is still in one of `expected` (else None
        and nothing done, so a decision pressed twice is applied once), then
        `add_schedule` inserted (a high tier approved), or `change_schedule` applied to
        the schedule the proposal names with the runs it adds (a paused one resumed), or
        that schedule archived at `archive_at` as `archive_schedule` does (rejected,
        undone, expired; one archived already is left alone). ScheduleNotFound if the
        schedule to change is gone; any error leaves everything as it was."""

    async def get_proposal(self, chat_id: int, proposal_id: str) -> Proposal | None:
        """The proposal with that id in that chat, or None."""

    async def list_proposals(
        self,
        chat_id: int,
        *,
        statuses: Collection[ProposalStatus] | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Proposal]:
        """The chat's proposals, newest first."""

    async def transition_proposal(
        self,
        chat_id: int,
        proposal_id: str,
        *,
        expected: Collection[ProposalStatus],
        changes: dict[str, Any],
    ) -> Proposal | None:
        """Apply `changes` (status, schedule_id, decided_by, decided_at, refusal) only if
        the proposal is still in one of `expected`; None otherwise. A decision pressed
        twice is applied once."""

    async def list_pending_expired(self, now: datetime) -> list[Proposal]:
        """Pending proposals of every chat whose `expires_at` is not after `now` (the
        expiry sweep; each is then expired through `transition_proposal`)."""

    async def next_proposal_expiry(self) -> datetime | None:
        """The earliest `expires_at` of a pending proposal."""

    # --- operations (health checks and metrics) ---------------------------------------
    async def ping(self) -> None:
        """A trivial query (SELECT 1): raises if the database cannot answer."""

    async def count_runs_by_status(self) -> dict[RunStatus, int]:
        """How many runs there are in each status (statuses with none are absent)."""

    async def count_due_runs(self, now: datetime) -> int:
        """Ready runs (pending, or failed and due for a retry) that are due at `now`."""

    async def count_due_schedules(self, now: datetime) -> int:
        """Active schedules due at `now` whose fire is not claimed yet (held for a free
        slot, see `claim_and_start`)."""

    async def count_tripped_schedules(self) -> int:
        """Active schedules whose circuit breaker has tripped."""

    # --- the outbox (chat messages, bot/outbox.py) --------------------------------------
    async def queue_notifications(self, notifications: Sequence[Notification]) -> None:
        """Write new messages (pending, or blocked for a chat that blocked the bot, or
        already sent by the bot itself) in one transaction."""

    async def pending_notifications(self, chat_id: int, limit: int) -> list[Notification]:
        """Up to `limit` of the chat's pending messages, oldest first (its queue)."""

    async def chats_with_pending_notifications(self, due_by: datetime | None) -> list[int]:
        """Chats with a pending message due by `due_by` (any pending one when None),
        the chat with the oldest such message first."""

    async def next_notification_due(self) -> datetime | None:
        """The earliest `next_attempt_at` of a pending message."""

    async def mark_notification_sent(
        self, notification_id: str, message_id: int, now: datetime
    ) -> None:
        """Telegram took it: `sent`, with its message id; the attempt is counted."""

    async def postpone_notification(
        self, notification_id: str, error: str, next_attempt_at: datetime
    ) -> None:
        """Telegram could not take it now: it stays pending until `next_attempt_at`;
        the attempt is counted and `error` kept."""

    async def settle_notification(
        self, notification_id: str, status: NotificationStatus, error: str
    ) -> None:
        """Stop trying: `given_up` or `blocked`, with why."""

    async def block_pending_notifications(self, chat_id: int, reason: str) -> int:
        """The chat blocked the bot: its pending messages become `blocked`; how many."""

    async def sent_proposal_message(self, chat_id: int, proposal_id: str) -> Notification | None:
        """The message that showed the proposal with its buttons, if it was sent."""

    async def sent_run_message(self, chat_id: int, run_id: str) -> Notification | None:
        """The message that said the run was sent to the agent (kind `run_sent`), whose
        text is edited in place to say how the run went."""

    async def list_notifications(
        self,
        chat_id: int,
        *,
        statuses: Collection[NotificationStatus] | None = None,
        limit: int = 100,
    ) -> list[Notification]:
        """The chat's messages, oldest first."""
