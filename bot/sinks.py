"""Delivering notices to a chat's sinks (scheduler/sinks.py; docs/notification-sinks.md).

The notices are written to `sink_deliveries` in the same transaction as the chat's own
message (storage/sinks.py), so none is lost to a crash. `SinkCourier` sends them: one
task per sink, oldest first; a failed attempt keeps the notice at the head of its sink's
queue and retries it with exponential backoff (capped at `BACKOFF_CAP`), so a receiver
that was down gets every notice afterwards, in order, once each. A sink failing for
`DEAD_AFTER` is marked dead and the chat told once. The chat's own delivery
(bot/outbox.py) never waits for a sink.

Secrets: a webhook's HMAC key and a Slack URL are never logged; a failed attempt is
recorded as its HTTP status or the exception's class, never its message (which may
quote the URL).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

import aiohttp

from bot.redact import remember
from bot.settings import Settings
from bot.sweeps import sweep_forever
from scheduler.clock import Clock
from scheduler.sinks import DEAD_AFTER, EVENTS, Delivery, Sink, SinkKind
from scheduler.stores import Stores

__all__ = [
    "BACKOFF_CAP",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SinkCourier",
    "SmtpConfig",
    "chat_link",
    "deliver_to_sinks_forever",
    "sign",
    "smtp_config",
    "subject_of",
]

log = logging.getLogger("tickler.sinks")

TIMESTAMP_HEADER = "X-Tickler-Timestamp"
SIGNATURE_HEADER = "X-Tickler-Signature"
BACKOFF_CAP = timedelta(minutes=5)
_FIRST_BACKOFF = 2.0
#: How often the queue is looked at when nothing woke the loop.
_POLL = timedelta(seconds=2)
_TIMEOUT = aiohttp.ClientTimeout(total=20)
#: Short names of the events, for a subject line.
_TITLES = {
    "approval": "awaiting approval",
    "failed": "run failed",
    "tripped": "breaker tripped",
    "proposal": "proposal pending",
    "automation": "automation failure",
    "result": "run result",
}


class SinkError(Exception):
    """A delivery attempt failed; the message is safe to store and log."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    starttls: bool = True


def smtp_config(settings: Settings) -> SmtpConfig | None:
    if not settings.smtp_host:
        return None
    password = settings.smtp_password
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_from,
        username=settings.smtp_username,
        password=None if password is None else password.get_secret_value(),
        starttls=settings.smtp_starttls,
    )


