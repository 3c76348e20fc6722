"""Workflow templates and their bundles.

A template is a schedule whose action is `bundle`: an ordered list of steps, each a task
for the operator (title, instructions, assignee, required proof) or an agent prompt, due
`offset_days` from an anchor date. A fire on local day D (in the template's zone) makes
the bundle anchored on A = D + lead_days, at most one per (template, A), and its steps:
task steps become work items (scheduler/work_items.py) due on A + offset at the
template's time of day; prompt steps become one-time agent schedules (id
`<bundle id>.<step>`) that fire once at that instant.

Making a bundle is two transactions on purpose: the bundle row (status `instantiating`,
with a snapshot of what its steps are made from), then its steps and status `active`
together. A process that dies between the two leaves an instantiating bundle; the next
start finishes it from the snapshot (`reconcile`, called by the engine's start-up), and
one that cannot be finished is marked `failed` and the chat is told, with the template
and the date, once. Steps are written at most once per bundle and step, so finishing
twice (two replicas starting together) writes nothing twice.

Nothing here speaks Telegram; errors are one `TicklerError` sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from scheduler.bundle_model import (
    Bundle,
    BundleSnapshot,
    BundleStatus,
    Instantiation,
)
from scheduler.clock import Clock
from scheduler.errors import InvalidSchedule, InvalidState, TicklerError, shown
from scheduler.ids import new_id
from scheduler.models import (
    FINAL_STATUSES,
    Action,
    ActionKind,
    CreatedBy,
    MissedRunPolicy,
    Run,
    Schedule,
    Step,
    StepKind,
)
from scheduler.repositories import Notification
from scheduler.stores import Stores
from scheduler.triggers import OnceTrigger
from scheduler.work_item_model import (
    OPEN,
    HistoryEntry,
    Proof,
    WorkItem,
    WorkItemStatus,
)
from scheduler.work_items import WorkItemService

__all__ = [
    "MAX_BACKFILL_DAYS",
    "BundleBackfill",
    "BundleCard",
    "BundleNotFound",
    "BundleService",
    "StepState",
    "step_schedule_id",
]

log = logging.getLogger("tickler.bundles")

#: The longest window one backfill may cover.
MAX_BACKFILL_DAYS = 366
#: How far a follow-up date set from the bundle card lies ahead.
FOLLOW_UP_AFTER = timedelta(days=3)


class BundleNotFound(TicklerError, LookupError):
    """No bundle with that id exists in the caller's chat."""


def step_schedule_id(bundle_id: str, number: int) -> str:
    """The id of a prompt step's one-time schedule: the same for the same bundle and
    step, so a second instantiation finds it instead of making another (a 26-character
    bundle id, a dot and at most two digits: within a schedule id's 30)."""
    return f"{bundle_id}.{number}"


def step_of(schedule_id: str) -> tuple[str, int] | None:
    """The bundle id and step number a prompt step's schedule id names, if it is shaped
    like one (`step_schedule_id`); the bundle must still be looked up to be sure."""
    bundle_id, dot, number = schedule_id.rpartition(".")
    if not dot or not number.isascii() or not number.isdigit():
        return None
    return bundle_id, int(number)


