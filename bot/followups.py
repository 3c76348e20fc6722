"""The follow-up sweep (see bot/sweeps.py): it wakes at the earliest follow-up date not
yet announced and pings each item's chat once. `pinged_at` is claimed before the message
is queued in the outbox (bot/outbox.py), so a restart never pings twice; once queued the
ping waits out a Telegram outage or a restart there. A ping that could not be queued
(the database refused the write) is given back, so the sweep tries again; a crash
between the claim and the queueing loses one ping (the item still shows under
"Follow-ups due" in /today). A chat that blocked the bot gets the ping recorded as
blocked: there is no one to tell until they return.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bot.notifier import TelegramNotifier
from bot.render import esc
from bot.sweeps import BACKOFF, sweep_forever
from scheduler.clock import Clock
from scheduler.work_items import WorkItemService

__all__ = ["ping_followups_forever"]

log = logging.getLogger("tickler.followups")


async def ping_followups_forever(
    items: WorkItemService, notifier: TelegramNotifier, clock: Clock
) -> None:
    """Until cancelled."""

    async def sweep(now: datetime) -> datetime | None:
        retry: datetime | None = None
        for item in await items.due_followups(now):
            if not await items.mark_pinged(item, now):
                continue
            text = (
                f"⏰ Follow-up due: {esc(item.title)}"
                f" (waiting for {esc(item.waiting_for or '?')}).\n"
                f"/followup {item.id} sent 3d or /followup {item.id} received"
            )
            try:
                await notifier.notify(item.chat_id, text, kind="followup", item_id=item.id)
            except Exception:
                log.exception(
                    "pinging about a follow-up failed",
                    extra={"chat_id": item.chat_id, "item_id": item.id},
                )
                await items.unmark_pinged(item, now)
                retry = now + BACKOFF
        upcoming = await items.next_followup()
        if upcoming is not None and upcoming > now:
            return min(upcoming, retry) if retry else upcoming
        return retry

    await sweep_forever(sweep, clock, what="follow-up sweep")
