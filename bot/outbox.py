"""The outbox: every chat message is written to the `notifications` table (pending)
before it goes to Telegram, so a message Telegram cannot take now, or that a stopped or
crashed process did not get to send, goes out later instead of being lost.

Each chat has at most one courier task in this process, which sends the chat's pending
messages oldest first and waits out trouble before the next one: network errors, 5xx
and 429 (after PTB's rate limiter) keep the message pending and retry it with a backoff;
403 ("blocked by the user") records the chat as blocked and stops sending to it (its
pending messages become `blocked`) until the user writes again; 400 (Telegram refused
the text) gives the message up, logged. A message still undeliverable after
`GIVE_UP_AFTER` is given up, counted, and the chat told at its next delivery. The
delivery sweep (`deliver_pending_forever`, on bot/sweeps.py's loop) starts couriers for
what is waiting, at start-up first: the messages a previous process left pending.

One process sends: with PostgreSQL several replicas share the outbox, and only the one
holding the Telegram lease (bot/telegram_side.py) sends it, so that a chat's messages go
out one at a time and in order; the others only write theirs and tell the sender
(`tell_sender`, a NOTIFY), and a reminder queued by one of them is watched in the
database until the sender took it. A process that loses the lease stops its couriers
after the message in hand (`stand_by`); the one that takes over starts with every
pending message (`take_over`).

Delivery is at least once, never silently lost: a crash (or a shutdown cutting a send
short) between Telegram taking a message and the row being marked `sent` sends that
message again after the restart. Within one process a message is never sent twice: one
courier per chat, and a message Telegram took is remembered even if the database could
not be told.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from telegram import Bot, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.render import MAX_MESSAGE, esc, local
from bot.sweeps import sweep_forever
from scheduler.clock import Clock
from scheduler.ids import new_id
from scheduler.log_context import log_context
from scheduler.repositories import Notification, NotificationStatus
from scheduler.stores import Stores

if TYPE_CHECKING:
    from telegram import Message

__all__ = [
    "DELAYED_AFTER",
    "GIVE_UP_AFTER",
    "Outbox",
    "deliver_pending_forever",
    "network_backoff",
]

log = logging.getLogger("tickler.notify")

#: A message Telegram has not taken after this long is given up (and the chat told).
GIVE_UP_AFTER = timedelta(days=3)
#: A message sent this long after it was queued says when it was queued.
DELAYED_AFTER = timedelta(hours=24)
_BACKOFF_CAP = 30.0
#: Pending messages a courier reads at a time.
_BATCH = 20
_ERROR_LENGTH = 200
#: Seconds between two looks at a reminder's message that another replica sends.
_WATCH_EVERY = 0.2


def network_backoff(attempt: int) -> float:
    """Seconds to wait after the `attempt`-th send Telegram could not be reached for."""
    return min(_BACKOFF_CAP, 0.5 * 2.0**attempt)


def one_line(text: str) -> str:
    """An error as stored with the message: its first line, cut short. The Bot API's
    descriptions carry no secrets (the token is in the URL, never in the text)."""
    first = (text.strip().splitlines() or [""])[0]
    return first[:_ERROR_LENGTH]


class Outbox:
    def __init__(self, bot: Bot, store: Stores, clock: Clock) -> None:
        self.bot = bot
        self.store = store
        self.clock = clock
        self._couriers: dict[int, asyncio.Task[None]] = {}
        #: Chats given new messages while their courier was reading its queue.
        self._again: set[int] = set()
        #: New messages gathered for one write; `_flush` writes them.
        self._to_write: list[Notification] = []
        self._flush: asyncio.Task[None] | None = None
        self._last_flush: asyncio.Task[None] | None = None
        #: Senders waiting for a message's outcome (reminders): id -> (chat, future).
        self._waiters: dict[str, tuple[int, asyncio.Future[bool]]] = {}
        #: A reminder's own deadline (monotonic): after it the run's retry covers it.
        self._deadlines: dict[str, float] = {}
        #: Messages Telegram took whose `sent` the database has not recorded yet.
        self._sent: dict[str, int] = {}
        #: Messages per chat given up after GIVE_UP_AFTER; told at the next delivery.
        self._undelivered: dict[int, int] = {}
        #: Called after messages were written (bot/sinks.py wakes up: the sinks' copies
        #: were written in the same transaction).
        self.written: Callable[[], None] | None = None
        #: Set at shutdown: no new couriers, and none waits out a backoff any more.
        self._closing = asyncio.Event()
        #: Set (and replaced) by `retry_now`: the couriers' backoffs end early.
        self._retry = asyncio.Event()
        #: Set while another replica sends the outbox: no couriers here (see `sending`).
        self._standing_by = asyncio.Event()
        #: Tells the replica that sends (a NOTIFY) that this one queued messages.
        self.tell_sender: Callable[[], Awaitable[None]] | None = None
        self._telling: asyncio.Task[None] | None = None
        self._tell_again = False
        #: This process took the sending over at least once (`take_over`).
        self.has_led = False

    @property
    def sending(self) -> bool:
        """This process sends the outbox (on SQLite always; on PostgreSQL the replica
        holding the Telegram lease)."""
        return not self._standing_by.is_set()

    def take_over(self) -> None:
        """This process sends from now on; the delivery sweep's first pass then starts
        couriers for every pending message."""
        self._standing_by.clear()
        self.has_led = True

    async def stand_by(self, grace: float = 5.0) -> None:
        """Another replica sends from now on: the couriers stop after the message in
        hand (waited for up to `grace` seconds); messages queued here are only written."""
        self._standing_by.set()
        busy = set(self._couriers.values())
        if busy:
            _, waiting = await asyncio.wait(busy, timeout=grace)
            for task in waiting:
                task.cancel()
            if waiting:
                await asyncio.wait(waiting)

    # --- queueing -------------------------------------------------------------------------
    async def put(
        self,
        chat_id: int,
        text: str,
        markup: InlineKeyboardMarkup | None = None,
        *,
        kind: str,
        parse_mode: str | None = ParseMode.HTML,
        run_id: str | None = None,
        schedule_id: str | None = None,
        proposal_id: str | None = None,
        item_id: str | None = None,
    ) -> Notification:
        """Write the message (durably) and hand it to the chat's courier."""
        notification = await self._queue(
            chat_id,
            text,
            markup,
            kind=kind,
            parse_mode=parse_mode,
            run_id=run_id,
            schedule_id=schedule_id,
            proposal_id=proposal_id,
            item_id=item_id,
        )
        if notification.status is NotificationStatus.PENDING:
            self.kick(chat_id)
        return notification

    async def record_sent(
        self,
        chat_id: int,
        text: str,
        message_id: int,
        *,
        kind: str,
        run_id: str | None = None,
        schedule_id: str | None = None,
    ) -> Notification:
        """Note a message the bot sent itself (a command's answer), so that it can be
        found and edited later, after a restart too."""
        now = self.clock.now()
        notification = Notification(
            id=new_id(),
            chat_id=chat_id,
            kind=kind,
            text=text,
            created_at=now,
            run_id=run_id,
            schedule_id=schedule_id,
            status=NotificationStatus.SENT,
            attempts=1,
            sent_at=now,
            message_id=message_id,
        )
        await self.store.outbox.queue([notification])
        return notification

    async def put_and_wait(
        self, chat_id: int, text: str, *, kind: str, patience: float, schedule_id: str | None = None
    ) -> bool:
        """`put`, then wait up to `patience` seconds for Telegram to take it; False if it
        did not. A message not sent by then is given up when its turn comes (the caller
        takes care of a failed send: a reminder is a run, and its retry sends again)."""
        notification = await self._queue(
            chat_id, text, None, kind=kind, schedule_id=schedule_id, patience=patience
        )
        if notification.status is not NotificationStatus.PENDING:
            return False
        if not self.sending:
            return await self._watch(notification, patience)
        _, outcome = self._waiters[notification.id]
        self.kick(chat_id)
        try:
            async with asyncio.timeout(patience + 1.0):
                return await asyncio.shield(outcome)
        except TimeoutError:
            return False
        finally:
            self._waiters.pop(notification.id, None)

    async def _watch(self, notification: Notification, patience: float) -> bool:
        """`put_and_wait` on a replica that does not send: the sender is told, and the
        message's row is watched until it is sent or settled, or patience runs out (then
        it is given up, unless the sender took it meanwhile)."""
        self._deadlines.pop(notification.id, None)
        self._waiters.pop(notification.id, None)
        self.kick(notification.chat_id)
        give_up = time.monotonic() + patience
        while True:
            status = await self.store.outbox.status_of(notification.id)
            if status is not NotificationStatus.PENDING:
                return status is NotificationStatus.SENT
            left = give_up - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(_WATCH_EVERY, left))
        await self.store.outbox.settle(
            notification.id,
            NotificationStatus.GIVEN_UP,
            "not delivered within a reminder's patience",
        )
        return await self.store.outbox.status_of(notification.id) is NotificationStatus.SENT

    async def _queue(
        self,
        chat_id: int,
        text: str,
        markup: InlineKeyboardMarkup | None,
        *,
        kind: str,
        parse_mode: str | None = ParseMode.HTML,
        run_id: str | None = None,
        schedule_id: str | None = None,
        proposal_id: str | None = None,
        item_id: str | None = None,
        patience: float | None = None,
    ) -> Notification:
        prefs = await self.store.chats.get(chat_id)
        now = self.clock.now()
        blocked = prefs.blocked_at is not None
        notification = Notification(
            id=new_id(),
            chat_id=chat_id,
            kind=kind,
            text=text,
            created_at=now,
            parse_mode=parse_mode,
            reply_markup=None if markup is None else markup.to_dict(),
            run_id=run_id,
            schedule_id=schedule_id,
            proposal_id=proposal_id,
            item_id=item_id,
            status=NotificationStatus.BLOCKED if blocked else NotificationStatus.PENDING,
            next_attempt_at=None if blocked else now,
            last_error="the chat blocked the bot" if blocked else None,
        )
        if patience is not None and not blocked:
            # Before the write: the courier may reach the message before we resume.
            self._deadlines[notification.id] = time.monotonic() + patience
            future = asyncio.get_running_loop().create_future()
            self._waiters[notification.id] = (chat_id, future)
        self._to_write.append(notification)
        if self._flush is None:
            self._flush = asyncio.create_task(
                self._write_gathered(self._last_flush), context=contextvars.Context()
            )
            self._last_flush = self._flush
        try:
            # Shielded: a caller cancelled meanwhile does not stop the others' write.
            await asyncio.shield(self._flush)
        except BaseException:
            self._deadlines.pop(notification.id, None)
            self._waiters.pop(notification.id, None)
            raise
        if blocked:
            log.info(
                "not sending: the chat blocked the bot",
                extra={"chat_id": chat_id, "reason": prefs.block_reason, "kind": kind},
            )
        return notification

    async def _write_gathered(self, previous: asyncio.Task[None] | None) -> None:
        # Messages queued in the same turn of the event loop (a burst of finished runs)
        # share one transaction; batches are written in order, so a courier never sees
        # a chat's newer message before an older one.
        await asyncio.sleep(0)
        if previous is not None and not previous.done():
            await asyncio.wait({previous})
        rows, self._to_write, self._flush = self._to_write, [], None
        await self.store.outbox.queue(rows)
        if self.written is not None:
            self.written()

    # --- couriers -------------------------------------------------------------------------
    def kick(self, chat_id: int) -> None:
        """Make sure the chat's pending messages are being delivered (by the replica that
        sends: told if it is another)."""
        if self.written is not None:
            self.written()
        if self._closing.is_set():
            return
        if not self.sending:
            self._tell()
            return
        if chat_id in self._couriers:
            self._again.add(chat_id)
            return
        # A fresh context: the courier outlives the run (or update) that started it, and
        # must not tag the chat's later messages with that run's ids.
        task = asyncio.create_task(
            self._courier(chat_id), name=f"outbox-{chat_id}", context=contextvars.Context()
        )
        self._couriers[chat_id] = task

    async def _courier(self, chat_id: int) -> None:
        failures = 0
        try:
            while self.sending:
                self._again.discard(chat_id)
                try:
                    queue = await self.store.outbox.pending(chat_id, _BATCH)
                    for n in queue:
                        with log_context(
                            chat_id=chat_id,
                            run_id=n.run_id,
                            schedule_id=n.schedule_id,
                            proposal_id=n.proposal_id,
                            item_id=n.item_id,
                            notification_id=n.id,
                        ):
                            keep_going = await self._deliver(n)
                        if not keep_going or not self.sending:
                            return  # the chat blocked the bot, shutdown, or standing by
                except Exception:
                    # The database (locked, full): the messages stay pending; try again.
                    failures += 1
                    log.exception(
                        "delivering a chat's messages failed; trying again",
                        extra={"chat_id": chat_id},
                    )
                    if await self._closing_within(min(_BACKOFF_CAP, 2.0**failures)):
                        return
                    continue
                if not queue and chat_id not in self._again:
                    return
        finally:
            self._couriers.pop(chat_id, None)

    async def _deliver(self, notification: Notification) -> bool:
        """Send one message until Telegram takes it or it is settled; False when the chat
        blocked the bot (its queue is settled as blocked), or at shutdown while the
        message waits for Telegram (it stays pending for the next start)."""
        n = notification
        attempt = 0
        while True:
            if n.id in self._sent:
                await self._mark_sent(n, self._sent[n.id])
                return True
            now = self.clock.now()
            deadline = self._deadlines.get(n.id)
            if deadline is not None and time.monotonic() > deadline:
                await self._settle(n, "not delivered within a reminder's patience")
                return True
            if now - n.created_at > GIVE_UP_AFTER:
                self._undelivered[n.chat_id] = self._undelivered.get(n.chat_id, 0) + 1
                log.error(
                    "gave up delivering a message",
                    extra={"chat_id": n.chat_id, "notification_id": n.id, "kind": n.kind},
                )
                await self._settle(n, f"not delivered within {GIVE_UP_AFTER.days} days")
                return True
            attempt += 1
            try:
                message = await self._send(n, now)
            except Forbidden as exc:
                await self._blocked(n.chat_id, exc.message, now)
                return False
            except BadRequest as exc:
                log.error(
                    "Telegram refused a message",
                    extra={
                        "chat_id": n.chat_id,
                        "notification_id": n.id,
                        "kind": n.kind,
                        "reason": exc.message,
                    },
                )
                await self._settle(n, f"Telegram refused it: {one_line(exc.message)}")
                return True
            except RetryAfter as exc:
                # The rate limiter already waited and retried; wait once more, then retry.
                wait = exc.retry_after.total_seconds()  # type: ignore[union-attr]
                problem = f"rate limited: {exc.message}"
            except NetworkError as exc:
                wait = network_backoff(attempt)
                problem = exc.message
            except TelegramError as exc:
                # Neither the text nor the network: a migrated chat, a revoked token.
                log.error(
                    "Telegram refused a message",
                    extra={"chat_id": n.chat_id, "notification_id": n.id, "reason": exc.message},
                )
                await self._settle(n, one_line(exc.message))
                return True
            else:
                self._sent[n.id] = message.message_id
                await self._mark_sent(n, message.message_id)
                if self._undelivered.get(n.chat_id):
                    await self._report_undelivered(n.chat_id)
                return True
            problem = one_line(problem)
            await self.store.outbox.postpone(n.id, problem, now + timedelta(seconds=wait))
            if deadline is not None and time.monotonic() + wait > deadline:
                await self._settle(n, problem)
                return True
            if attempt == 1:
                log.warning(
                    "Telegram did not take a message; trying again",
                    extra={"chat_id": n.chat_id, "reason": problem},
                )
            if await self._closing_within(wait):
                return False

    def _tell(self) -> None:
        """Tell the sender, once for a burst of messages queued here."""
        if self.tell_sender is None:
            return
        if self._telling is not None and not self._telling.done():
            self._tell_again = True
            return
        self._telling = asyncio.create_task(
            self._tell_sender(self.tell_sender), name="outbox-tell", context=contextvars.Context()
        )

    async def _tell_sender(self, tell: Callable[[], Awaitable[None]]) -> None:
        while True:
            self._tell_again = False
            try:
                await tell()
            except Exception:
                # The sender also looks by itself every few seconds.
                log.debug("could not tell the sending replica", exc_info=True)
            if not self._tell_again:
                return

    def retry_now(self) -> None:
        """Telegram is reachable again (the bot just connected): the couriers waiting
        out a network backoff send at once instead of at the end of it (up to 30 s)."""
        self._retry.set()
        self._retry = asyncio.Event()

    async def _closing_within(self, seconds: float) -> bool:
        """Wait `seconds` (less after `retry_now`); True (at once) if shutdown begins
        meanwhile, or another replica takes over the sending."""
        retry = self._retry
        waits = {
            asyncio.ensure_future(self._closing.wait()),
            asyncio.ensure_future(retry.wait()),
            asyncio.ensure_future(self._standing_by.wait()),
        }
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return self._closing.is_set() or not self.sending

    async def _send(self, n: Notification, now: datetime) -> Message:
        markup = None
        if n.reply_markup is not None:
            markup = InlineKeyboardMarkup.de_json(n.reply_markup, self.bot)
        text = n.text
        if now - n.created_at > DELAYED_AFTER:
            text = await self._with_delay_note(n)
        return await self.bot.send_message(
            n.chat_id, text, parse_mode=n.parse_mode, reply_markup=markup
        )

    async def _with_delay_note(self, n: Notification) -> str:
        zone = (await self.store.chats.get(n.chat_id)).timezone or "UTC"
        note = f"(delayed: queued at {local(n.created_at, zone)})"
        if n.parse_mode == ParseMode.HTML:
            note = f"<i>{esc(note)}</i>"
        if len(note) + 1 + len(n.text) > MAX_MESSAGE:
            return n.text  # a full-length message goes out as it was written
        return f"{note}\n{n.text}"

    async def _mark_sent(self, n: Notification, message_id: int) -> None:
        await self.store.outbox.mark_sent(n.id, message_id, self.clock.now())
        del self._sent[n.id]
        self._deadlines.pop(n.id, None)
        self._resolve(n.id, True)

    async def _settle(self, n: Notification, error: str) -> None:
        await self.store.outbox.settle(n.id, NotificationStatus.GIVEN_UP, one_line(error))
        self._deadlines.pop(n.id, None)
        self._resolve(n.id, False)

    async def _blocked(self, chat_id: int, reason: str, now: datetime) -> None:
        await self.store.chats.set_blocked(chat_id, reason, now)
        await self.store.outbox.block_pending(chat_id, one_line(reason))
        log.warning("the chat refuses messages", extra={"chat_id": chat_id, "reason": reason})
        for ident, (chat, _) in list(self._waiters.items()):
            if chat == chat_id:
                self._deadlines.pop(ident, None)
                self._resolve(ident, False)

    def _resolve(self, notification_id: str, delivered: bool) -> None:
        waiter = self._waiters.get(notification_id)
        if waiter is not None and not waiter[1].done():
            waiter[1].set_result(delivered)

    async def _report_undelivered(self, chat_id: int) -> None:
        """Tell the chat how many messages were given up on while it was unreachable."""
        lost = self._undelivered.pop(chat_id, 0)
        text = (
            f"⚠️ {lost} message{'s' if lost != 1 else ''} for this chat could not be "
            "delivered while Telegram was unreachable; /history and /deadletters show "
            "every run."
        )
        await self.put(chat_id, text, kind="notice")

    # --- shutdown -------------------------------------------------------------------------
    async def close(self, grace: float) -> int:
        """Let the couriers send what Telegram takes for up to `grace` seconds (one that
        waits for Telegram stops at once), then stop them; returns how many chats still
        have messages waiting (they go out at the next start)."""
        self._closing.set()
        if self._last_flush is not None:
            await asyncio.wait({self._last_flush})
        if self._telling is not None:
            await asyncio.wait({self._telling}, timeout=grace)
        busy = set(self._couriers.values())
        if busy:
            _, waiting = await asyncio.wait(busy, timeout=grace)
            for task in waiting:
                task.cancel()
            if waiting:
                await asyncio.wait(waiting)
        return len(await self.store.outbox.chats_with_pending(None))


async def deliver_pending_forever(
    outbox: Outbox, clock: Clock, wake: asyncio.Event | None = None
) -> None:
    """Until cancelled: start couriers for chats with due pending messages. The first
    sweep (at start-up, or when this replica takes the sending over) takes every
    pending message, whatever its backoff said: those are the ones a previous process
    left. `wake` set: look again now (another replica queued messages)."""
    starting = True

    async def sweep(now: datetime) -> datetime | None:
        nonlocal starting
        for chat_id in await outbox.store.outbox.chats_with_pending(None if starting else now):
            outbox.kick(chat_id)
        starting = False
        return await outbox.store.outbox.next_due()

    await sweep_forever(sweep, clock, what="delivering queued chat messages", wake=wake)