def chat_link(chat_id: int, bot_username: str | None) -> str | None:
    """A link back to the chat: a supergroup's or channel's t.me/c/ address (members
    open it), or the bot's own chat for a private one."""
    text = str(chat_id)
    if text.startswith("-100"):
        return f"https://t.me/c/{text[4:]}"
    if chat_id > 0 and bot_username:
        return f"https://t.me/{bot_username}"
    return None


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Tickler-Signature` value: HMAC-SHA256 of "{timestamp}.{body}"."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def subject_of(d: Delivery) -> str:
    what = _TITLES.get(d.event, d.event)
    return f"Tickler: {what} — {d.schedule_name}" if d.schedule_name else f"Tickler: {what}"


def payload_of(d: Delivery, link: str | None) -> dict[str, object]:
    body: dict[str, object] = {
        "id": d.notification_id,
        "chat_id": d.chat_id,
        "event": d.event,
        "text": d.text,
        "schedule_id": d.schedule_id,
        "schedule_name": d.schedule_name,
        "run_id": d.run_id,
        "created_at": d.created_at.isoformat().replace("+00:00", "Z"),
    }
    if link:
        body["link"] = link
    return body


def slack_blocks(d: Delivery, link: str | None) -> dict[str, object]:
    """A Block Kit message with the same facts as the webhook's body."""
    facts = [f"*Event:* {EVENTS.get(d.event, d.event)}"]
    if d.schedule_name:
        facts.append(f"*Schedule:* {_slack_escape(d.schedule_name)}")
    if d.run_id:
        facts.append(f"*Run:* `{d.run_id}`")
    blocks: list[dict[str, object]] = [
        {"type": "header", "text": {"type": "plain_text", "text": subject_of(d)[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(d.text)[:2900]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]},
    ]
    if link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in Telegram"},
                        "url": link,
                    }
                ],
            }
        )
    # The fallback text (notifications) is mrkdwn too; the header is plain_text.
    return {"text": _slack_escape(subject_of(d)), "blocks": blocks}


#: The threads SMTP exchanges run on, apart from the event loop's default executor.
_MAILERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tickler-smtp")
#: Seconds one e-mail may take in all (smtplib's own timeout is per socket operation).
_MAIL_DEADLINE = 120.0


class SinkCourier:
    """Sends the sinks' queues (see the module docstring)."""

    def __init__(
        self,
        store: Stores,
        clock: Clock,
        *,
        tell_chat: Callable[[int, str], Awaitable[None]],
        smtp: SmtpConfig | None = None,
        link: Callable[[Delivery], str | None] = lambda d: None,
        may_send: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        self.clock = clock
        self._tell_chat = tell_chat
        self._smtp = smtp
        self._link = link
        self._may_send = may_send
        self._session: aiohttp.ClientSession | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        self.wake = asyncio.Event()

    async def sweep(self, now: datetime) -> datetime | None:
        """Start a task for each sink whose head is due; when to look next."""
        wanted = now + _POLL
        if not self._may_send():
            # One replica sends (the Telegram leader, as for the chat's outbox): two
            # would send a sink's notices twice and out of order.
            return wanted
        for head in await self.store.sinks.heads():
            if head.next_attempt_at is not None and head.next_attempt_at > now:
                wanted = min(wanted, head.next_attempt_at)
                continue
            running = self._running.get(head.sink_id)
            if running is None or running.done():
                self._running[head.sink_id] = asyncio.create_task(
                    self._drain(head.sink_id), name=f"sink {head.sink_id}"
                )
        return wanted

    async def _drain(self, sink_id: str) -> None:
        """Send the sink's due notices in order; stop at the first failure."""
        sink = await self.store.sinks.get(sink_id)
        if sink is None:
            return
        remember([sink.secret])
        for d in await self.store.sinks.pending_for(sink_id):
            now = self.clock.now()
            if d.next_attempt_at is not None and d.next_attempt_at > now:
                return
            try:
                await self._send(sink, d)
            except SinkError as exc:
                await self._failed(sink, d, str(exc))
                return
            except Exception as exc:
                await self._failed(sink, d, type(exc).__name__)
                return
            await self.store.sinks.delivered(sink_id, d.notification_id, self.clock.now())

    async def _failed(self, sink: Sink, d: Delivery, error: str) -> None:
        now = self.clock.now()
        wait = min(BACKOFF_CAP.total_seconds(), _FIRST_BACKOFF * 2.0**d.attempts)
        since = await self.store.sinks.failed(
            sink.id, d.notification_id, error, now + timedelta(seconds=wait), now
        )
        log.warning(
            "a notice for a %s sink was not delivered (%s); retrying in %.0f s",
            sink.kind.value,
            error,
            wait,
            extra={"sink": sink.id, "chat_id": sink.chat_id},
        )
        if now - since >= DEAD_AFTER and await self.store.sinks.mark_dead(sink.id, error):
            await self._tell_chat(
                sink.chat_id,
                f"⚠️ The {sink.kind.value} sink {sink.id} ({sink.target}) failed for "
                f"{DEAD_AFTER.total_seconds() / 3600:.0f} hours ({error}) and is now marked dead: "
                "it gets no more notices. /sinks lists it; remove it and add it again once "
                "it works.",
            )

    async def _send(self, sink: Sink, d: Delivery) -> None:
        if sink.kind is not SinkKind.EMAIL and not sink.secret:
            # Imported from an export for people, which leaves secrets out.
            raise SinkError("no secret (imported): remove the sink and add it again")
        link = self._link(d)
        if sink.kind is SinkKind.EMAIL:
            await self._mail(sink, d, link)
            return
        if sink.kind is SinkKind.SLACK:
            body = json.dumps(slack_blocks(d, link), ensure_ascii=False).encode()
            await self._post(sink.secret or "", body, {"Content-Type": "application/json"})
            return
        body = json.dumps(payload_of(d, link), ensure_ascii=False, sort_keys=True).encode()
        timestamp = int(self.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(sink.secret or "", timestamp, body),
        }
        await self._post(sink.target, body, headers)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                if response.status >= 300:
                    raise SinkError(f"HTTP {response.status}")
        except aiohttp.ClientError as exc:
            raise SinkError(type(exc).__name__) from None
        except TimeoutError:
            raise SinkError("timed out") from None

    async def _mail(self, sink: Sink, d: Delivery, link: str | None) -> None:
        smtp = self._smtp
        if smtp is None:
            raise SinkError("SMTP_HOST is not set")
        message = EmailMessage()
        message["Subject"] = subject_of(d)
        message["From"] = smtp.sender
        message["To"] = sink.target
        message["Message-ID"] = f"<{d.notification_id}.{sink.id}@tickler>"
        lines = [d.text, ""]
        if d.schedule_name:
            lines.append(f"Schedule: {d.schedule_name}")
        if d.run_id:
            lines.append(f"Run: {d.run_id}")
        if link:
            lines.append(f"Open: {link}")
        message.set_content("\n".join(lines) + "\n")
        loop = asyncio.get_running_loop()
        try:
            # Threads of their own, and a deadline on the whole exchange: a stalling
            # server must not hold the loop's shared executor (DNS for every dispatch).
            async with asyncio.timeout(_MAIL_DEADLINE):
                await loop.run_in_executor(_MAILERS, _send_mail, smtp, message)
        except TimeoutError:
            raise SinkError("TimeoutError") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise SinkError(type(exc).__name__) from None

    async def close(self) -> None:
        for task in self._running.values():
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)
        self._running.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _tls_context() -> ssl.SSLContext:
    """STARTTLS verifies the server against the system's authorities (tests trust theirs)."""
    return ssl.create_default_context()


def _send_mail(smtp: SmtpConfig, message: EmailMessage) -> None:
    with smtplib.SMTP(smtp.host, smtp.port, timeout=30) as client:
        if smtp.starttls:
            client.starttls(context=_tls_context())
        if smtp.username:
            client.login(smtp.username, smtp.password or "")
        client.send_message(message)


async def deliver_to_sinks_forever(courier: SinkCourier) -> None:
    """Until cancelled: send what the sinks have due (see `SinkCourier`)."""
    try:
        await sweep_forever(
            courier.sweep, courier.clock, what="delivering to sinks", wake=courier.wake
        )
    finally:
        await courier.close()


def _slack_escape(text: str) -> str:
    """Text as Slack's mrkdwn shows it literally: an agent's answer or a schedule's name
    with `<!channel>` or `<https://x|a label>` must not ping a channel or hide a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
