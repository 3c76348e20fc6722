"""The expiry sweep for the agent's proposals: a small loop beside the engine (the
scheduler must not know the bot), started in post_init and cancelled in post_stop.

It sleeps on the injected clock until the earliest pending expiry (at most
`MAX_SLEEP`, so a proposal made meanwhile is noticed), expires what is due and tells
each chat. With the FakeClock in tests, advancing the clock wakes it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from bot.notifier import TelegramNotifier
from scheduler.clock import Clock
from scheduler.proposals import ProposalService

__all__ = ["MAX_SLEEP", "expire_proposals_forever"]

log = logging.getLogger("tickler.proposals")

MAX_SLEEP = timedelta(minutes=10)
#: After a failed sweep (a locked database), wait this long before the next.
_BACKOFF = timedelta(seconds=30)


async def expire_proposals_forever(
    proposals: ProposalService, notifier: TelegramNotifier, clock: Clock
) -> None:
    """Until cancelled."""
    never = asyncio.Event()
    while True:
        now = clock.now()
        deadline = now + MAX_SLEEP
        try:
            for proposal in await proposals.expire_due(now):
                log.info("proposal %s of chat %s expired", proposal.id, proposal.chat_id)
                try:
                    await notifier.proposal_expired(proposal)
                except Exception:
                    log.exception("telling chat %s of an expiry failed", proposal.chat_id)
            upcoming = await proposals.next_expiry()
            if upcoming is not None and upcoming > now:
                deadline = min(deadline, upcoming)
        except Exception:
            log.exception("expiring proposals failed")
            deadline = now + _BACKOFF
        await clock.sleep_until(deadline, never)
