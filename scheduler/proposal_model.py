"""The data of an agent's proposal: what it asks for, and the stored proposal with its
trail. Pure data, so storage and the store protocol can read it without importing the
proposal service (scheduler/proposals.py), which acts on it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from scheduler.models import Action, Policies, RiskTier
from scheduler.specs import TriggerSpec

__all__ = ["Proposal", "ProposalRequest", "ProposalStatus"]


class ProposalRequest(BaseModel):
    """What the agent asks for: a schedule definition, why, and its own risk estimate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    trigger: TriggerSpec
    action: Action
    policies: Policies | None = None
    reason: str = ""
    risk_hint: RiskTier | None = None
    #: The agent's estimate of the tokens one run uses, shown on the proposal's card
    #: with the week's (scheduler/budgets.py); None when it gave none.
    expected_tokens_per_run: int | None = Field(default=None, ge=0, le=10_000_000)

    @field_validator("trigger")
    @classmethod
    def _trimmed_zone(cls, trigger: TriggerSpec) -> TriggerSpec:
        # "Europe/Berlin " names a zone, but the proposal keeps the request as sent and
        # its announcement reads the zone from it: keep the name a zone can be built from.
        zone = trigger.timezone
        if zone is not None and zone != zone.strip():
            return trigger.model_copy(update={"timezone": zone.strip()})
        return trigger


class ProposalStatus(StrEnum):
    PENDING = "pending"  # waiting for an admin's Approve or Reject
    ACTIVE = "active"  # its schedule exists and fires (approved, or low tier)
    REJECTED = "rejected"
    EXPIRED = "expired"  # nobody answered in time
    UNDONE = "undone"  # activated, then undone; its schedule is archived
    REFUSED = "refused"  # beyond the chat's limits or invalid; nothing was created


class Proposal(BaseModel):
    """One proposal and its trail: who proposed it and when, who decided and when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    chat_id: int
    request: ProposalRequest
    tier: RiskTier
    status: ProposalStatus
    #: The schedule it created (low, medium, an approved high one), else None.
    schedule_id: str | None = None
    #: Who proposed it: "api", "agent:chat" (a tool call), ...
    proposed_by: str
    #: The Telegram user who approved, rejected or undid it; None for the policy's own
    #: decisions (low tier activated, expired, refused).
    decided_by: int | None = None
    decided_at: datetime | None = None
    #: High tier only: unanswered by then, it expires.
    expires_at: datetime | None = None
    created_at: datetime
    refusal: str | None = None

    @property
    def name(self) -> str:
        return self.request.name
