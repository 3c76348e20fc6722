"""The repositories (`scheduler.repositories`): one class per aggregate over
one shared connection, each method one read or one transaction of the SQL in the
aggregate's module."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from scheduler.budgets import BudgetUse, UseRow
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
    SkipReason,
)
from scheduler.plans import following_runs
from scheduler.proposal_model import Proposal, ProposalStatus
from scheduler.repositories import (
    ChatPrefs,
    Notification,
    NotificationStatus,
    Pruned,
    ScheduleChange,
)
from scheduler.work_item_model import HistoryEntry, WorkItem, WorkItemStatus
from storage import (
    budgets,
    chats,
    events,
    notifications,
    proposals,
    retention,
    runs,
    schedules,
    stats,
    work_items,
)
from storage.codec import to_db_time
from storage.sql import Connection, fetch_one

__all__ = [
    "SqlChats",
    "SqlEvents",
    "SqlOperations",
    "SqlOutbox",
    "SqlProposals",
    "SqlRuns",
    "SqlSchedules",
    "SqlWorkItems",
]


class SqlSchedules:
    """Schedules (`scheduler.repositories.ScheduleRepository`)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def add(self, schedule: Schedule) -> Schedule:
        async with self._conn.write() as db:
            number = await schedules.insert(db, schedule)
        return schedule.model_copy(update={"number": number})

    async def find(
        self, chat_id: int, *, number: int | None = None, prefix: str | None = None, limit: int = 5
    ) -> list[Schedule]:
        async with self._conn.read() as db:
            if number is not None:
                found = await schedules.by_number(db, chat_id, number)
                return [] if found is None else [found]
            if prefix is not None:
                return await schedules.by_prefix(db, chat_id, prefix, limit)
            return []

    async def get(self, chat_id: int, schedule_id: str) -> Schedule | None:
        async with self._conn.read() as db:
            return await schedules.get(db, chat_id, schedule_id)

    async def list_for_chat(
        self, chat_id: int, *, include_archived: bool = False
    ) -> list[Schedule]:
        async with self._conn.read() as db:
            return await schedules.list_for_chat(db, chat_id, include_archived=include_archived)

    async def list_by_trigger(self, chat_ids: Collection[int], kind: str) -> list[Schedule]:
        async with self._conn.read() as db:
            return await schedules.list_by_trigger(db, chat_ids, kind)

    async def count_active(self, chat_id: int) -> int:
        async with self._conn.read() as db:
            return await schedules.count_active(db, chat_id)

    async def modify(
        self, chat_id: int, schedule_id: str, change: Callable[[Schedule], ScheduleChange]
    ) -> Schedule | None:
        async with self._conn.write() as db:
            current = await schedules.get(db, chat_id, schedule_id)
            if current is None:
                return None
            result = change(current)
            await schedules.replace(db, result.schedule)
            await runs.insert_many(db, result.new_runs)
            if result.allowance is not None:
                await budgets.grant_allowance(
                    db, schedule_id, result.allowance, result.schedule.updated_at
                )
            return result.schedule

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
        async with self._conn.write() as db:
            current = await schedules.get(db, chat_id, schedule_id)
            if current is None:
                return None
            paused = current.model_copy(
                update={
                    "enabled": False,
                    "paused_by": by,
                    "pause_reason": reason,
                    "pause_kind": kind,
                    "updated_at": now,
                }
            )
            await schedules.replace(db, paused)
            await runs.settle_open(
                db,
                schedule_id,
                SkipReason.PAUSED,
                f"paused: {reason or 'by the operator'}",
                now,
                paused,
            )
            return paused

    async def archive(self, chat_id: int, schedule_id: str, *, now: datetime) -> Schedule | None:
        async with self._conn.write() as db:
            return await schedules.archive(db, chat_id, schedule_id, now)


