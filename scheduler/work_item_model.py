"""Work items as stored: the item, its history, and the repository protocol they are
read and written through (the service is `scheduler.work_items`)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict

__all__ = [
    "OPEN",
    "HistoryEntry",
    "Proof",
    "WorkItem",
    "WorkItemRepository",
    "WorkItemStatus",
]

_frozen = ConfigDict(frozen=True, extra="forbid")


class WorkItemStatus(StrEnum):
    TODO = "todo"
    WAITING = "waiting"
    DONE = "done"
    ARCHIVED = "archived"


class Proof(StrEnum):
    LINK = "link"
    FILE = "file"
    NOTE = "note"  # a written note: what was done, where it is


OPEN = (WorkItemStatus.TODO, WorkItemStatus.WAITING)
_frozen = ConfigDict(frozen=True, extra="forbid")


class WorkItem(BaseModel):
    model_config = _frozen

    id: str
    chat_id: int
    title: str
    instructions: str = ""
    due_at: datetime
    assignee: str | None = None
    schedule_id: str | None = None
    #: The fire's local date (YYYY-MM-DD) in the schedule's zone; None when stand-alone.
    fire_date: str | None = None
    proof: Proof | None = None
    proof_value: str | None = None
    status: WorkItemStatus = WorkItemStatus.TODO
    waiting_for: str | None = None
    follow_up_at: datetime | None = None
    #: When the operator was told the follow-up is due; set once, so a restart is quiet.
    pinged_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    #: A bundle's task step (scheduler/bundles.py): its bundle and step number (from 1).
    bundle_id: str | None = None
    bundle_step: int | None = None


class HistoryEntry(BaseModel):
    model_config = _frozen

    item_id: str
    at: datetime
    actor: str
    action: str
    note: str = ""


class WorkItemRepository(Protocol):
    async def insert_work_item(self, item: WorkItem, entry: HistoryEntry) -> bool:
        """False (nothing written) when the schedule already made an item that date."""

    async def update_work_item(self, item: WorkItem, entry: HistoryEntry) -> None: ...

    async def get_work_item(self, chat_id: int, item_id: str) -> WorkItem | None: ...

    async def list_work_items(
        self, chat_id: int, statuses: Collection[WorkItemStatus]
    ) -> list[WorkItem]: ...

    async def work_item_history(self, item_id: str) -> list[HistoryEntry]: ...

    async def unpinged_followups(self, now: datetime) -> list[WorkItem]: ...

    async def mark_followup_pinged(
        self, item_id: str, follow_up_at: datetime, now: datetime
    ) -> bool: ...

    async def unmark_followup_pinged(self, item_id: str, pinged_at: datetime) -> None: ...

    async def next_followup_at(self) -> datetime | None: ...
