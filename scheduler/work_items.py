"""Work items: the operator's own duties, made by `task` schedules (one per schedule and
local date) or by hand as stand-alone follow-ups.

States: todo → waiting (for someone, with a follow-up date) → todo → done, or archived
from any open state. Every change is a timestamped history entry (who, what, note).
Nothing here speaks Telegram; errors are one `TicklerError` sentence.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from scheduler.clock import Clock
from scheduler.errors import InvalidState, TicklerError, shown
from scheduler.ids import new_id
from scheduler.models import Schedule
from scheduler.work_item_model import (
    OPEN,
    HistoryEntry,
    Proof,
    WorkItem,
    WorkItemRepository,
    WorkItemStatus,
)

__all__ = [
    "Today",
    "WorkItemNotFound",
    "WorkItemService",
]

MAX_TITLE = 300
MAX_NOTE = 1000


class WorkItemNotFound(TicklerError, LookupError):
    """No work item with that id exists in the caller's chat."""


@dataclass(frozen=True)
class Today:
    due_today: list[WorkItem]
    overdue: list[WorkItem]
    followups_due: list[WorkItem]
    waiting: list[WorkItem]


def _note(note: str) -> str:
    note = " ".join(note.split())
    if len(note) > MAX_NOTE:
        raise InvalidState(f"Keep the note under {MAX_NOTE} characters.")
    return note


#: How a file sent to the chat is recorded as proof: "file:<telegram file id> <name>".
FILE_PROOF = "file:"


def _label(item: WorkItem) -> str:
    """How a refusal names the item: a bundle's step by its number and title."""
    if item.bundle_step is not None:
        return f"Step {item.bundle_step} '{item.title}'"
    return f"Item {item.id}"


def _check_proof(item: WorkItem, proof: str | None) -> None:
    """Refuse `proof` (None: none given) unless it is the kind the item requires."""
    label = _label(item)
    if item.proof is Proof.LINK:
        if proof is None or not proof.lower().startswith(("http://", "https://")):
            raise InvalidState(f"{label} needs a link as proof; send /done {item.id} https://…")
    elif item.proof is Proof.FILE and (proof is None or not proof.startswith(FILE_PROOF)):
        raise InvalidState(
            f"{label} needs a file as proof; send the file to this chat with "
            f"/done {item.id} as its caption."
        )
    elif item.proof is Proof.NOTE and proof is None:
        raise InvalidState(
            f"{label} needs a note as proof; send /done {item.id} followed by what was done."
        )