@dataclass(frozen=True)
class StepState:
    """One step of a bundle as the card shows it."""

    number: int
    step: Step
    due_at: datetime
    #: A task step's work item (None until the bundle is instantiated).
    item: WorkItem | None = None
    #: A prompt step's one-time schedule id and its latest run (None before it fires).
    schedule_id: str | None = None
    run: Run | None = None
    #: The prompt step's schedule was archived by hand: it will never run.
    dropped: bool = False

    @property
    def is_task(self) -> bool:
        return self.step.kind is StepKind.TASK

    @property
    def settled(self) -> bool:
        """Done: a task done or archived, a prompt whose run ended for good."""
        if self.is_task:
            return self.item is not None and self.item.status not in OPEN
        return self.dropped or (self.run is not None and self.run.status in FINAL_STATUSES)

    @property
    def missing_proof(self) -> Proof | None:
        """The proof an open task step still needs."""
        item = self.item
        if item is None or item.status not in OPEN or item.proof is None:
            return None
        return item.proof if item.proof_value is None else None

    def overdue(self, now: datetime) -> bool:
        return not self.settled and self.due_at < now and not self.waiting

    @property
    def waiting(self) -> bool:
        return self.item is not None and self.item.status is WorkItemStatus.WAITING

    def follow_up_due(self, now: datetime) -> bool:
        item = self.item
        return (
            self.waiting
            and item is not None
            and item.follow_up_at is not None
            and item.follow_up_at <= now
        )

    @property
    def label(self) -> str:
        return f"Step {self.number} '{self.step.title or self.step.kind.value}'"


@dataclass(frozen=True)
class BundleCard:
    """A bundle and its risk: what is overdue, waiting, due a follow-up, missing proof,
    and which step is due next."""

    bundle: Bundle
    zone: str
    steps: list[StepState]
    now: datetime

    @property
    def overdue(self) -> list[StepState]:
        return [s for s in self.steps if s.overdue(self.now)]

    @property
    def waiting(self) -> list[StepState]:
        return [s for s in self.steps if s.waiting and not s.follow_up_due(self.now)]

    @property
    def follow_ups_due(self) -> list[StepState]:
        return [s for s in self.steps if s.follow_up_due(self.now)]

    @property
    def missing_proof(self) -> list[StepState]:
        return [s for s in self.steps if s.missing_proof is not None]

    @property
    def next_due(self) -> StepState | None:
        open_steps = [s for s in self.steps if not s.settled]
        return min(open_steps, key=lambda s: (s.due_at, s.number), default=None)

    @property
    def done(self) -> int:
        return sum(1 for s in self.steps if s.settled)

    def step(self, number: int) -> StepState:
        for state in self.steps:
            if state.number == number:
                return state
        raise InvalidState(f"Bundle {self.bundle.id} has no step {number}.")


@dataclass(frozen=True)
class BundleBackfill:
    """What a backfill of a window made (or, previewed, would make)."""

    #: The anchor date of each fire day in the window, oldest first.
    anchors: list[date]
    created: int
    #: Anchors that had a bundle already (left alone).
    skipped: int


