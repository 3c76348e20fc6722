"""Schedules the agent proposes, and the operator's answer (SPEC "Proposals and approvals").

The agent proposes through the HTTP API or a tool call; `ProposalService.propose` runs
the policy (scheduler/risk.py) and acts on the tier:

    low     the schedule is created active at once; the chat is told, with [Undo]
            (undo archives it)
    medium  the schedule is created paused ("awaiting approval"); [Approve] resumes
            it, [Reject] archives it
    high    nothing is created until [Approve]; [Reject] or `expiry` (72 h) ends it

A proposal beyond the chat's limits is refused, whatever its tier: `propose` records
the refusal and raises InvalidSchedule with the reason. A proposal is stored with the
schedule it creates in one transaction (`ProposalRepository.add`), and an approval with the
schedule it creates or resumes (`ProposalRepository.decide`): a failure leaves neither.
Every decision is a guarded transition of the stored proposal, so a button pressed
twice, or after expiry, is answered with what the proposal already is and applied
once. Who may decide is the caller's business (the bot lets only admins).

    pending ──approve──▶ active ──undo──▶ undone
       │  ╲──reject──▶ rejected
       ╰────expire──▶ expired          (refused: never pending)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from scheduler.clock import Clock
from scheduler.errors import (
    AdminOnly,
    InvalidSchedule,
    InvalidState,
    ProposalNotFound,
    ScheduleNotFound,
    shown,
)
from scheduler.ids import new_id
from scheduler.models import (
    CreatedBy,
    Owner,
    Policies,
    RiskTier,
    Run,
    RunStatus,
    Schedule,
)
from scheduler.proposal_model import Proposal, ProposalRequest, ProposalStatus
from scheduler.risk import RiskDecision, classify
from scheduler.service import ScheduleService
from scheduler.specs import TriggerSpec
from scheduler.stores import Stores
from scheduler.triggers import Trigger

__all__ = [
    "Proposal",
    "ProposalRequest",
    "ProposalService",
    "ProposalStatus",
]

log = logging.getLogger("tickler.proposals")

#: How a decided proposal is named in "That proposal is already ...".
_DONE_WORDS = {
    ProposalStatus.ACTIVE: "approved",
    ProposalStatus.REJECTED: "rejected",
    ProposalStatus.EXPIRED: "expired",
    ProposalStatus.UNDONE: "undone",
    ProposalStatus.REFUSED: "refused",
}


OnProposal = Callable[[Proposal, RiskDecision], Awaitable[None]]


class ProposalService:
    def __init__(
        self,
        schedules: ScheduleService,
        store: Stores,
        clock: Clock,
        *,
        on_proposal: OnProposal | None = None,
        expiry: timedelta = timedelta(hours=72),
        owner_name: str = "Agent",
        admins: Collection[int] | None = None,
    ) -> None:
        self.schedules = schedules
        #: Who may decide a proposal (None: anyone who reaches the service may).
        self._admins = None if admins is None else frozenset(admins)
        self.store = store
        self.clock = clock
        self.expiry = expiry
        self.owner_name = owner_name
        self._on_proposal = on_proposal
        #: One proposal at a time, so two identical ones sent together are not both added.
        self._proposing = asyncio.Lock()

    # --- proposing -------------------------------------------------------------------------
    async def propose(
        self, chat_id: int, request: ProposalRequest, *, proposed_by: str
    ) -> Proposal:
        """Classify and act on the tier; refused (InvalidSchedule, its sentence the
        reason, recorded as a refused proposal) when beyond the chat's limits or invalid;
        InvalidState naming the original (and nothing recorded) when it repeats a schedule
        of the chat or a proposal waiting there."""
        async with self._proposing:
            return await self._propose(chat_id, request, proposed_by=proposed_by)

    async def _propose(
        self, chat_id: int, request: ProposalRequest, *, proposed_by: str
    ) -> Proposal:
        now = self.clock.now()
        request = await self._complete(chat_id, request, now)
        repeated = await self._repeats(chat_id, request, now)
        if repeated is not None:
            raise InvalidState(repeated)
        active = await self.store.schedules.count_active(chat_id)
        decision = classify(
            request,
            now=now,
            limits=self.schedules.limits,
            active_count=active,
            timezone=request.trigger.timezone or "UTC",
        )
        proposal = Proposal(
            id=new_id(),
            chat_id=chat_id,
            request=request,
            tier=decision.tier,
            status=ProposalStatus.PENDING,
            proposed_by=proposed_by,
            created_at=now,
        )
        refusal, field = decision.refusal, decision.refusal_field
        if refusal is None:
            try:
                self.schedules.validate(
                    name=request.name, trigger=request.trigger, action=request.action
                )
            except InvalidSchedule as exc:
                refusal, field = str(exc), exc.field
        schedule = None
        if refusal is None and decision.tier is not RiskTier.HIGH:
            low = decision.tier is RiskTier.LOW
            try:
                schedule = await self._schedule(proposal, awaiting_approval=not low)
            except InvalidSchedule as exc:
                refusal, field = str(exc), exc.field
            else:
                changes: dict[str, Any] = {"schedule_id": schedule.id}
                if low:
                    changes.update(status=ProposalStatus.ACTIVE, decided_at=now)
                proposal = proposal.model_copy(update=changes)
        elif refusal is None:
            proposal = proposal.model_copy(update={"expires_at": now + self.expiry})
        if refusal is not None:
            schedule = None
            proposal = proposal.model_copy(
                update={"status": ProposalStatus.REFUSED, "refusal": refusal, "decided_at": now}
            )
        # One transaction: a proposal never points at a schedule that is not there, and
        # no paused schedule is left without the proposal that can resume it.
        await self.store.proposals.add(proposal, schedule)
        if schedule is not None:
            self.schedules.changed()
        if refusal is not None:
            log.info(
                "proposal refused",
                extra={"proposal_id": proposal.id, "chat_id": chat_id, "reason": refusal},
            )
            raise InvalidSchedule(refusal, field=field)
        if self._on_proposal is not None:
            try:
                await self._on_proposal(proposal, decision)
            except Exception:
                # Telling the chat is a courtesy; the proposal stands either way.
                log.exception(
                    "announcing the proposal failed",
                    extra={"proposal_id": proposal.id, "chat_id": chat_id},
                )
        return proposal

    async def _repeats(self, chat_id: int, request: ProposalRequest, now: datetime) -> str | None:
        """Why `request` is a repeat of a schedule of the chat (paused ones included) or
        of a proposal still waiting there: the same trigger and the same action; None
        when it is new (or invalid: refused later, with its reason)."""
        wanted = self._trigger_key(request.trigger, now)
        if wanted is None:
            return None
        for schedule in await self.schedules.list_schedules(chat_id):
            if schedule.action == request.action and _key(schedule.trigger) == wanted:
                return (
                    f"It matches the existing schedule '{shown(schedule.name)}' "
                    f"({schedule.id}), so it was not added again."
                )
        waiting = await self.list_for_chat(chat_id, statuses=[ProposalStatus.PENDING], limit=100)
        for proposal in waiting:
            same_action = proposal.request.action == request.action
            if same_action and self._trigger_key(proposal.request.trigger, now) == wanted:
                return (
                    f"It matches the proposal '{shown(proposal.name)}' ({proposal.id}) that "
                    "is waiting for approval, so it was not added again."
                )
        return None

    def _trigger_key(self, spec: TriggerSpec, now: datetime) -> dict[str, Any] | None:
        try:
            return _key(self.schedules.build_trigger(spec, now))
        except InvalidSchedule:
            return None

    async def _complete(
        self, chat_id: int, request: ProposalRequest, now: datetime
    ) -> ProposalRequest:
        """The request made self-contained: the chat's zone when it names none, and an
        interval's start fixed at the moment of proposing, so what the operator is
        shown is what an approval later creates."""
        spec = request.trigger
        changes: dict[str, Any] = {}
        if spec.timezone is None:
            changes["timezone"] = await self.schedules.chat_timezone(chat_id)
        if spec.kind == "interval" and spec.start_at is None:
            changes["start_at"] = now
        if not changes:
            return request
        return request.model_copy(update={"trigger": spec.model_copy(update=changes)})

    async def _schedule(self, proposal: Proposal, *, awaiting_approval: bool) -> Schedule:
        """The schedule the proposal asks for, validated, not yet stored."""
        request = proposal.request
        policies = (request.policies or Policies()).model_copy(update={"risk_tier": proposal.tier})
        return await self.schedules.new_schedule(
            proposal.chat_id,
            Owner(id=proposal.chat_id, first_name=self.owner_name),
            name=request.name,
            trigger=request.trigger,
            action=request.action,
            policies=policies,
            description=request.reason,
            created_by=CreatedBy.AGENT,
            awaiting_approval=awaiting_approval,
        )

    # --- deciding ---------------------------------------------------------------------------
    async def get(self, chat_id: int, proposal_id: str) -> Proposal:
        proposal = await self.store.proposals.get(chat_id, proposal_id)
        if proposal is None:
            raise ProposalNotFound("That proposal does not exist here.")
        return proposal

    async def list_for_chat(
        self, chat_id: int, *, statuses: list[ProposalStatus] | None = None, limit: int = 20
    ) -> list[Proposal]:
        """The chat's proposals, newest first."""
        return await self.store.proposals.list_for_chat(chat_id, statuses=statuses, limit=limit)

    async def assess(self, proposal: Proposal) -> RiskDecision:
        """The policy's reading of `proposal` as of now (how often it runs, why its
        tier), for showing it again after it was announced; its tier stays the stored
        one."""
        active = await self.store.schedules.count_active(proposal.chat_id)
        return classify(
            proposal.request,
            now=self.clock.now(),
            limits=self.schedules.limits,
            active_count=active,
            timezone=proposal.request.trigger.timezone or "UTC",
        )

    async def awaiting_approval(self, chat_id: int) -> tuple[list[Proposal], list[Run]]:
        """What waits for an answer in this chat: pending proposals, then runs of
        schedules with per-run approval, oldest first."""
        pending = await self.list_for_chat(chat_id, statuses=[ProposalStatus.PENDING], limit=50)
        runs = await self.store.runs.list_for_chat(
            chat_id, statuses=[RunStatus.AWAITING_APPROVAL], limit=50
        )
        return pending[::-1], runs[::-1]

    def _check_admin(self, by: int, verb: str) -> None:
        if self._admins is not None and by not in self._admins:
            raise AdminOnly(f"Only an admin can {verb} a proposal.")

    async def approve(self, chat_id: int, proposal_id: str, *, by: int) -> Proposal:
        """Activate a pending proposal: resume its paused schedule (medium) or create it
        (high), in the same transaction as the decision, so a failure leaves it pending
        and a second press applies nothing. InvalidState when it was decided already or
        has expired; InvalidSchedule (and the proposal is refused) when it can no longer
        be created."""
        self._check_admin(by, "approve")
        current = await self._pending(chat_id, proposal_id)
        now = self.clock.now()
        decision: dict[str, Any] = {
            "status": ProposalStatus.ACTIVE,
            "decided_by": by,
            "decided_at": now,
        }
        try:
            if current.schedule_id is None:
                schedule = await self._schedule(current, awaiting_approval=False)
                approved = await self.store.proposals.decide(
                    chat_id,
                    proposal_id,
                    expected=[ProposalStatus.PENDING],
                    changes={**decision, "schedule_id": schedule.id},
                    add_schedule=schedule,
                )
            else:
                approved = await self.store.proposals.decide(
                    chat_id,
                    proposal_id,
                    expected=[ProposalStatus.PENDING],
                    changes=decision,
                    change_schedule=self.schedules.approval_change(now),
                )
        except (InvalidSchedule, ScheduleNotFound) as exc:
            # Limits reached or the moment passed since it was proposed, or the paused
            # schedule was deleted meanwhile: nothing runs, and the proposal says why.
            reason = (
                str(exc)
                if isinstance(exc, InvalidSchedule)
                else "Its schedule was deleted meanwhile."
            )
            refused = await self.store.proposals.transition(
                chat_id,
                proposal_id,
                expected=[ProposalStatus.PENDING],
                changes={
                    "status": ProposalStatus.REFUSED,
                    "refusal": reason,
                    "decided_by": by,
                    "decided_at": now,
                },
            )
            if refused is None:  # decided by someone else a moment ago
                raise _already((await self.get(chat_id, proposal_id)).status) from exc
            raise InvalidSchedule(f"It cannot be activated: {reason}") from exc
        if approved is None:  # decided by someone else a moment ago
            raise _already((await self.get(chat_id, proposal_id)).status)
        self.schedules.changed()
        return approved

    async def reject(self, chat_id: int, proposal_id: str, *, by: int) -> Proposal:
        """Turn a pending proposal down; a medium one's paused schedule is archived."""
        self._check_admin(by, "reject")
        current = await self._pending(chat_id, proposal_id)
        now = self.clock.now()
        return await self._decide(
            current, ProposalStatus.REJECTED, {"decided_by": by, "decided_at": now}, archive_at=now
        )

    async def undo(self, chat_id: int, proposal_id: str, *, by: int) -> Proposal:
        """Take back an active proposal: its schedule is archived (history kept)."""
        self._check_admin(by, "undo")
        current = await self.get(chat_id, proposal_id)
        if current.status is ProposalStatus.PENDING:
            raise InvalidState("That proposal is still waiting for approval; reject it instead.")
        now = self.clock.now()
        return await self._decide(
            current,
            ProposalStatus.UNDONE,
            {"decided_by": by, "decided_at": now},
            expected=ProposalStatus.ACTIVE,
            archive_at=now,
        )

    async def expire_due(self, now: datetime) -> list[Proposal]:
        """Expire every pending proposal whose time is up (all chats); the ones this
        call expired, for the bot to tell their chats."""
        expired: list[Proposal] = []
        for proposal in await self.store.proposals.expired(now):
            done = await self.store.proposals.decide(
                proposal.chat_id,
                proposal.id,
                expected=[ProposalStatus.PENDING],
                changes={"status": ProposalStatus.EXPIRED, "decided_at": now},
                archive_at=now,
            )
            if done is not None:
                expired.append(done)
        if expired:
            self.schedules.changed()
        return expired

    async def next_expiry(self) -> datetime | None:
        """When the earliest pending proposal expires, if any does."""
        return await self.store.proposals.next_expiry()

    # --- helpers --------------------------------------------------------------------------
    async def _pending(self, chat_id: int, proposal_id: str) -> Proposal:
        current = await self.get(chat_id, proposal_id)
        now = self.clock.now()
        if (
            current.status is ProposalStatus.PENDING
            and current.expires_at is not None
            and current.expires_at <= now
        ):
            # Its time is up even if the expiry sweep has not come round yet.
            await self.store.proposals.transition(
                chat_id,
                proposal_id,
                expected=[ProposalStatus.PENDING],
                changes={"status": ProposalStatus.EXPIRED, "decided_at": current.expires_at},
            )
            raise _already(ProposalStatus.EXPIRED)
        if current.status is not ProposalStatus.PENDING:
            raise _already(current.status)
        return current

    async def _decide(
        self,
        current: Proposal,
        status: ProposalStatus,
        changes: dict[str, Any],
        *,
        expected: ProposalStatus = ProposalStatus.PENDING,
        archive_at: datetime | None = None,
    ) -> Proposal:
        """The decision, with its schedule archived at `archive_at` in the same
        transaction (a pending proposal has none, or a paused one)."""
        if current.status is not expected:
            raise _already(current.status)
        done = await self.store.proposals.decide(
            current.chat_id,
            current.id,
            expected=[expected],
            changes={"status": status, **changes},
            archive_at=archive_at,
        )
        if done is None:  # decided by someone else a moment ago
            latest = await self.get(current.chat_id, current.id)
            raise _already(latest.status)
        if archive_at is not None and done.schedule_id is not None:
            self.schedules.changed()
        return done


def _key(trigger: Trigger) -> dict[str, Any]:
    """What makes two triggers the same schedule: an interval's start is left out, as a
    proposal without one starts whenever it is made."""
    return trigger.model_dump(mode="json", exclude={"start_at"})


def _already(status: ProposalStatus) -> InvalidState:
    word = _DONE_WORDS.get(status)
    if word is None:
        return InvalidState("That proposal is still waiting for approval.")
    return InvalidState(f"That proposal is already {word}.")