class WorkItemService:
    def __init__(self, store: WorkItemRepository, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        #: Told when a bundle's step item is done or archived, however that came about
        #: (/done, a button, the API): its bundle may be done now (BundleService).
        self.on_step_closed: Callable[[WorkItem], Awaitable[None]] | None = None

    async def _change(self, item: WorkItem, actor: str, action: str, note: str = "") -> WorkItem:
        now = self.clock.now()
        item = item.model_copy(update={"updated_at": now})
        entry = HistoryEntry(item_id=item.id, at=now, actor=actor, action=action, note=note)
        await self.store.update_work_item(item, entry)
        if (
            item.bundle_id is not None
            and item.status not in OPEN
            and self.on_step_closed is not None
        ):
            await self.on_step_closed(item)
        return item

    async def get(self, chat_id: int, item_id: str) -> WorkItem:
        item = await self.store.get_work_item(chat_id, item_id.strip())
        if item is None:
            raise WorkItemNotFound(f"No item '{shown(item_id)}' here; /today lists the open ones.")
        return item

    async def history(self, item: WorkItem) -> list[HistoryEntry]:
        return await self.store.work_item_history(item.id)

    # --- creation -----------------------------------------------------------------------
    async def create_from_fire(self, schedule: Schedule, fire: datetime, title: str) -> bool:
        """The work item of `schedule`'s fire at `fire`; False when that local date
        already has one (a second run the same day makes nothing)."""
        zone = ZoneInfo(schedule.timezone)
        now = self.clock.now()
        action = schedule.action
        item = WorkItem(
            id=new_id(),
            chat_id=schedule.chat_id,
            title=(title.strip() or schedule.name)[:MAX_TITLE],
            instructions=action.instructions,
            due_at=fire,
            assignee=action.assignee,
            schedule_id=schedule.id,
            fire_date=fire.astimezone(zone).date().isoformat(),
            proof=None if action.proof is None else Proof(action.proof),
            created_at=now,
            updated_at=now,
        )
        entry = HistoryEntry(
            item_id=item.id, at=now, actor=f"schedule {schedule.id}", action="created"
        )
        return await self.store.insert_work_item(item, entry)

    async def add_followup(
        self, chat_id: int, title: str, follow_up_at: datetime, *, actor: str, waiting_for: str = ""
    ) -> WorkItem:
        """A stand-alone follow-up: waiting from now, due (and followed up) at the date."""
        title = " ".join(title.split())
        if not title:
            raise InvalidState("Say what to follow up, like /followup 3d Sponsor X invoice.")
        if len(title) > MAX_TITLE:
            raise InvalidState(f"Keep the follow-up under {MAX_TITLE} characters.")
        now = self.clock.now()
        if follow_up_at <= now:
            raise InvalidState("Pick a follow-up date in the future.")
        item = WorkItem(
            id=new_id(),
            chat_id=chat_id,
            title=title,
            due_at=follow_up_at,
            status=WorkItemStatus.WAITING,
            waiting_for=waiting_for or title,
            follow_up_at=follow_up_at,
            created_at=now,
            updated_at=now,
        )
        entry = HistoryEntry(item_id=item.id, at=now, actor=actor, action="follow-up created")
        await self.store.insert_work_item(item, entry)
        return item

    # --- transitions ----------------------------------------------------------------------
    async def mark_waiting(
        self,
        item: WorkItem,
        waiting_for: str,
        follow_up_at: datetime | None,
        note: str,
        *,
        actor: str,
    ) -> WorkItem:
        if item.status not in OPEN:
            raise InvalidState(f"Item {item.id} is {item.status.value}; only open items can wait.")
        waiting_for = " ".join(waiting_for.split())
        note = _note(note)
        if not waiting_for:
            raise InvalidState("Say whom you are waiting for, like /wait ITEM Sponsor 3d note.")
        if follow_up_at is None:
            raise InvalidState("Give a follow-up date, like 3d or 2026-12-01.")
        if not note:
            raise InvalidState("Add a note saying what you are waiting for.")
        if follow_up_at <= self.clock.now():
            raise InvalidState("Pick a follow-up date in the future.")
        item = item.model_copy(
            update={
                "status": WorkItemStatus.WAITING,
                "waiting_for": waiting_for,
                "follow_up_at": follow_up_at,
                "pinged_at": None,
            }
        )
        return await self._change(item, actor, f"waiting for {waiting_for}", note)

    async def followup_sent(
        self, item: WorkItem, next_date: datetime, *, actor: str, note: str = ""
    ) -> WorkItem:
        if item.status is not WorkItemStatus.WAITING:
            raise InvalidState(f"Item {item.id} is not waiting; /wait it first.")
        if next_date <= self.clock.now():
            raise InvalidState("Pick a next follow-up date in the future.")
        item = item.model_copy(update={"follow_up_at": next_date, "pinged_at": None})
        return await self._change(item, actor, "follow-up sent", _note(note))

    async def response_received(self, item: WorkItem, *, actor: str, note: str = "") -> WorkItem:
        if item.status is not WorkItemStatus.WAITING:
            raise InvalidState(f"Item {item.id} is not waiting for anyone.")
        item = item.model_copy(
            update={
                "status": WorkItemStatus.TODO,
                "follow_up_at": None,
                "pinged_at": None,
            }
        )
        return await self._change(item, actor, "response received", _note(note))

    async def done(self, item: WorkItem, proof: str | None = None, *, actor: str) -> WorkItem:
        """Complete it; refused while its required proof is missing (given now, or
        attached before with `attach_proof`), saying what is missing."""
        if item.status not in OPEN:
            raise InvalidState(f"Item {item.id} is already {item.status.value}.")
        proof = (proof or "").strip() or item.proof_value
        if proof is not None and proof != item.proof_value:
            _check_proof(item, proof)
        elif proof is None and item.proof is not None:
            _check_proof(item, None)
        item = item.model_copy(
            update={
                "status": WorkItemStatus.DONE,
                "proof_value": proof,
                "follow_up_at": None,
            }
        )
        return await self._change(item, actor, "done", proof or "")

    async def attach_proof(self, item: WorkItem, proof: str, *, actor: str) -> WorkItem:
        """Add the proof an open item needs without completing it (a bundle's step)."""
        if item.status not in OPEN:
            raise InvalidState(f"Item {item.id} is already {item.status.value}.")
        if item.proof is None:
            raise InvalidState(f"{_label(item)} needs no proof; /done {item.id} completes it.")
        proof = proof.strip()
        _check_proof(item, proof or None)
        item = item.model_copy(update={"proof_value": proof})
        return await self._change(item, actor, "proof added", proof)

    async def archive(self, item: WorkItem, *, actor: str, note: str = "") -> WorkItem:
        if item.status not in OPEN:
            raise InvalidState(f"Item {item.id} is already {item.status.value}.")
        item = item.model_copy(update={"status": WorkItemStatus.ARCHIVED})
        return await self._change(item, actor, "archived", _note(note))

    # --- reading --------------------------------------------------------------------------
    async def due_followups(self, now: datetime) -> list[WorkItem]:
        """Waiting items whose follow-up date arrived and whose operator was not told yet."""
        return await self.store.unpinged_followups(now)

    async def mark_pinged(self, item: WorkItem, now: datetime) -> bool:
        """Claim the ping for the follow-up date `item` was read with; False if the item
        changed since (sent, received, done) or was pinged already."""
        if item.follow_up_at is None:
            return False
        return await self.store.mark_followup_pinged(item.id, item.follow_up_at, now)

    async def unmark_pinged(self, item: WorkItem, pinged_at: datetime) -> None:
        await self.store.unmark_followup_pinged(item.id, pinged_at)

    async def next_followup(self) -> datetime | None:
        return await self.store.next_followup_at()

    async def today(self, chat_id: int, now: datetime, zone: str) -> Today:
        tz = ZoneInfo(zone)
        day = now.astimezone(tz).date()
        start = datetime.combine(day, time(0), tz)
        end = datetime.combine(day + timedelta(days=1), time(0), tz)
        items = await self.store.list_work_items(chat_id, OPEN)
        todo = [i for i in items if i.status is WorkItemStatus.TODO]
        waiting = [i for i in items if i.status is WorkItemStatus.WAITING]
        return Today(
            due_today=[i for i in todo if start <= i.due_at < end],
            overdue=[i for i in todo if i.due_at < start],
            followups_due=[
                i for i in waiting if i.follow_up_at is not None and i.follow_up_at <= now
            ],
            waiting=[i for i in waiting if i.follow_up_at is None or i.follow_up_at > now],
        )