class BundleService:
    def __init__(
        self,
        store: Stores,
        clock: Clock,
        work_items: WorkItemService,
        *,
        on_change: Callable[[], None] | None = None,
        on_notice: Callable[[int], None] | None = None,
        between_phases: Callable[[Bundle], Awaitable[None]] | None = None,
    ) -> None:
        """`on_change` is the engine's wake (a prompt step's schedule was added);
        `on_notice(chat_id)` is told a notice was queued for the chat (the outbox's
        kick: it goes out now, not at the next sweep); `between_phases` runs after the
        bundle row is written and before its steps: a test's fault hook (a crash
        injected there), None otherwise."""
        self.store = store
        self.clock = clock
        self.work_items = work_items
        self.on_change = on_change or (lambda: None)
        self.on_notice = on_notice or (lambda chat_id: None)
        self._between_phases = between_phases
        # However a step's item is closed, its bundle is done as soon as its last step is.
        work_items.on_step_closed = self._item_closed

    # --- making bundles -------------------------------------------------------------------
    async def create_from_fire(self, schedule: Schedule, fire: datetime, heading: str = "") -> str:
        """The engine's fire of a template: its bundle for the fire's anchor date, made
        once. Returns what the chat is told."""
        bundle, created = await self._make(schedule, fire, heading)
        day = bundle.anchor_date.isoformat()
        if not created:
            return f"The bundle '{bundle.title}' for {day} exists already (/bundle {bundle.id})."
        count = len(bundle.snapshot.steps) if bundle.snapshot else 0
        steps = "step" if count == 1 else "steps"
        return f"New bundle '{bundle.title}' for {day}: {count} {steps} (/bundle {bundle.id})."

    async def _make(self, schedule: Schedule, fire: datetime, heading: str) -> tuple[Bundle, bool]:
        if schedule.action.kind is not ActionKind.BUNDLE:
            raise InvalidState(f"'{schedule.name}' is not a workflow template.")
        now = self.clock.now()
        zone = ZoneInfo(schedule.timezone)
        fire_day = fire.astimezone(zone).date()
        bundle = Bundle(
            id=new_id(),
            chat_id=schedule.chat_id,
            template_id=schedule.id,
            anchor_date=fire_day + timedelta(days=schedule.action.lead_days),
            title=(" ".join(heading.split()) or schedule.name)[:120],
            snapshot=BundleSnapshot(
                timezone=schedule.timezone,
                due_time=_time_of_day(schedule, fire, zone),
                owner=schedule.owner,
                policies=schedule.policies,
                steps=schedule.action.steps,
            ),
            status=BundleStatus.INSTANTIATING,
            created_at=now,
            updated_at=now,
        )
        stored = await self.store.bundles.add_bundle(bundle)
        if stored.id != bundle.id:
            if stored.status is BundleStatus.FAILED:
                # Its steps were never made: made now from the template as it is (the
                # failure notice asks for a fixed template and a fire or /backfill).
                retried = stored.model_copy(
                    update={"snapshot": bundle.snapshot, "title": bundle.title, "updated_at": now}
                )
                if await self.store.bundles.remake_bundle(retried):
                    retried = retried.model_copy(
                        update={"status": BundleStatus.INSTANTIATING, "error": None}
                    )
                    return retried, await self._finish(retried)
                return stored, False
            if stored.status is BundleStatus.INSTANTIATING:
                # A crash left it half made, and no start finished it yet.
                await self._finish(stored)
            return stored, False
        if self._between_phases is not None:
            await self._between_phases(stored)
        await self._finish(stored)
        return stored, True

    async def reconcile(self) -> int:
        """Finish every bundle a stopped process left instantiating (or mark it failed
        and tell its chat); how many were finished. The engine's start-up calls it."""
        finished = 0
        for bundle in await self.store.bundles.instantiating_bundles():
            try:
                made = await self._finish(bundle)
            except Exception:
                # One bundle that cannot be written must not keep the engine from
                # starting; the next start tries it again.
                log.exception(
                    "a half-made bundle could not be finished",
                    extra={"bundle_id": bundle.id, "schedule_id": bundle.template_id},
                )
                continue
            if made:
                finished += 1
                log.warning(
                    "finished a bundle a stopped process left half made",
                    extra={"bundle_id": bundle.id, "schedule_id": bundle.template_id},
                )
        return finished

    async def _finish(self, bundle: Bundle) -> bool:
        """Write the steps of an instantiating bundle and make it active; True if this
        call did (False: someone else did, or it failed and the chat was told)."""
        now = self.clock.now()
        try:
            if bundle.snapshot is None:
                raise InvalidSchedule(bundle.error or "its stored steps cannot be read")
            steps = instantiation(bundle, bundle.snapshot, now)
        except (InvalidSchedule, ValidationError, ValueError) as exc:
            why = str(exc).rstrip(".") if isinstance(exc, TicklerError) else _first(exc)
            template = await self.store.schedules.get(bundle.chat_id, bundle.template_id)
            name = template.name if template is not None else bundle.title
            lead = template.action.lead_days if template is not None else 0
            fire_day = (bundle.anchor_date - timedelta(days=lead)).isoformat()
            ref = template.ref if template is not None else bundle.template_id
            text = (
                f"⚠️ Automation failure: the bundle of template '{name}' for "
                f"{bundle.anchor_date.isoformat()} could not be made ({why}). Its steps "
                f"were not created; check the template, then /backfill {ref} {fire_day} "
                f"{fire_day} makes it again."
            )
            notice = Notification(
                id=new_id(),
                chat_id=bundle.chat_id,
                kind="automation",
                text=text,
                parse_mode=None,
                schedule_id=bundle.template_id,
                created_at=now,
            )
            if await self.store.bundles.fail_bundle(bundle.id, why, notice, now):
                self.on_notice(bundle.chat_id)
            log.error(
                "a bundle could not be made",
                extra={"bundle_id": bundle.id, "schedule_id": bundle.template_id},
            )
            return False
        made = await self.store.bundles.instantiate(bundle.id, steps, now)
        if made and steps.schedules:
            self.on_change()
        return made

    # --- backfill -------------------------------------------------------------------------
    async def backfill(
        self, template: Schedule, start: date, end: date, *, preview: bool = False
    ) -> BundleBackfill:
        """The bundles of the template's fires on the days [start, end] (its zone; past
        days only, today up to now): one per fire day, for that day's anchor date.
        Bundles that exist are skipped, so running it again creates nothing.
        `preview`: count, write nothing."""
        if template.action.kind is not ActionKind.BUNDLE:
            raise InvalidState(f"'{template.name}' is not a workflow template.")
        fires = self._window(template, start, end)
        lead = timedelta(days=template.action.lead_days)
        zone = ZoneInfo(template.timezone)
        anchors = [fire.astimezone(zone).date() + lead for fire in fires]
        if preview:
            existing = await self.store.bundles.bundle_anchors(template.id, anchors)
            return BundleBackfill(anchors, len(anchors) - len(existing), len(existing))
        created = 0
        for fire in fires:
            _, made = await self._make(template, fire, "")
            created += made
        return BundleBackfill(anchors, created, len(fires) - created)

    def _window(self, template: Schedule, start: date, end: date) -> list[datetime]:
        """The first fire of each day in [start, end] up to now."""
        if start > end:
            raise InvalidState("The window must start on or before the day it ends.")
        zone = ZoneInfo(template.timezone)
        now = self.clock.now()
        if end > now.astimezone(zone).date():
            raise InvalidState(
                "Backfill covers past days only; end the window today at the latest."
            )
        if (end - start).days >= MAX_BACKFILL_DAYS:
            raise InvalidState(f"Pick a window of at most {MAX_BACKFILL_DAYS} days.")
        first = datetime.combine(start, time(0), zone).astimezone(UTC)
        after = datetime.combine(end + timedelta(days=1), time(0), zone).astimezone(UTC)
        by_day: dict[date, datetime] = {}
        for fire in template.trigger.fires(first - timedelta(microseconds=1)):
            # Bounded: a trigger firing every minute still ends at the window's end.
            if fire >= after or fire > now:
                break
            by_day.setdefault(fire.astimezone(zone).date(), fire)
        return list(by_day.values())

    # --- the card -------------------------------------------------------------------------
    async def get(self, chat_id: int, bundle_id: str) -> Bundle:
        bundle = await self.store.bundles.get_bundle(chat_id, bundle_id.strip())
        if bundle is None:
            raise BundleNotFound(
                f"No bundle '{shown(bundle_id)}' here; /bundle lists the active ones."
            )
        return bundle

    async def card(self, chat_id: int, bundle_id: str) -> BundleCard:
        """The bundle with each step's state; a bundle whose steps are all done is
        marked done on the way."""
        return await self._card(await self.get(chat_id, bundle_id))

    async def active(self, chat_id: int) -> list[BundleCard]:
        """The chat's active bundles (by anchor date), each with its risk."""
        cards = []
        for bundle in await self.store.bundles.list_bundles(chat_id, [BundleStatus.ACTIVE]):
            card = await self._card(bundle)
            if card.bundle.status is BundleStatus.ACTIVE:
                cards.append(card)
        return cards

    async def _card(self, bundle: Bundle) -> BundleCard:
        now = self.clock.now()
        snapshot = bundle.snapshot
        zone = snapshot.timezone if snapshot is not None else "UTC"
        if snapshot is None:
            return BundleCard(bundle, zone, [], now)
        items = {i.bundle_step: i for i in await self.store.bundles.bundle_items(bundle.id)}
        states: list[StepState] = []
        for number, step in enumerate(snapshot.steps, start=1):
            due = _due(bundle.anchor_date, step, snapshot)
            if step.kind is StepKind.TASK:
                states.append(StepState(number, step, due, item=items.get(number)))
                continue
            sid = step_schedule_id(bundle.id, number)
            runs = await self.store.runs.list_for_chat(bundle.chat_id, schedule_id=sid, limit=1)
            prompt = await self.store.schedules.get(bundle.chat_id, sid)
            states.append(
                StepState(
                    number,
                    step,
                    due,
                    schedule_id=sid,
                    run=runs[0] if runs else None,
                    # Archived before its run ended: it will never run.
                    dropped=prompt is not None
                    and prompt.archived_at is not None
                    and not (runs and runs[0].status in FINAL_STATUSES),
                )
            )
        card = BundleCard(bundle, zone, states, now)
        if (
            bundle.status is BundleStatus.ACTIVE
            and states
            and all(s.settled for s in states)
            and await self.store.bundles.complete_bundle(bundle.id, now)
        ):
            done = bundle.model_copy(
                update={"status": BundleStatus.DONE, "completed_at": now, "updated_at": now}
            )
            card = BundleCard(done, zone, states, now)
        return card

    async def _item_closed(self, item: WorkItem) -> None:
        if item.bundle_id is None:
            return
        bundle = await self.store.bundles.get_bundle(item.chat_id, item.bundle_id)
        if bundle is not None and bundle.status is BundleStatus.ACTIVE:
            await self._card(bundle)

    async def step_finished(self, run: Run, schedule: Schedule) -> None:
        """A prompt step's one-time schedule has nothing left to do once its run ended
        for good: it is archived, so a year of bundles does not fill the chat's
        /schedules and its schedule limit (its run stays in history and on the card),
        and its bundle is done if this was its last open step."""
        if run.status not in FINAL_STATUSES:
            return
        step = step_of(schedule.id)
        if step is None:
            return
        bundle = await self.store.bundles.get_bundle(run.chat_id, step[0])
        if bundle is None:
            return  # an operator's own id with a dot in it
        await self.store.schedules.archive(run.chat_id, schedule.id, now=self.clock.now())
        await self._card(bundle)

    # --- a step's actions (validation is the work-item service's) --------------------------
    async def _task(self, chat_id: int, bundle_id: str, number: int) -> WorkItem:
        card = await self.card(chat_id, bundle_id)
        state = card.step(number)
        if not state.is_task:
            raise InvalidState(f"{state.label} is an agent prompt; it runs by itself at its time.")
        if state.item is None:
            raise InvalidState(f"{state.label} is not made yet; try again in a moment.")
        return state.item

    async def complete_step(
        self, chat_id: int, bundle_id: str, number: int, *, actor: str, proof: str | None = None
    ) -> BundleCard:
        """Complete a task step; refused (one sentence) while its required proof is
        missing."""
        item = await self._task(chat_id, bundle_id, number)
        await self.work_items.done(item, proof, actor=actor)
        return await self.card(chat_id, bundle_id)

    async def wait_step(
        self, chat_id: int, bundle_id: str, number: int, *, actor: str
    ) -> BundleCard:
        """Park a task step: waiting for its assignee (or a reply), follow up in 3 days."""
        item = await self._task(chat_id, bundle_id, number)
        await self.work_items.mark_waiting(
            item,
            item.assignee or "a reply",
            self.clock.now() + FOLLOW_UP_AFTER,
            "marked waiting from the bundle card",
            actor=actor,
        )
        return await self.card(chat_id, bundle_id)

    async def follow_up_sent(
        self, chat_id: int, bundle_id: str, number: int, *, actor: str
    ) -> BundleCard:
        """A follow-up went out: the step keeps waiting, the next one in 3 days."""
        item = await self._task(chat_id, bundle_id, number)
        await self.work_items.followup_sent(
            item, self.clock.now() + FOLLOW_UP_AFTER, actor=actor, note="follow-up sent"
        )
        return await self.card(chat_id, bundle_id)


