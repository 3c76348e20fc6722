"""The repositories operator screens read and write through: one small protocol per
aggregate (schedules, runs, proposals, chats, the outbox; work items in
`scheduler.work_items`), plus the operations readings (health, metrics, retention).

Worded in domain operations, not SQL, so that a second implementation (PostgreSQL) can
pass the same contract tests. Every method that reads or changes operator data takes the
`chat_id` that owns it: one chat never sees another's schedules or runs. The engine does
not use these; it has `scheduler.engine_store.EngineStore`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from scheduler.budgets import UseRow
from scheduler.engine_store import BudgetPause
from scheduler.models import (
    Attempt,
    EmittedEvent,
    Event,
    PauseKind,
    Run,
    RunFigure,
    RunStatus,
    Schedule,
)
from scheduler.proposal_model import Proposal, ProposalStatus

__all__ = [
    "ChatPrefs",
    "ChatRepository",
    "EventRepository",
    "Notification",
    "NotificationStatus",
    "OperationsRepository",
    "OutboxRepository",
    "ProposalRepository",
    "Pruned",
    "RunRepository",
    "ScheduleChange",
    "ScheduleRepository",
]


@dataclass(frozen=True)
class ChatPrefs:
    chat_id: int
    #: The zone new schedules of this chat use; None means the bot's default.
    timezone: str | None = None
    #: Set while Telegram refuses delivery to the chat (the user blocked the bot).
    blocked_at: datetime | None = None
    block_reason: str | None = None
    #: The chat's own budget over the last 7 days (scheduler/budgets.py); None: none.
    budget_runs_per_week: int | None = None
    budget_tokens_per_week: int | None = None


@dataclass(frozen=True)
class ScheduleChange:
    schedule: Schedule
    new_runs: Sequence[Run] = ()
    #: Extra runs past its budget to allow the schedule (a budget notice's
    #: [Run once more]), written in the change's transaction; None leaves it.
    allowance: int | None = None


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


class ScheduleRepository(Protocol):
    async def add(self, schedule: Schedule) -> Schedule:
        """Insert a new schedule; returns it with its number within the chat (one more
        than the chat's highest so far, never reused)."""

    async def find(
        self, chat_id: int, *, number: int | None = None, prefix: str | None = None, limit: int = 5
    ) -> list[Schedule]:
        """The chat's schedule numbered `number` (archived ones too), or its active
        schedules whose id starts with `prefix` in any letter case (at most `limit`)."""

    async def get(self, chat_id: int, schedule_id: str) -> Schedule | None:
        """The schedule with that id in that chat, or None."""

    async def list_for_chat(
        self, chat_id: int, *, include_archived: bool = False
    ) -> list[Schedule]:
        """The chat's schedules, oldest first."""

    async def list_by_trigger(self, chat_ids: Collection[int], kind: str) -> list[Schedule]:
        """The chats' non-archived schedules whose trigger is of `kind` (`event`,
        `startup`, `after`), oldest first: who may listen to an event, without reading
        every schedule of the chats."""

    async def count_active(self, chat_id: int) -> int:
        """How many non-archived schedules the chat has (for per-chat limits)."""

    async def modify(
        self, chat_id: int, schedule_id: str, change: Callable[[Schedule], ScheduleChange]
    ) -> Schedule | None:
        """Read the schedule, apply `change` and write the result (and the runs it
        adds) in one transaction, so a concurrent pause, trip or claim is never
        overwritten by a stale copy. An exception from `change` changes nothing.
        None if there is no such schedule in that chat."""

    async def pause(
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

    async def archive(self, chat_id: int, schedule_id: str, *, now: datetime) -> Schedule | None:
        """Archive (never delete): disabled, hidden from lists, history kept."""


class ChatRepository(Protocol):
    async def get(self, chat_id: int) -> ChatPrefs:
        """The chat's preferences (defaults if it never set any)."""

    async def set_timezone(self, chat_id: int, zone: str, now: datetime) -> None: ...

    async def set_blocked(self, chat_id: int, reason: str | None, now: datetime) -> None:
        """Record that delivery to the chat fails (`reason`), or works again (None)."""

    async def set_budget(
        self, chat_id: int, runs: int | None, tokens: int | None, now: datetime
    ) -> None:
        """The chat's budget (runs and tokens per week; None: no limit)."""

    async def use_rows(self, chat_id: int, since: datetime) -> list[UseRow]:
        """The chat's runs started since `since`, with their tokens (for /budget)."""


class RunRepository(Protocol):
    async def add(self, run: Run) -> bool:
        """Insert a run (a manual one); False if that fire instant already exists."""

    async def get(self, chat_id: int, run_id: str) -> Run | None: ...

    async def list_for_chat(
        self,
        chat_id: int,
        *,
        schedule_id: str | None = None,
        statuses: Collection[RunStatus] | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Run]:
        """Newest first."""

    async def attempts(self, chat_id: int, run_id: str) -> list[Attempt]:
        """A run's finished attempts, oldest first."""

    async def figures(self, chat_id: int, since: datetime, until: datetime) -> list[RunFigure]:
        """The chat's runs whose fire instant lies in [since, until], for /stats."""

    async def transition(
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


class EventRepository(Protocol):
    async def find(self, caller: str, key: str) -> EmittedEvent | None:
        """The event `caller` posted with idempotency key `key`, and its runs."""

    async def add(
        self, event: Event, fired: Sequence[tuple[Schedule, Run]]
    ) -> tuple[EmittedEvent, list[BudgetPause]]:
        """Record the event and the run it fires for each schedule, at once. A run whose
        schedule has one at that very instant moves on by a microsecond (the instant is
        its idempotency key). A schedule at its budget, or its chat's
        (scheduler/budgets.py), is paused instead, its run written skipped, and
        returned for the notice. If the caller's key was recorded meanwhile, nothing is
        written and the answer is the earlier event's runs (`repeated`)."""


class ProposalRepository(Protocol):
    async def add(self, proposal: Proposal, schedule: Schedule | None = None) -> Schedule | None:
        """Insert a new proposal (in whatever status the policy gave it) and, in the same
        transaction, the schedule it made (paused awaiting approval, or active): both or
        neither. Returns the schedule as stored (with its number)."""

    async def decide(
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
        that schedule archived at `archive_at` (rejected, undone, expired; one archived
        already is left alone). ScheduleNotFound if the schedule to change is gone; any
        error leaves everything as it was."""

    async def get(self, chat_id: int, proposal_id: str) -> Proposal | None:
        """The proposal with that id in that chat, or None."""

    async def list_for_chat(
        self,
        chat_id: int,
        *,
        statuses: Collection[ProposalStatus] | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Proposal]:
        """The chat's proposals, newest first."""

    async def transition(
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

    async def expired(self, now: datetime) -> list[Proposal]:
        """Pending proposals of every chat whose `expires_at` is not after `now` (the
        expiry sweep; each is then expired through `transition_proposal`)."""

    async def next_expiry(self) -> datetime | None:
        """The earliest `expires_at` of a pending proposal."""


class OutboxRepository(Protocol):
    async def queue(self, notifications: Sequence[Notification]) -> None:
        """Write new messages (pending, or blocked for a chat that blocked the bot, or
        already sent by the bot itself) in one transaction."""

    async def pending(self, chat_id: int, limit: int) -> list[Notification]:
        """Up to `limit` of the chat's pending messages, oldest first (its queue)."""

    async def chats_with_pending(self, due_by: datetime | None) -> list[int]:
        """Chats with a pending message due by `due_by` (any pending one when None),
        the chat with the oldest such message first."""

    async def next_due(self) -> datetime | None:
        """The earliest `next_attempt_at` of a pending message."""

    async def mark_sent(self, notification_id: str, message_id: int, now: datetime) -> None:
        """Telegram took it: `sent`, with its message id; the attempt is counted."""

    async def postpone(self, notification_id: str, error: str, next_attempt_at: datetime) -> None:
        """Telegram could not take it now: it stays pending until `next_attempt_at`;
        the attempt is counted and `error` kept."""

    async def settle(self, notification_id: str, status: NotificationStatus, error: str) -> None:
        """Stop trying: `given_up` or `blocked`, with why."""

    async def block_pending(self, chat_id: int, reason: str) -> int:
        """The chat blocked the bot: its pending messages become `blocked`; how many."""

    async def status_of(self, notification_id: str) -> NotificationStatus | None:
        """Where the message stands (None: no such message). A replica that does not
        send the outbox watches its reminder's message go out through it."""

    async def sent_proposal_message(self, chat_id: int, proposal_id: str) -> Notification | None:
        """The message that showed the proposal with its buttons, if it was sent."""

    async def sent_run_message(self, chat_id: int, run_id: str) -> Notification | None:
        """The message that said the run was sent to the agent (kind `run_sent`), whose
        text is edited in place to say how the run went."""


class OperationsRepository(Protocol):
    """Health checks, metrics and retention: readings across every chat."""

    async def ping(self) -> None:
        """A trivial query (SELECT 1): raises if the database cannot answer."""

    async def count_runs_by_status(self) -> dict[RunStatus, int]:
        """How many runs there are in each status (statuses with none are absent)."""

    async def count_due_runs(self, now: datetime) -> int:
        """Ready runs (pending, or failed and due for a retry) that are due at `now`."""

    async def count_due_schedules(self, now: datetime) -> int:
        """Active schedules due at `now` whose fire is not claimed yet (held for a free
        slot, see `EngineStore.claim`)."""

    async def count_tripped_schedules(self) -> int:
        """Active schedules whose circuit breaker has tripped."""

    async def count_all_schedules(self) -> int:
        """Schedules not archived, of every chat (the start-up line reports them)."""

    async def prune_history(self, cutoff: datetime, *, keep: int, batch: int) -> Pruned:
        """Delete finished runs fired and last changed before `cutoff`, except each
        schedule's `keep` latest runs, with their attempts; and settled chat messages
        written before `cutoff`. At most `batch` rows per transaction (see
        bot/retention.py)."""