class SqlChats:
    """Chat preferences (`scheduler.repositories.ChatRepository`)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def get(self, chat_id: int) -> ChatPrefs:
        async with self._conn.read() as db:
            return await chats.get(db, chat_id)

    async def set_timezone(self, chat_id: int, zone: str, now: datetime) -> None:
        async with self._conn.write() as db:
            await chats.set_timezone(db, chat_id, zone, now)

    async def set_blocked(self, chat_id: int, reason: str | None, now: datetime) -> None:
        async with self._conn.write() as db:
            await chats.set_blocked(db, chat_id, reason, now)

    async def set_budget(
        self, chat_id: int, runs: int | None, tokens: int | None, now: datetime
    ) -> None:
        async with self._conn.write() as db:
            await budgets.set_chat_budget(db, chat_id, runs, tokens, now)

    async def use_rows(self, chat_id: int, since: datetime) -> list[UseRow]:
        async with self._conn.read() as db:
            return await budgets.chat_use_rows(db, chat_id, since)


class SqlRuns:
    """The run ledger as operators see it (`scheduler.repositories.RunRepository`)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def add(self, run: Run) -> bool:
        async with self._conn.write() as db:
            return await runs.insert_many(db, [run]) == 1

    async def get(self, chat_id: int, run_id: str) -> Run | None:
        async with self._conn.read() as db:
            return await runs.get(db, chat_id, run_id)

    async def list_for_chat(
        self,
        chat_id: int,
        *,
        schedule_id: str | None = None,
        statuses: Collection[RunStatus] | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Run]:
        async with self._conn.read() as db:
            return await runs.list_for_chat(
                db, chat_id, schedule_id=schedule_id, statuses=statuses, limit=limit, offset=offset
            )

    async def attempts(self, chat_id: int, run_id: str) -> list[Attempt]:
        async with self._conn.read() as db:
            return await runs.attempts(db, chat_id, run_id)

    async def figures(self, chat_id: int, since: datetime, until: datetime) -> list[RunFigure]:
        async with self._conn.read() as db:
            return await stats.run_figures(db, chat_id, since, until)

    async def transition(
        self,
        chat_id: int,
        run_id: str,
        *,
        expected: Collection[RunStatus],
        changes: dict[str, Any],
        now: datetime,
    ) -> Run | None:
        async with self._conn.write() as db:
            if not await runs.transition(
                db, chat_id, run_id, expected=expected, changes=changes, now=now
            ):
                return None
            run = await runs.get(db, chat_id, run_id)
            if run is not None and run.plan_run_id is not None:
                # A plan's step the operator ended (marked done, dropped, rejected)
                # moves its plan on or stops it, in this transaction.
                found = await schedules.get_many(db, [run.schedule_id])
                if run.schedule_id in found:
                    await runs.write_plan_steps(
                        db, following_runs(run, found[run.schedule_id], now)
                    )
            return run