def instantiation(bundle: Bundle, snapshot: BundleSnapshot, now: datetime) -> Instantiation:
    """The steps of `bundle`, made from its snapshot alone: task steps as work items,
    prompt steps as one-time agent schedules (one due while Tickler was down still runs,
    once; one already past when the bundle was made is recorded as missed)."""
    items: list[tuple[WorkItem, HistoryEntry]] = []
    made: list[Schedule] = []
    zone = snapshot.timezone
    for number, step in enumerate(snapshot.steps, start=1):
        due = _due(bundle.anchor_date, step, snapshot)
        if step.kind is StepKind.TASK:
            item = WorkItem(
                id=new_id(),
                chat_id=bundle.chat_id,
                title=step.title,
                instructions=step.instructions,
                due_at=due,
                assignee=step.assignee,
                schedule_id=bundle.template_id,
                proof=None if step.proof is None else Proof(step.proof),
                created_at=now,
                updated_at=now,
                bundle_id=bundle.id,
                bundle_step=number,
            )
            entry = HistoryEntry(
                item_id=item.id, at=now, actor=f"bundle {bundle.id}", action="created"
            )
            items.append((item, entry))
            continue
        name = f"{bundle.title[:40]} · {step.title or f'step {number}'}"[:80]
        made.append(
            Schedule(
                id=step_schedule_id(bundle.id, number),
                chat_id=bundle.chat_id,
                name=name,
                description=(
                    f"Step {number} of bundle {bundle.id} ({bundle.anchor_date.isoformat()})"
                ),
                trigger=OnceTrigger(at=due, timezone=zone),
                action=Action(kind=ActionKind.AGENT, text=step.text),
                # Due after its bundle was made: sent once even if Tickler was down at
                # that instant. Due before (a backfilled bundle, a step set before the
                # fire day): recorded as missed, not sent days late.
                policies=snapshot.policies.model_copy(
                    update={
                        "missed_run": MissedRunPolicy.CATCH_UP_ONCE
                        if due >= bundle.created_at
                        else MissedRunPolicy.SKIP
                    }
                ),
                owner=snapshot.owner,
                next_run_at=due,
                # Never CONFIG: schedules.yaml would pause it as "removed from the file".
                created_by=CreatedBy.OPERATOR,
                created_at=now,
                updated_at=now,
            )
        )
    return Instantiation(items=tuple(items), schedules=tuple(made))


def _due(anchor: date, step: Step, snapshot: BundleSnapshot) -> datetime:
    day = anchor + timedelta(days=step.offset_days)
    return datetime.combine(day, snapshot.due_time, ZoneInfo(snapshot.timezone)).astimezone(UTC)


def _time_of_day(schedule: Schedule, fire: datetime, zone: ZoneInfo) -> time:
    """The template's time of day on the fire's day (its first scheduled fire that day),
    so a run by hand at 15:37 makes steps due at the template's 09:00, not 15:37."""
    local = fire.astimezone(zone)
    midnight = datetime.combine(local.date(), time(0), zone).astimezone(UTC)
    first = schedule.trigger.next_after(midnight - timedelta(microseconds=1))
    if first is not None and first.astimezone(zone).date() == local.date():
        return first.astimezone(zone).time().replace(tzinfo=None)
    return local.time().replace(tzinfo=None, microsecond=0)


def _first(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return str(first["msg"]).rstrip(".")
    return str(exc).rstrip(".")
