"""The expiry sweep for the agent's proposals: a small loop beside the engine (the
scheduler must not know the bot), started by `start_services` and cancelled by `stop_services`.

It wakes at the earliest pending expiry (see bot/sweeps.py), expires what is due and
tells each chat.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bot.notifier import TelegramNotifier
from bot.sweeps import sweep_forever
from scheduler.clock import Clock
from scheduler.proposals import ProposalService

__all__ = ["expire_proposals_forever"]

log = logging.getLogger("tickler.proposals")


async def expire_proposals_forever(
    proposals: ProposalService, notifier: TelegramNotifier, clock: Clock
) -> None:
    """Until cancelled."""

    async def sweep(now: datetime) -> datetime | None:
        for proposal in await proposals.expire_due(now):
            ids = {"proposal_id": proposal.id, "chat_id": proposal.chat_id}
            log.info("proposal expired", extra=ids)
            try:
                await notifier.proposal_expired(proposal)
            except Exception:
                log.exception("telling the chat of an expiry failed", extra=ids)
        return await proposals.next_expiry()

    await sweep_forever(sweep, clock, what="expiring proposals")