class SqlEvents:
    """Posted events and the runs they fired (`scheduler.repositories.EventRepository`)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def find(self, caller: str, key: str) -> EmittedEvent | None:
        async with self._conn.read() as db:
            return await events.find(db, caller, key)

    async def add(
        self, event: Event, fired: Sequence[tuple[Schedule, Run]]
    ) -> tuple[EmittedEvent, list[BudgetPause]]:
        async with self._conn.write() as db:
            found = await events.record(db, event)
            if found is not None:
                return found, []
            chat_limits = await budgets.chat_budgets(db, {s.chat_id for s, _ in fired})
            counted: dict[int, BudgetUse] = {}
            written: list[Run] = []
            paused: list[BudgetPause] = []
            for schedule, run in fired:
                gated = await budgets.gate(
                    db, schedule, [run], event.received_at, chat_limits, counted
                )
                if gated is None:
                    written.append(run)
                else:
                    written.extend(gated[0])
                    paused.append(gated[1])
            return await events.add_runs(db, event, written), paused


class SqlProposals:
    """Proposals (`scheduler.repositories.ProposalRepository`)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def add(self, proposal: Proposal, schedule: Schedule | None = None) -> Schedule | None:
        async with self._conn.write() as db:
            return await proposals.insert_with_schedule(db, proposal, schedule)

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
        async with self._conn.write() as db:
            return await proposals.decide(
                db,
                chat_id,
                proposal_id,
                expected=expected,
                changes=changes,
                add_schedule=add_schedule,
                change_schedule=change_schedule,
                archive_at=archive_at,
            )

    async def get(self, chat_id: int, proposal_id: str) -> Proposal | None:
        async with self._conn.read() as db:
            return await proposals.get(db, chat_id, proposal_id)

    async def list_for_chat(
        self,
        chat_id: int,
        *,
        statuses: Collection[ProposalStatus] | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Proposal]:
        async with self._conn.read() as db:
            return await proposals.list_for_chat(
                db, chat_id, statuses=statuses, limit=limit, offset=offset
            )

    async def transition(
        self,
        chat_id: int,
        proposal_id: str,
        *,
        expected: Collection[ProposalStatus],
        changes: dict[str, Any],
    ) -> Proposal | None:
        async with self._conn.write() as db:
            if not await proposals.transition(
                db, chat_id, proposal_id, expected=expected, changes=changes
            ):
                return None
            return await proposals.get(db, chat_id, proposal_id)

    async def expired(self, now: datetime) -> list[Proposal]:
        async with self._conn.read() as db:
            return await proposals.pending_expired(db, now)

    async def next_expiry(self) -> datetime | None:
        async with self._conn.read() as db:
            return await proposals.earliest_expiry(db)


class SqlWorkItems:
    """Work items (`scheduler.work_item_model.WorkItemRepository`)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def insert_work_item(self, item: WorkItem, entry: HistoryEntry) -> bool:
        async with self._conn.write() as db:
            return await work_items.insert(db, item, entry)

    async def update_work_item(self, item: WorkItem, entry: HistoryEntry) -> None:
        async with self._conn.write() as db:
            await work_items.update(db, item, entry)

    async def get_work_item(self, chat_id: int, item_id: str) -> WorkItem | None:
        async with self._conn.read() as db:
            return await work_items.get(db, chat_id, item_id)

    async def list_work_items(
        self, chat_id: int, statuses: Collection[WorkItemStatus]
    ) -> list[WorkItem]:
        async with self._conn.read() as db:
            return await work_items.list_for_chat(db, chat_id, statuses)

    async def work_item_history(self, item_id: str) -> list[HistoryEntry]:
        async with self._conn.read() as db:
            return await work_items.history(db, item_id)

    async def unpinged_followups(self, now: datetime) -> list[WorkItem]:
        async with self._conn.read() as db:
            return await work_items.unpinged_followups(db, now)

    async def mark_followup_pinged(
        self, item_id: str, follow_up_at: datetime, now: datetime
    ) -> bool:
        async with self._conn.write() as db:
            return await work_items.mark_pinged(db, item_id, follow_up_at, now)

    async def unmark_followup_pinged(self, item_id: str, pinged_at: datetime) -> None:
        async with self._conn.write() as db:
            await work_items.unmark_pinged(db, item_id, pinged_at)

    async def next_followup_at(self) -> datetime | None:
        async with self._conn.read() as db:
            return await work_items.earliest_followup(db)


class SqlOutbox:
    """The chat messages to send (`scheduler.repositories.OutboxRepository`)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def queue(self, queued: Sequence[Notification]) -> None:
        if not queued:
            return
        async with self._conn.write() as db:
            await notifications.insert_many(db, queued)

    async def pending(self, chat_id: int, limit: int) -> list[Notification]:
        async with self._conn.read() as db:
            return await notifications.queue_of(db, chat_id, limit)

    async def chats_with_pending(self, due_by: datetime | None) -> list[int]:
        async with self._conn.read() as db:
            return await notifications.chats_waiting(db, due_by)

    async def next_due(self) -> datetime | None:
        async with self._conn.read() as db:
            return await notifications.earliest_due(db)

    async def mark_sent(self, notification_id: str, message_id: int, now: datetime) -> None:
        async with self._conn.write() as db:
            await notifications.mark_sent(db, notification_id, message_id, now)

    async def postpone(self, notification_id: str, error: str, next_attempt_at: datetime) -> None:
        async with self._conn.write() as db:
            await notifications.postpone(db, notification_id, error, next_attempt_at)

    async def settle(self, notification_id: str, status: NotificationStatus, error: str) -> None:
        async with self._conn.write() as db:
            await notifications.settle(db, notification_id, status, error)

    async def block_pending(self, chat_id: int, reason: str) -> int:
        async with self._conn.write() as db:
            return await notifications.block_pending(db, chat_id, reason)

    async def status_of(self, notification_id: str) -> NotificationStatus | None:
        async with self._conn.read() as db:
            return await notifications.status_of(db, notification_id)

    async def sent_proposal_message(self, chat_id: int, proposal_id: str) -> Notification | None:
        async with self._conn.read() as db:
            return await notifications.sent_for_proposal(db, chat_id, proposal_id)

    async def sent_run_message(self, chat_id: int, run_id: str) -> Notification | None:
        async with self._conn.read() as db:
            return await notifications.sent_for_run(db, chat_id, run_id)


