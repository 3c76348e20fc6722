"""What the engine reports, delivered to the chat.

Every notification is sent in the background, so a slow or rate-limited Telegram never
holds up the engine. Telegram's own rules apply: 429 waits (PTB's rate limiter), 403
"blocked by the user" records the chat as blocked and stops sending to it until the
user writes again; network errors and 5xx (Telegram down) are retried for up to
`DELIVERY_PATIENCE`, and a message given up on after that is counted and the chat told
at its next delivery. The run ledger is written before any of this, so an undeliverable
message never loses a run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot import callbacks
from bot.render import esc, local, split_message, zone_of
from bot.views_proposals import (
    expired_line,
    expired_note,
    proposal_keyboard,
    proposal_message,
    run_approval,
)
from scheduler.clock import Clock
from scheduler.dispatch import DispatchError
from scheduler.models import RunStatus
from scheduler.planning import FirePlan
from scheduler.proposals import Proposal, ProposalStatus
from scheduler.risk import RiskDecision
from scheduler.store import FinishedAttempt, Store

if TYPE_CHECKING:
    from bot.context import Services

__all__ = ["TelegramNotifier"]

log = logging.getLogger("tickler.notify")

#: At most one failure alert per schedule in this many seconds; the rest are counted
#: and mentioned in the next one, so a failing schedule cannot flood the chat.
ALERT_INTERVAL = 15 * 60
#: Seconds a notification keeps trying while Telegram is unreachable (network errors,
#: 5xx, 429) before it is given up, counted, and reported to the chat later.
DELIVERY_PATIENCE = 15 * 60.0
#: A reminder's own send gives up sooner: the run is retried by its policy instead.
_REMINDER_PATIENCE = 4.0
_BACKOFF_CAP = 30.0
#: At most this many "wants to run: approve?" messages per claim (a catch-up of many
#: missed fires asks about the newest ones; the rest wait in /history).
_APPROVALS_SHOWN = 10
#: Pending proposals whose message expiry can still edit (the oldest are forgotten;
#: their expiry is then a new message).
_PROPOSAL_MESSAGES_KEPT = 1000


def keyboard(*rows: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(text, callback_data=data) for text, data in row] for row in rows]
    )


class TelegramNotifier:
    def __init__(self, bot: Bot, store: Store, clock: Clock) -> None:
        self.bot = bot
        self.store = store
        self.clock = clock
        self.services: Services | None = None
        self._last_alert: dict[str, float] = {}
        #: The admins were told the database cannot be written, and not yet that it can.
        self._database_alerted = False
        self._suppressed: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Messages per chat given up on (Telegram unreachable for longer than the
        #: patience); the chat is told at its next successful delivery.
        self._undelivered: dict[int, int] = {}
        #: Pending proposals' messages (id -> message id, its HTML), so expiry can edit
        #: them; after a restart the expiry note is a new message instead.
        self._proposal_messages: dict[str, tuple[int, str]] = {}

    # --- the engine's Notifier protocol --------------------------------------------------
    async def run_finished(self, finished: FinishedAttempt) -> None:
        run, schedule = finished.run, finished.schedule
        answer = finished.answer
        if run.status is RunStatus.SUCCEEDED and answer:
            header = f"<b>{esc(schedule.name)}</b>\n"
            # Telegram counts the text after parsing, so the raw answer is cut to fit
            # beside the header and escaped afterwards; parts go in order, one task.
            parts = split_message(answer, 4096 - len(schedule.name) - 2)
            texts = [header + esc(parts[0])] + [esc(p) for p in parts[1:]]
            self._spawn(self.send_all(schedule.chat_id, texts))
        elif run.status is RunStatus.DEAD:
            if not self._may_alert(schedule.id):
                return
            more = self._suppressed.pop(schedule.id, 0)
            extra = f"\n({more} more failures were not announced.)" if more else ""
            text = (
                f"❌ <b>{esc(schedule.name)}</b>: the run for "
                f"{local(run.scheduled_for, zone_of(schedule))} failed after {run.attempt} "
                f"attempt{'s' if run.attempt != 1 else ''}: {esc(run.error or 'unknown error')}"
                f"{extra}"
            )
            markup = keyboard(
                [
                    ("Retry", callbacks.make("r", "retry", run.id)),
                    ("History", callbacks.make("s", "hist", schedule.id)),
                ]
            )
            self._spawn(self.send(schedule.chat_id, text, markup))
        elif run.status is RunStatus.UNKNOWN:
            text = (
                f"❓ <b>{esc(schedule.name)}</b>: the run for "
                f"{local(run.scheduled_for, zone_of(schedule))} timed out after the agent "
                "may have received it. Did it do the work?"
            )
            markup = keyboard(
                [
                    ("Retry", callbacks.make("r", "retry", run.id)),
                    ("Mark done", callbacks.make("r", "done", run.id)),
                    ("Drop", callbacks.make("r", "drop", run.id)),
                ]
            )
            self._spawn(self.send(schedule.chat_id, text, markup))

    async def schedule_tripped(self, finished: FinishedAttempt) -> None:
        schedule = finished.schedule
        text = (
            f"⛔ <b>{esc(schedule.name)}</b> paused itself after "
            f"{schedule.consecutive_failures} failed runs in a row. It will not fire again "
            "until you resume it."
        )
        markup = keyboard(
            [
                ("Resume", callbacks.make("s", "resume", schedule.id)),
                ("Run now", callbacks.make("s", "run", schedule.id)),
                ("History", callbacks.make("s", "hist", schedule.id)),
            ]
        )
        self._spawn(self.send(schedule.chat_id, text, markup))

    async def fires_missed(self, plan: FirePlan) -> None:
        if plan.first_missed is None or plan.last_missed is None:
            return
        svc = self.services
        schedule = await svc.store.get_schedule(plan.chat_id, plan.schedule_id) if svc else None
        if schedule is None:
            return
        zone = zone_of(schedule)
        about = "about " if plan.missed_truncated else ""
        policy = schedule.policies.missed_run.value.replace("_", " ")
        text = (
            f"⏰ <b>{esc(schedule.name)}</b>: {about}{plan.missed} fire"
            f"{'s' if plan.missed != 1 else ''} missed between "
            f"{local(plan.first_missed, zone)} and {local(plan.last_missed, zone)} while "
            f"Tickler was not running. Handled by its policy ({policy}) unless you choose:"
        )
        a, b = int(plan.first_missed.timestamp()), int(plan.last_missed.timestamp())
        markup = keyboard(
            [
                ("Run latest", callbacks.make("m", "latest", schedule.id, a, b)),
                ("Run all", callbacks.make("m", "all", schedule.id, a, b)),
                ("Skip", callbacks.make("m", "skip", schedule.id, a, b)),
            ]
        )
        self._spawn(self.send(schedule.chat_id, text, markup))

    async def runs_awaiting_approval(self, plan: FirePlan) -> None:
        """One message per waiting run: "<name> wants to run for <time>: approve?"."""
        waiting = {f.scheduled_for for f in plan.fires if f.status is RunStatus.AWAITING_APPROVAL}
        schedule = await self.store.get_schedule(plan.chat_id, plan.schedule_id)
        if schedule is None or not waiting:
            return
        runs = await self.store.list_runs(
            plan.chat_id,
            schedule_id=schedule.id,
            statuses=[RunStatus.AWAITING_APPROVAL],
            limit=_APPROVALS_SHOWN * 4,
        )
        asking = sorted(
            (r for r in runs if r.scheduled_for in waiting), key=lambda r: r.scheduled_for
        )
        texts = [run_approval(schedule, run, zone_of(schedule)) for run in asking]
        self._spawn(self._send_each(schedule.chat_id, texts[-_APPROVALS_SHOWN:]))

    # --- proposals (ProposalService's on_proposal, and the expiry sweep) -------------------
    async def proposal_made(self, proposal: Proposal, decision: RiskDecision) -> None:
        """Tell the chat what the agent proposed and what will happen, with its buttons."""
        text = proposal_message(proposal, decision, now=self.clock.now())
        markup = proposal_keyboard(proposal)

        async def announce() -> None:
            message = await self.deliver(proposal.chat_id, text, markup)
            if message is not None and proposal.status is ProposalStatus.PENDING:
                known = self._proposal_messages
                known[proposal.id] = (message.message_id, message.text_html)
                while len(known) > _PROPOSAL_MESSAGES_KEPT:  # decided ones are never popped
                    del known[next(iter(known))]

        self._spawn(announce())

    async def proposal_expired(self, proposal: Proposal) -> None:
        """Edit the proposal's message (its buttons go), or say so in a new one."""
        known = self._proposal_messages.pop(proposal.id, None)
        if known is not None:
            message_id, text = known
            try:
                await self.bot.edit_message_text(
                    f"{text}\n\n{expired_line(proposal)}",
                    chat_id=proposal.chat_id,
                    message_id=message_id,
                    parse_mode=ParseMode.HTML,
                )
                return
            except TelegramError:
                log.info(
                    "could not edit the proposal's message; sending a note",
                    extra={"proposal_id": proposal.id, "chat_id": proposal.chat_id},
                )
        await self.send(proposal.chat_id, expired_note(proposal))

    async def _send_each(
        self, chat_id: int, messages: list[tuple[str, InlineKeyboardMarkup]]
    ) -> None:
        for text, markup in messages:
            if not await self.send(chat_id, text, markup):
                return

    # --- the database (SqliteStore.on_write_health) -----------------------------------------
    def database_health_changed(self, failure: str | None) -> None:
        """Tell the admins when the database stops taking writes (at most once per
        ALERT_INTERVAL), and when it takes them again if they were told it stopped."""
        admins = self.services.settings.admin_ids if self.services is not None else []
        if failure is not None:
            if not self._may_alert("database"):
                return
            self._database_alerted = True
            text = (
                f"⚠️ Tickler cannot write its database. {esc(failure)} Due runs wait and "
                "none are lost; /healthz reports it until it is fixed."
            )
        elif self._database_alerted:
            self._database_alerted = False
            text = "✅ The database takes writes again; the runs that waited go out now."
        else:
            return
        for chat_id in admins:
            self._spawn(self.send(chat_id, text))

    # --- the engine's ReminderSender protocol ---------------------------------------------
    async def send_reminder(self, chat_id: int, text: str) -> None:
        # A reminder is a run: its own retries (and the ledger) cover a failed send, and
        # waiting out a long outage here would hold a dispatch slot.
        delivered = await self.send(
            chat_id, f"🔔 {esc(text)}", patience=_REMINDER_PATIENCE, count_loss=False
        )
        if not delivered:
            raise DispatchError("The reminder could not be delivered to the chat.", uncertain=False)

    # --- delivery ----------------------------------------------------------------------
    async def send(
        self,
        chat_id: int,
        text: str,
        markup: InlineKeyboardMarkup | None = None,
        *,
        patience: float = DELIVERY_PATIENCE,
        count_loss: bool = True,
    ) -> bool:
        """Send one HTML message; False if it could not be delivered."""
        message = await self.deliver(
            chat_id, text, markup, patience=patience, count_loss=count_loss
        )
        return message is not None

    async def deliver(
        self,
        chat_id: int,
        text: str,
        markup: InlineKeyboardMarkup | None = None,
        *,
        patience: float = DELIVERY_PATIENCE,
        count_loss: bool = True,
    ) -> Message | None:
        """`send`, returning the message sent (None if it could not be delivered).

        Network errors, 5xx and 429 are retried for up to `patience` seconds; a message
        given up on is counted (unless `count_loss` is False: the caller records the
        failure itself) and the chat is told at its next delivery."""
        prefs = await self.store.get_chat(chat_id)
        if prefs.blocked_at is not None:
            log.info(
                "not sending: the chat blocked the bot",
                extra={"chat_id": chat_id, "reason": prefs.block_reason},
            )
            return None
        # Telegram down, 5xx, 429: wait and try again until `patience` runs out, so an
        # outage delays a message instead of losing it. A message given up on is
        # counted and the chat is told once it can be reached again: never silently.
        give_up = time.monotonic() + patience
        attempt = 0
        while True:
            attempt += 1
            try:
                message = await self.bot.send_message(
                    chat_id, text, parse_mode=ParseMode.HTML, reply_markup=markup
                )
            except Forbidden as exc:
                await self.store.set_chat_blocked(chat_id, exc.message, self.clock.now())
                log.warning(
                    "the chat refuses messages", extra={"chat_id": chat_id, "reason": exc.message}
                )
                return None
            except BadRequest:
                log.exception("Telegram refused a message", extra={"chat_id": chat_id})
                return None
            except RetryAfter as exc:
                # The rate limiter already waited and retried; wait once more, then retry.
                wait = exc.retry_after.total_seconds()  # type: ignore[union-attr]
                problem = f"rate limited: {exc.message}"
            except NetworkError as exc:
                wait = min(_BACKOFF_CAP, 0.5 * 2**attempt)
                problem = exc.message
            else:
                if self._undelivered.get(chat_id) and count_loss:
                    self._spawn(self._report_undelivered(chat_id))
                return message
            if time.monotonic() + wait > give_up:
                if count_loss:
                    self._undelivered[chat_id] = self._undelivered.get(chat_id, 0) + 1
                log.error(
                    "gave up delivering a message",
                    extra={"chat_id": chat_id, "tries": attempt, "reason": problem},
                )
                return None
            if attempt == 1:
                log.warning(
                    "Telegram did not take a message; trying again",
                    extra={"chat_id": chat_id, "reason": problem},
                )
            await asyncio.sleep(wait)

    async def _report_undelivered(self, chat_id: int) -> None:
        """Tell the chat how many messages were given up on while it was unreachable."""
        lost = self._undelivered.pop(chat_id, 0)
        if not lost:
            return
        text = (
            f"⚠️ {lost} message{'s' if lost != 1 else ''} for this chat could not be "
            "delivered while Telegram was unreachable; /history and /deadletters show "
            "every run."
        )
        if not await self.send(chat_id, text, count_loss=False):
            self._undelivered[chat_id] = self._undelivered.get(chat_id, 0) + lost

    async def send_all(self, chat_id: int, texts: list[str]) -> None:
        for text in texts:
            if not await self.send(chat_id, text):
                return

    def _may_alert(self, schedule_id: str) -> bool:
        now = time.monotonic()
        last = self._last_alert.get(schedule_id)
        if last is not None and now - last < ALERT_INTERVAL:
            self._suppressed[schedule_id] = self._suppressed.get(schedule_id, 0) + 1
            return False
        self._last_alert[schedule_id] = now
        return True

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("notification failed")

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self.services is not None:
            self.services.pending.add(task)
            task.add_done_callback(self.services.pending.discard)

    async def drain(self, timeout: float = 5.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
