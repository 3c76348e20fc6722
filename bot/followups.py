"""The follow-up sweep: a small loop beside the engine (like bot/proposal_expiry.py).

It sleeps on the injected clock until the earliest follow-up date not yet announced (at
most `MAX_SLEEP`), then pings each item's chat once. `pinged_at` is claimed before the
message is sent, so a restart never pings twice, and given back when Telegram could not
take the message, so a short outage delays the ping instead of losing it (a crash in
between loses one ping; the item still shows under "Follow-ups due" in /today). A chat
that blocked the bot keeps its claim: there is no one to tell until they return.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from bot.notifier import TelegramNotifier
from bot.render import esc
from scheduler.clock import Clock
from scheduler.work_items import WorkItemService

__all__ = ["MAX_SLEEP", "ping_followups_forever"]

log = logging.getLogger("tickler.followups")

MAX_SLEEP = timedelta(minutes=10)
_BACKOFF = timedelta(seconds=30)


async def ping_followups_forever(
    items: WorkItemService, notifier: TelegramNotifier, clock: Clock
) -> None:
    """Until cancelled."""
    never = asyncio.Event()
    while True:
        now = clock.now()
        deadline = now + MAX_SLEEP
        try:
            for item in await items.due_followups(now):
                if not await items.mark_pinged(item, now):
                    continue
                text = (
                    f"⏰ Follow-up due: {esc(item.title)}"
                    f" (waiting for {esc(item.waiting_for or '?')}).\n"
                    f"/followup {item.id} sent 3d or /followup {item.id} received"
                )
                delivered = False
                try:
                    delivered = await notifier.send(item.chat_id, text)
                except Exception:
                    log.exception("pinging chat %s about %s failed", item.chat_id, item.id)
                if (
                    not delivered
                    and (await notifier.store.get_chat(item.chat_id)).blocked_at is None
                ):
                    await items.unmark_pinged(item, now)
                    deadline = min(deadline, now + _BACKOFF)
            upcoming = await items.next_followup()
            if upcoming is not None and upcoming > now:
                deadline = min(deadline, upcoming)
        except Exception:
            log.exception("follow-up sweep failed")
            deadline = now + _BACKOFF
        await clock.sleep_until(deadline, never)
