"""Who talks to Telegram. Every replica runs the engine, the HTTP port and the handlers;
only one polls Telegram for updates (two pollers take each other's updates: Telegram
answers the second getUpdates with 409) and sends the outbox (one courier per chat keeps
a chat's messages in order).

On SQLite that is the one process there is. On PostgreSQL it is the replica holding the
Telegram lease (storage/leadership.py, an advisory lock on a connection of its own):
the others try to take it every LEADER_RETRY_SECONDS and take over once the holder's
connection ends (it stopped, crashed or lost the network); the holder confirms it at the
same pace, and stops polling and sending as soon as it is lost. In webhook mode every
replica serves the webhook (they sit behind one proxy) and the lease decides only who
sends. Messages the other replicas' engines queue are written to the shared outbox and
the holder is told at once (NOTIFY), and looks by itself at every confirmation too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from telegram.error import TelegramError
from telegram.ext import Updater

from bot.outbox import Outbox, deliver_pending_forever
from scheduler.clock import Clock
from storage.leadership import Lease

__all__ = ["TelegramSide"]

log = logging.getLogger("tickler.bot")


class TelegramSide:
    def __init__(
        self,
        lease: Lease,
        outbox: Outbox,
        clock: Clock,
        updater: Updater | None,
        *,
        check_every: float,
        database: str,
    ) -> None:
        self.lease = lease
        self.outbox = outbox
        self.clock = clock
        self.updater = updater
        self.check_every = check_every
        #: The database as logs may show it (no password).
        self.database = database
        #: `poll`'s options once asked to poll (never in webhook mode).
        self._polling: dict[str, Any] | None = None
        self._leading = False
        self._loop: asyncio.Task[None] | None = None
        self._delivery: asyncio.Task[None] | None = None
        #: Set when the lease's connection ends: the loop reacts at once.
        self._lost = asyncio.Event()
        #: Set when another replica queued messages: the delivery sweep looks now.
        self._queued_elsewhere = asyncio.Event()
        lease.on_lost = self._lost.set
        lease.on_notice = self._queued_elsewhere.set
        outbox.tell_sender = lease.notify

    @property
    def leading(self) -> bool:
        """This replica polls (when asked to) and sends the outbox."""
        return self._leading

    async def start(self) -> None:
        """The first attempt, at once: before the engine starts, so that a replica that
        does not lead never sends what its engine queues. Then, with replicas, keep
        trying (or confirming) in the background."""
        if await self.lease.try_acquire():
            await self._take_over()
        else:
            await self.outbox.stand_by()
            log.info(
                "another replica talks to Telegram; this one takes over if it stops",
                extra={"database": self.database, "retry_s": self.check_every},
            )
        if self.lease.shared:
            self._loop = asyncio.create_task(self._run(), name="telegram-lease")

    async def poll(self, **options: Any) -> None:
        """Take updates by long polling (with the Updater's `options`) whenever this
        replica leads, from now on."""
        self._polling = options
        if self._leading:
            await self._ensure_polling()

    async def stop(self) -> None:
        """Stop trying, polling and the delivery sweep. The lease is kept (and the
        couriers run on) until `release`: no other replica sends before this one's
        outbox is closed."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            await asyncio.wait({loop})
        await self._stop_polling()
        await self._stop_delivery()

    async def release(self) -> None:
        self._leading = False
        await self.lease.release()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.check_every):
                    await self._lost.wait()
            self._lost.clear()
            try:
                if self._leading:
                    if await self.lease.confirm():
                        # In case a notice was missed (its sender's connection was down).
                        self._queued_elsewhere.set()
                        await self._ensure_polling()
                    else:
                        await self._step_down()
                elif await self.lease.try_acquire():
                    await self._take_over()
            except Exception:
                log.exception("the Telegram lease could not be looked after; trying again")

    async def _take_over(self) -> None:
        self._leading = True
        self.outbox.take_over()
        self._delivery = asyncio.create_task(
            deliver_pending_forever(self.outbox, self.clock, self._queued_elsewhere), name="outbox"
        )
        if self.lease.shared:
            log.info(
                "this replica is now the Telegram leader: it polls Telegram (unless "
                "WEBHOOK_URL is set) and sends the outbox",
                extra={"database": self.database},
            )
        await self._ensure_polling()

    async def _step_down(self) -> None:
        self._leading = False
        log.warning(
            "this replica lost the Telegram lease (its database connection ended): it stops "
            "polling and sending, and tries to take over again every %g s",
            self.check_every,
            extra={"database": self.database},
        )
        # The outbox first: its couriers stop after the message in hand.
        await asyncio.gather(self.outbox.stand_by(), self._stop_polling(), self._stop_delivery())

    async def _ensure_polling(self) -> None:
        updater = self.updater
        if self._polling is None or updater is None or updater.running:
            return
        try:
            await updater.start_polling(**self._polling)
        except TelegramError as exc:
            if not self.lease.shared:
                raise  # one process: the start fails as it always did
            # Telegram unreachable as polling starts: the next confirmation tries again.
            log.warning("could not start polling Telegram (%s); trying again", exc)

    async def _stop_polling(self) -> None:
        updater = self.updater
        if updater is not None and updater.running:
            await updater.stop()

    async def _stop_delivery(self) -> None:
        delivery, self._delivery = self._delivery, None
        if delivery is not None:
            delivery.cancel()
            await asyncio.wait({delivery})
