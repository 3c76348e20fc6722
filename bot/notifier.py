"""What the engine reports, delivered to the chat.

Every message goes through the outbox (bot/outbox.py): written to the database first,
then sent by the chat's courier, so a slow, rate-limited or unreachable Telegram never
holds up the engine and a restart never loses a message. 429 waits (PTB's rate limiter),
403 "blocked by the user" records the chat as blocked and stops sending to it until the
user writes again; network errors and 5xx keep the message waiting. The run ledger is
written before any of this, so an undeliverable message never loses a run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError

from bot import callbacks
from bot.outbox import Outbox, network_backoff
from bot.render import esc, local, split_message, step_of, zone_of
from bot.settings import Settings
from bot.views_budgets import budget_notice
from bot.views_proposals import (
    expired_line,
    expired_note,
    proposal_fallback,
    proposal_keyboard,
    proposal_message,
    run_approval,
)
from bot.views_runs import sent_run_outcome
from scheduler.clock import Clock
from scheduler.dispatching import DispatchError
from scheduler.engine_store import BudgetPause, FinishedAttempt
from scheduler.errors import UnreadableSchedule
from scheduler.models import Run, RunStatus, RunTrigger, Schedule
from scheduler.planning import FirePlan
from scheduler.proposals import Proposal
from scheduler.risk import RiskDecision
from scheduler.stores import Stores

__all__ = ["TelegramNotifier"]

log = logging.getLogger("tickler.notify")

#: At most one failure alert per schedule in this many seconds; the rest are counted
#: and mentioned in the next one, so a failing schedule cannot flood the chat.
ALERT_INTERVAL = 15 * 60
#: Seconds the "cannot write the database" alert keeps trying while Telegram is
#: unreachable: it cannot wait in the outbox, which is in that database.
_DIRECT_PATIENCE = 15 * 60.0
#: A reminder's own send gives up soon: the run is retried by its policy instead.
_REMINDER_PATIENCE = 4.0
#: At most this many "wants to run: approve?" messages per claim (a catch-up of many
#: missed fires asks about the newest ones; the rest wait in /history).
_APPROVALS_SHOWN = 10


#: The runs an operator sent by hand (/runnow, /retry), whose message is confirmed in place.
_SENT_BY_HAND = (RunTrigger.MANUAL, RunTrigger.RETRY)


def keyboard(*rows: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(text, callback_data=data) for text, data in row] for row in rows]
    )


class TelegramNotifier:
    def __init__(self, bot: Bot, store: Stores, clock: Clock, settings: Settings) -> None:
        self.bot = bot
        self.store = store
        self.clock = clock
        self.settings = settings
        self.outbox = Outbox(bot, store, clock)
        self._last_alert: dict[str, float] = {}
        #: The admins were told the database cannot be written, and not yet that it can.
        self._database_alerted = False
        self._suppressed: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: One confirmation of a sent run at a time: each reads the run and then edits,
        #: so the last edit always shows the latest state.
        self._confirming = asyncio.Lock()

    # --- the engine's Notifier protocol --------------------------------------------------
    async def run_finished(self, finished: FinishedAttempt) -> None:
        run, schedule = finished.run, finished.schedule
        answer = finished.answer
        if run.trigger in _SENT_BY_HAND and self._agent_answers_itself:
            # Off the engine's path: an edit goes straight to Telegram, which may be slow.
            self._spawn(self.confirm_sent_run(schedule.chat_id, run.id))
        if run.status is RunStatus.DEAD and any(
            r.status is RunStatus.SKIPPED for r in finished.then
        ):
            # A failed step stopped its plan: one message for the step and the steps
            # left unrun, not an alert for the step and a line per skipped one.
            await self._plan_stopped(finished)
        elif _reported(run) and run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            # The agent's asynchronous result (PATCH or report_result): its summary and
            # the link to what it produced.
            await self.notify(
                schedule.chat_id,
                result_text(run, schedule.name),
                kind="run_answer",
                run_id=run.id,
                schedule_id=schedule.id,
            )
        elif run.status is RunStatus.SUCCEEDED and answer:
            step = step_of(run, schedule)
            heading = schedule.name + (f" · {step}" if step else "")
            header = f"<b>{esc(schedule.name)}</b>{f' · {step}' if step else ''}\n"
            # Telegram counts the text after parsing, so the raw answer is cut to fit
            # beside the header and escaped afterwards; the chat's courier sends the
            # parts in order.
            parts = split_message(answer, 4096 - len(heading) - 2)
            texts = [header + esc(parts[0])] + [esc(p) for p in parts[1:]]
            for text in texts:
                await self.notify(
                    schedule.chat_id,
                    text,
                    kind="run_answer",
                    run_id=run.id,
                    schedule_id=schedule.id,
                )
        elif run.status is RunStatus.DEAD:
            if not self._may_alert(schedule.id):
                return
            more = self._suppressed.pop(schedule.id, 0)
            extra = f"\n({more} more failures were not announced.)" if more else ""
            step = step_of(run, schedule)
            text = (
                f"❌ <b>{esc(schedule.name)}</b>: the run for "
                f"{local(run.scheduled_for, zone_of(schedule))}"
                f"{f', {step},' if step else ''} failed after {run.attempt} "
                f"attempt{'s' if run.attempt != 1 else ''}: {esc(run.error or 'unknown error')}"
                f"{_link_line(run)}{extra}"
            )
            markup = keyboard(
                [
                    ("Retry", callbacks.make("r", "retry", run.id)),
                    ("History", callbacks.make("s", "hist", schedule.id)),
                ]
            )
            await self.notify(
                schedule.chat_id, text, markup, kind="alert", run_id=run.id, schedule_id=schedule.id
            )
        elif run.status is RunStatus.UNKNOWN:
            if finished.interrupted:
                why = (
                    "was cut off by Tickler stopping while it ran (not the agent's fault), "
                    "and the agent may have received it"
                )
            else:
                why = "timed out after the agent may have received it"
            text = (
                f"❓ <b>{esc(schedule.name)}</b>: the run for "
                f"{local(run.scheduled_for, zone_of(schedule))} {why}. Did it do the work?"
            )
            markup = keyboard(
                [
                    ("Retry", callbacks.make("r", "retry", run.id)),
                    ("Mark done", callbacks.make("r", "done", run.id)),
                    ("Drop", callbacks.make("r", "drop", run.id)),
                ]
            )
            await self.notify(
                schedule.chat_id, text, markup, kind="alert", run_id=run.id, schedule_id=schedule.id
            )

        for waiting in finished.then:
            if waiting.status is RunStatus.AWAITING_APPROVAL:
                # The plan's next step waits for an operator's Approve/Skip.
                await self._ask_approval(schedule, waiting)

    async def _plan_stopped(self, finished: FinishedAttempt) -> None:
        """The one message of a plan stopped by a failed step: which step failed, why,
        and which steps were skipped, with [Retry] (the step; its success resumes the
        plan) and [History]."""
        run, schedule = finished.run, finished.schedule
        skipped = [r for r in finished.then if r.status is RunStatus.SKIPPED]
        names = ", ".join(step_of(r, schedule) or "a step" for r in skipped)
        attempts = f"{run.attempt} attempt{'s' if run.attempt != 1 else ''}"
        text = (
            f"❌ <b>{esc(schedule.name)}</b>: the plan run for "
            f"{local(run.scheduled_for, zone_of(schedule))} stopped at "
            f"{step_of(run, schedule)}, which failed after {attempts}: "
            f"{esc(run.error or 'unknown error')}{_link_line(run)}\n"
            f"Skipped: {names}. Retry runs the failed step again; if it succeeds, the plan "
            "goes on."
        )
        markup = keyboard(
            [
                ("Retry", callbacks.make("r", "retry", run.id)),
                ("History", callbacks.make("s", "hist", schedule.id)),
            ]
        )
        await self.notify(
            schedule.chat_id, text, markup, kind="alert", run_id=run.id, schedule_id=schedule.id
        )

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
        await self.notify(
            schedule.chat_id,
            text,
            markup,
            kind="tripped",
            run_id=finished.run.id,
            schedule_id=schedule.id,
        )

    async def schedule_quarantined(self, broken: UnreadableSchedule) -> None:
        # No buttons: the schedule cannot be read, so neither resumed nor run from here.
        text = f"⚠️ {esc(str(broken))} The other schedules go on firing."
        await self.notify(broken.chat_id, text, kind="alert", schedule_id=broken.schedule_id)

    async def schedule_over_budget(self, paused: BudgetPause) -> None:
        text, markup = budget_notice(paused)
        schedule = paused.schedule
        await self.notify(
            schedule.chat_id,
            text,
            markup,
            kind="budget",
            run_id=paused.run.id,
            schedule_id=schedule.id,
        )

    async def fires_missed(self, plan: FirePlan) -> None:
        if plan.first_missed is None or plan.last_missed is None:
            return
        schedule = await self.store.schedules.get(plan.chat_id, plan.schedule_id)
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
        await self.notify(schedule.chat_id, text, markup, kind="missed", schedule_id=schedule.id)

    async def runs_awaiting_approval(self, plan: FirePlan) -> None:
        """One message per waiting run: "<name> wants to run for <time>: approve?"."""
        waiting = {f.scheduled_for for f in plan.fires if f.status is RunStatus.AWAITING_APPROVAL}
        schedule = await self.store.schedules.get(plan.chat_id, plan.schedule_id)
        if schedule is None or not waiting:
            return
        runs = await self.store.runs.list_for_chat(
            plan.chat_id,
            schedule_id=schedule.id,
            statuses=[RunStatus.AWAITING_APPROVAL],
            limit=_APPROVALS_SHOWN * 4,
        )
        asking = sorted(
            (r for r in runs if r.scheduled_for in waiting), key=lambda r: r.scheduled_for
        )
        for run in asking[-_APPROVALS_SHOWN:]:
            await self._ask_approval(schedule, run)

    async def _ask_approval(self, schedule: Schedule, run: Run) -> None:
        """The Approve/Skip card of one run waiting for approval."""
        text, markup = run_approval(schedule, run, zone_of(schedule))
        await self.notify(
            schedule.chat_id, text, markup, kind="approval", run_id=run.id, schedule_id=schedule.id
        )

    async def runs_asked(self, runs: list[Run]) -> None:
        """The Approve/Skip card of each run an event made that waits for approval."""
        for run in runs:
            schedule = await self.store.schedules.get(run.chat_id, run.schedule_id)
            if schedule is None:
                continue
            await self._ask_approval(schedule, run)

    # --- runs sent to an agent that answers the chat itself (telegram mode) ----------------
    @property
    def _agent_answers_itself(self) -> bool:
        return self.settings.agent_mode == "telegram"

    async def follow_sent_run(self, chat_id: int, message_id: int, text: str, run_id: str) -> None:
        """Note the message that said a run is on its way to the agent (/runnow), so its
        outcome is added to it when the run ends; if it ended already, add it now."""
        await self.outbox.record_sent(chat_id, text, message_id, kind="run_sent", run_id=run_id)
        await self.confirm_sent_run(chat_id, run_id)

    async def confirm_sent_run(self, chat_id: int, run_id: str) -> None:
        """Edit the run's "sending to your agent" message to say how the run went
        (delivered, failed, retrying); nothing while it is still on its way."""
        async with self._confirming:
            shown = await self.store.outbox.sent_run_message(chat_id, run_id)
            run = await self.store.runs.get(chat_id, run_id)
            if shown is None or shown.message_id is None or run is None:
                return
            schedule = await self.store.schedules.get(chat_id, run.schedule_id)
            line = sent_run_outcome(run, zone_of(schedule) if schedule else "UTC")
            if line is None:
                return
            try:
                await self.bot.edit_message_text(
                    f"{shown.text}\n{line}",
                    chat_id=chat_id,
                    message_id=shown.message_id,
                    parse_mode=ParseMode.HTML,
                )
            except TelegramError as exc:
                if "not modified" in exc.message.lower():
                    return  # the other of the two confirmations got there first
                # A courtesy: the run is in the ledger, and a failure has its own alert.
                log.warning(
                    "could not confirm a run's delivery in its message: %s",
                    exc.message,
                    extra={"chat_id": chat_id, "run_id": run_id},
                )

    # --- proposals (ProposalService's on_proposal, and the expiry sweep) -------------------
    async def proposal_made(self, proposal: Proposal, decision: RiskDecision) -> None:
        """Tell the chat what the agent proposed and what will happen, with its buttons."""
        try:
            text = proposal_message(proposal, decision, now=self.clock.now())
        except Exception:
            # Its buttons are the only way to approve or undo it: send them with a
            # plainer text rather than nothing, and leave the cause in the log.
            log.exception(
                "could not render the proposal's message; announcing it in short",
                extra={"proposal_id": proposal.id, "chat_id": proposal.chat_id},
            )
            text = proposal_fallback(proposal)
        markup = proposal_keyboard(proposal)
        await self.notify(proposal.chat_id, text, markup, kind="proposal", proposal_id=proposal.id)

    async def proposal_expired(self, proposal: Proposal) -> None:
        """Edit the proposal's message (its buttons go), or say so in a new one."""
        shown = await self.store.outbox.sent_proposal_message(proposal.chat_id, proposal.id)
        if shown is not None and shown.message_id is not None:
            try:
                await self.bot.edit_message_text(
                    f"{shown.text}\n\n{expired_line(proposal)}",
                    chat_id=proposal.chat_id,
                    message_id=shown.message_id,
                    parse_mode=ParseMode.HTML,
                )
                return
            except TelegramError:
                log.info(
                    "could not edit the proposal's message; sending a note",
                    extra={"proposal_id": proposal.id, "chat_id": proposal.chat_id},
                )
        await self.notify(
            proposal.chat_id, expired_note(proposal), kind="notice", proposal_id=proposal.id
        )

    # --- the database (SqliteStore.on_write_health) -----------------------------------------
    def database_health_changed(self, failure: str | None) -> None:
        """Tell the admins when the database stops taking writes (at most once per
        ALERT_INTERVAL), and when it takes them again if they were told it stopped."""
        admins = self.settings.admin_ids
        if failure is not None:
            if not self.outbox.sending and not self.outbox.has_led:
                # With replicas: one alert, from the one that sends (or last sent: the
                # database's outage may have cost it the lease), not one from each.
                return
            if not self._may_alert("database"):
                return
            self._database_alerted = True
            text = (
                f"⚠️ Tickler cannot write its database. {esc(failure)} Due runs wait and "
                "none are lost; /healthz reports it until it is fixed."
            )
            # Straight to Telegram: the outbox is in the database that cannot be written.
            for chat_id in admins:
                self._spawn(self._send_directly(chat_id, text))
        elif self._database_alerted:
            self._database_alerted = False
            text = "✅ The database takes writes again; the runs that waited go out now."
            for chat_id in admins:
                self._spawn(self.notify(chat_id, text, kind="notice"))

    # --- the engine's ReminderSender protocol ---------------------------------------------
    async def send_reminder(self, chat_id: int, text: str) -> None:
        # A reminder is a run: its own retries (and the ledger) cover a failed send, and
        # waiting out a long outage here would hold a dispatch slot; a reminder not sent
        # within its patience is given up in the outbox, so the retry is the only copy.
        delivered = await self.outbox.put_and_wait(
            chat_id, f"🔔 {esc(text)}", kind="reminder", patience=_REMINDER_PATIENCE
        )
        if not delivered:
            raise DispatchError("The reminder could not be delivered to the chat.", uncertain=False)

    # --- delivery ----------------------------------------------------------------------
    async def notify(
        self,
        chat_id: int,
        text: str,
        markup: InlineKeyboardMarkup | None = None,
        *,
        kind: str,
        run_id: str | None = None,
        schedule_id: str | None = None,
        proposal_id: str | None = None,
        item_id: str | None = None,
    ) -> None:
        """Queue one HTML message in the outbox; it is sent as soon as Telegram takes it
        (after a restart if need be)."""
        await self.outbox.put(
            chat_id,
            text,
            markup,
            kind=kind,
            run_id=run_id,
            schedule_id=schedule_id,
            proposal_id=proposal_id,
            item_id=item_id,
        )

    async def _send_directly(self, chat_id: int, text: str) -> None:
        """One message outside the outbox, retried for up to `_DIRECT_PATIENCE`."""
        give_up = time.monotonic() + _DIRECT_PATIENCE
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML)
                return
            except BadRequest:
                raise  # not worth retrying: _spawn logs it
            except RetryAfter as exc:
                wait = exc.retry_after.total_seconds()  # type: ignore[union-attr]
            except NetworkError:
                wait = network_backoff(attempt)
            if time.monotonic() + wait > give_up:
                log.error(
                    "gave up telling an admin the database cannot be written",
                    extra={"chat_id": chat_id},
                )
                return
            await asyncio.sleep(wait)

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

    async def drain(self, timeout: float = 5.0) -> int:
        """Wait up to `timeout` for the background sends (alerts); how many still wait."""
        if not self._tasks:
            return 0
        _, waiting = await asyncio.wait(set(self._tasks), timeout=timeout)
        return len(waiting)


def _reported(run: Run) -> bool:
    """Whether the agent reported this run's result asynchronously."""
    return not (run.summary is None and run.outputs_url is None and run.log_excerpt is None)


def _link_line(run: Run) -> str:
    return f"\n🔗 {esc(run.outputs_url)}" if run.outputs_url else ""


def result_text(run: Run, name: str) -> str:
    """The chat message for an agent's asynchronous result: the outcome, its summary
    and its link (the log excerpt stays in the run's detail)."""
    if run.status is RunStatus.SUCCEEDED:
        head = f"✅ <b>{esc(name)}</b>: the agent reported its result."
    else:
        head = f"⚠️ <b>{esc(name)}</b>: the agent reported a failure; it will be retried."
    summary = f"\n{esc(run.summary)}" if run.summary else ""
    return head + summary + _link_line(run)
