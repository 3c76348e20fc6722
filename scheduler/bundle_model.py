"""Bundles as stored: one instance of a workflow template (a `bundle` schedule) for one
anchor date, the snapshot it is made from, and the repository protocol it is read and
written through (the service is `scheduler.bundles`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, datetime, time
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from scheduler.models import Owner, Policies, Schedule, Step
from scheduler.repositories import Notification
from scheduler.work_item_model import HistoryEntry, WorkItem

__all__ = [
    "Bundle",
    "BundleRepository",
    "BundleSnapshot",
    "BundleStatus",
    "Instantiation",
]

_frozen = ConfigDict(frozen=True, extra="forbid")


class BundleStatus(StrEnum):
    #: Written, its steps not yet: a start that finds it finishes it from the snapshot.
    INSTANTIATING = "instantiating"
    ACTIVE = "active"
    #: Every step is done (or, for a prompt step, its run ended).
    DONE = "done"
    #: It could not be finished; the chat was told once, with the template and date.
    FAILED = "failed"


class BundleSnapshot(BaseModel):
    """What the bundle's steps are made from, as the template was at the fire: making
    them again from it gives the same steps, whatever the template became since."""

    model_config = _frozen

    timezone: str
    #: The local time of day every step is due at (the template's fire time).
    due_time: time
    owner: Owner
    #: The policies of its prompt steps' one-time schedules (the template's).
    policies: Policies = Policies()
    steps: tuple[Step, ...]


class Bundle(BaseModel):
    model_config = _frozen

    id: str
    chat_id: int
    template_id: str
    anchor_date: date
    title: str
    snapshot: BundleSnapshot | None
    status: BundleStatus
    #: Why it failed, or why its stored snapshot cannot be read (then `snapshot` is None).
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None


class Instantiation(BaseModel):
    """A bundle's steps, ready to write in one transaction: the task steps' work items
    (with their history entries) and the prompt steps' one-time schedules."""

    model_config = _frozen

    items: tuple[tuple[WorkItem, HistoryEntry], ...]
    schedules: tuple[Schedule, ...]


class BundleRepository(Protocol):
    async def add_bundle(self, bundle: Bundle) -> Bundle:
        """Write `bundle` unless its (template, anchor date) has one: then that one,
        unchanged (the caller compares ids)."""

    async def instantiate(self, bundle_id: str, steps: Instantiation, now: datetime) -> bool:
        """In one transaction: write the steps (each at most once per bundle and step,
        and a schedule id that exists is left alone) and make the bundle active. False,
        writing nothing, when the bundle is no longer instantiating (another start
        finished it)."""

    async def fail_bundle(
        self, bundle_id: str, error: str, notice: Notification, now: datetime
    ) -> bool:
        """Mark an instantiating bundle failed and queue `notice`, in one transaction;
        False (nothing written) when it is no longer instantiating."""

    async def remake_bundle(self, bundle: Bundle) -> bool:
        """Put a failed bundle back to instantiating with `bundle`'s snapshot, title and
        time; False if it is not failed (made meanwhile)."""

    async def complete_bundle(self, bundle_id: str, now: datetime) -> bool:
        """Active → done; False when it was not active."""

    async def get_bundle(self, chat_id: int, bundle_id: str) -> Bundle | None: ...

    async def find_bundle(self, template_id: str, anchor_date: date) -> Bundle | None: ...

    async def list_bundles(self, chat_id: int, statuses: Collection[BundleStatus]) -> list[Bundle]:
        """The chat's bundles in those statuses, by anchor date."""

    async def instantiating_bundles(self) -> list[Bundle]:
        """Every chat's bundles still instantiating (a start finishes them)."""

    async def bundle_items(self, bundle_id: str) -> list[WorkItem]:
        """The bundle's task steps, by step number."""

    async def bundle_anchors(self, template_id: str, anchors: Sequence[date]) -> set[date]:
        """Which of `anchors` already have a bundle of the template (a failed one, which
        a backfill makes again, does not count)."""