class SqlOperations:
    """Health, metrics and retention (`scheduler.repositories.OperationsRepository`)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def ping(self) -> None:
        async with self._conn.read() as db:
            await fetch_one(db, "SELECT 1")

    async def count_runs_by_status(self) -> dict[RunStatus, int]:
        async with self._conn.read() as db:
            return await runs.count_by_status(db)

    async def count_due_runs(self, now: datetime) -> int:
        async with self._conn.read() as db:
            return await runs.count_due(db, now)

    async def count_due_schedules(self, now: datetime) -> int:
        async with self._conn.read() as db:
            return await schedules.count_due(db, now)

    async def count_tripped_schedules(self) -> int:
        async with self._conn.read() as db:
            return await schedules.count_tripped(db)

    async def count_all_schedules(self) -> int:
        """Schedules not archived, of every chat (the start-up line reports them)."""
        async with self._conn.read() as db:
            return await schedules.count_all_active(db)

    async def prune_history(self, cutoff: datetime, *, keep: int, batch: int) -> Pruned:
        """Delete finished runs (storage.retention.PRUNABLE_RUN_STATUSES) fired and last
        changed before `cutoff`, except each schedule's `keep` latest runs, with their
        attempts; and settled chat messages written before `cutoff`. At most `batch` rows
        per transaction, letting the engine in between, so it never waits long."""
        if keep < 1:
            raise ValueError("keep at least one run per schedule")
        limit = to_db_time(cutoff)
        pruned = Pruned()
        after_schedule = ""
        while True:
            async with self._conn.read() as db:
                ids = await retention.schedule_ids(db, after_schedule, batch)
            if not ids:
                break
            after_schedule = ids[-1]
            for schedule_id in ids:
                async with self._conn.read() as db:
                    kept_from = await retention.keep_from(db, schedule_id, keep)
                if kept_from is None:
                    continue  # fewer than `keep` runs: all stay
                before = min(kept_from, limit)
                after: str | None = ""
                while after is not None:
                    # Read first: most schedules have nothing to prune on most days, and
                    # the write lock is then not taken for nothing.
                    async with self._conn.read() as db:
                        found, after = await retention.prunable_runs(
                            db, schedule_id, before=before, cutoff=cutoff, after=after, limit=batch
                        )
                    if found:
                        async with self._conn.write() as db:
                            gone, attempts = await retention.delete_runs(db, found, cutoff)
                        pruned += Pruned(runs=gone, attempts=attempts)
                    await asyncio.sleep(0)
        while True:
            async with self._conn.write() as db:
                gone = await retention.delete_notifications(db, cutoff, batch)
            pruned += Pruned(notifications=gone)
            await asyncio.sleep(0)
            if gone < batch:
                break
        return pruned
