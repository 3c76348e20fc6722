"""The Mini App's proposals page: the agent's proposals waiting for an admin, each with
the facts its card in the chat shows (bot/views_proposals.py), Approve and Reject; and
the recently decided ones (an active one with Undo). Deciding is an admin's, as in the
chat, and goes through ProposalService as the card's buttons do."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.render import local
from bot.views_proposals import ProposalFacts, proposal_facts, proposal_zone
from bot.webapp.pages import Done, Handler, Page, PageRequest, Route
from scheduler.errors import InvalidSchedule, InvalidState
from scheduler.proposals import Proposal, ProposalService, ProposalStatus

__all__ = ["ROUTES"]

log = logging.getLogger("tickler.webapp")

#: Decided proposals the page lists, newest first.
DECIDED_SHOWN = 10
_DECIDED: list[ProposalStatus] = [s for s in ProposalStatus if s is not ProposalStatus.PENDING]


@dataclass(frozen=True)
class PendingRow:
    id: str
    name: str
    tier: str
    #: None when its facts cannot be worked out (the chat then shows a short card too).
    facts: ProposalFacts | None
    proposed: str
    expires: str


@dataclass(frozen=True)
class DecidedRow:
    id: str
    name: str
    tier: str
    status: str
    decided: str
    by: str
    refusal: str
    schedule_id: str
    active: bool


def _service(request: PageRequest) -> ProposalService:
    proposals = request.svc.proposals
    if proposals is None:
        raise InvalidState("Approvals are not running yet; try again in a moment.")
    return proposals


async def _pending(service: ProposalService, proposal: Proposal, now_zone: str) -> PendingRow:
    facts: ProposalFacts | None
    try:
        decision = await service.assess(proposal)
        facts = proposal_facts(proposal, decision, now=service.clock.now())
    except Exception:
        log.exception("could not show a proposal's facts", extra={"proposal_id": proposal.id})
        facts = None
    return PendingRow(
        id=proposal.id,
        name=proposal.name,
        tier=proposal.tier.value,
        facts=facts,
        proposed=f"{local(proposal.created_at, now_zone)} by {proposal.proposed_by}",
        expires=local(proposal.expires_at, now_zone) if proposal.expires_at else "",
    )


def _decided(proposal: Proposal, request: PageRequest) -> DecidedRow:
    zone = proposal_zone(proposal)
    by = ""
    if proposal.decided_by is not None:
        viewer = request.viewer
        by = viewer.first_name if proposal.decided_by == viewer.user_id else "an admin"
    return DecidedRow(
        id=proposal.id,
        name=proposal.name,
        tier=proposal.tier.value,
        status=proposal.status.value,
        decided=local(proposal.decided_at, zone) if proposal.decided_at else "",
        by=by,
        refusal=proposal.refusal or "",
        schedule_id=proposal.schedule_id or "",
        active=proposal.status is ProposalStatus.ACTIVE,
    )


async def list_page(request: PageRequest) -> Page:
    service = _service(request)
    chat = request.viewer.chat_id
    pending, _ = await service.awaiting_approval(chat)
    decided = await service.list_for_chat(chat, statuses=_DECIDED, limit=DECIDED_SHOWN)
    return Page(
        "proposals.html",
        {
            "pending": [await _pending(service, p, proposal_zone(p)) for p in pending],
            "decided": [_decided(p, request) for p in decided],
            "admin": request.viewer.admin,
        },
    )


def decide(action: str, then: str) -> Handler:
    """As the card's Approve / Reject / Undo (ProposalService decides who may), then the
    page `then`."""

    async def answer(request: PageRequest) -> Done:
        service = _service(request)
        act = {"approve": service.approve, "reject": service.reject, "undo": service.undo}[action]
        try:
            proposal = await act(
                request.viewer.chat_id, request.params["proposal_id"], by=request.viewer.user_id
            )
        except InvalidSchedule as exc:
            # Approved, but it can no longer be created: refused, as in the chat.
            return Done(f"Could not activate it: {exc}", then)
        return Done(_DONE[action].format(name=proposal.name), then)

    return answer


_DONE = {
    "approve": "Approved; '{name}' is active.",
    "reject": "Rejected '{name}'; nothing will run.",
    "undo": "Undone; '{name}' is archived (its history is kept).",
}


ROUTES: tuple[Route, ...] = (
    Route("GET", "/proposals", list_page),
    *(
        Route("POST", f"/proposals/{{proposal_id}}/{action}", decide(action, "/proposals"))
        for action in _DONE
    ),
)
