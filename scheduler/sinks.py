"""Notification sinks: where a chat's notices go besides the chat (docs/notification-sinks.md).

A sink is an outgoing webhook (JSON signed with HMAC-SHA256), a Slack incoming webhook
or an e-mail address, configured per chat with the events it takes. Each notice the chat
gets that maps to one of a sink's events is written for the sink in the same transaction
as the chat's own (storage/sinks.py), and bot/sinks.py delivers it, in order per sink,
retrying with backoff; a sink that fails for `DEAD_AFTER` is marked dead and the chat is
told once. This module is the pure part: the events, the rules of a sink's settings and
the service that validates them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlsplit

from scheduler.errors import TicklerError
from scheduler.ids import new_id

__all__ = [
    "DEAD_AFTER",
    "DEFAULT_EVENTS",
    "EVENTS",
    "MAX_SINKS",
    "AddedSink",
    "Delivery",
    "InvalidSink",
    "Sink",
    "SinkKind",
    "SinkRepository",
    "SinkService",
    "SinkStatus",
    "event_of",
    "parse_events",
    "shown_target",
]


class InvalidSink(TicklerError, ValueError):
    """A sink's settings are not acceptable (one sentence for the operator)."""


class SinkKind(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"
    EMAIL = "email"


class SinkStatus(StrEnum):
    ACTIVE = "active"
    DEAD = "dead"


#: The events a sink may take, and what each means (for /sinks and the docs).
EVENTS: dict[str, str] = {
    "approval": "a run or step awaits approval",
    "failed": "a run failed, died or ended unknown",
    "tripped": "a schedule's breaker tripped",
    "proposal": "an agent's proposal is pending",
    "automation": "an automation (a bundle) failed",
    "result": "a run's result",
}
#: What a sink takes when added without a list: everything that needs a person.
DEFAULT_EVENTS: tuple[str, ...] = ("approval", "failed", "tripped", "proposal", "automation")
#: The chat's notification kinds (scheduler.repositories.Notification.kind) each event is.
_KIND_EVENTS = {
    "approval": "approval",
    "alert": "failed",
    "tripped": "tripped",
    "proposal": "proposal",
    "automation": "automation",
    "run_answer": "result",
}
#: A sink failing this long (every retry in between failed) is marked dead.
DEAD_AFTER = timedelta(hours=6)
MAX_SINKS = 10
_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")


def event_of(kind: str) -> str | None:
    """The sink event a chat notice of `kind` is, or None (a notice no sink takes)."""
    return _KIND_EVENTS.get(kind)


def parse_events(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """The events named in `text` ("failed,approval" or a list), in the order of
    `EVENTS`; the defaults when none is given; `all` for every one."""
    if text is None:
        return DEFAULT_EVENTS
    names = text.replace(" ", ",").split(",") if isinstance(text, str) else list(text)
    wanted = {n.strip().lower() for n in names if n and n.strip()}
    if not wanted:
        return DEFAULT_EVENTS
    if wanted == {"all"}:
        return tuple(EVENTS)
    unknown = sorted(wanted - set(EVENTS))
    if unknown:
        # Not echoed: a secret typed where the events go would be shown back to the chat.
        raise InvalidSink(f"Unknown event name: the events are {', '.join(EVENTS)} (or all).")
    return tuple(e for e in EVENTS if e in wanted)


@dataclass(frozen=True)
class Sink:
    id: str
    chat_id: int
    kind: SinkKind
    #: The webhook's URL, the Slack webhook shown without its secret path, or the address.
    target: str
    events: tuple[str, ...]
    created_at: datetime
    status: SinkStatus = SinkStatus.ACTIVE
    #: The webhook's HMAC key or the Slack URL: never shown again, logged or exported.
    secret: str | None = None
    failing_since: datetime | None = None
    last_error: str | None = None
    created_by: int | None = None


def shown_target(kind: SinkKind, target: str) -> str:
    """What may be shown of a sink's target: a Slack webhook's path is its credential."""
    if kind is SinkKind.SLACK:
        parts = urlsplit(target)
        return f"{parts.scheme}://{parts.netloc}/…"
    return target


@dataclass(frozen=True)
class Delivery:
    """One notice for one sink (a row of sink_deliveries)."""

    sink_id: str
    notification_id: str
    chat_id: int
    event: str
    text: str
    schedule_id: str | None
    schedule_name: str | None
    run_id: str | None
    created_at: datetime
    attempts: int
    next_attempt_at: datetime | None


class SinkRepository(Protocol):
    async def add(self, sink: Sink) -> bool:
        """Store a new sink; False when the chat has `MAX_SINKS` already."""

    async def list_for_chat(self, chat_id: int) -> list[Sink]: ...

    async def remove(self, chat_id: int, sink_id: str) -> bool:
        """Delete the sink and its undelivered notices; False if the chat has no such sink."""

    async def set_events(self, chat_id: int, sink_id: str, events: Sequence[str]) -> bool: ...

    async def get(self, sink_id: str) -> Sink | None: ...

    # The delivery loop's queue (bot/sinks.py).
    async def heads(self) -> list[Delivery]:
        """The oldest pending notice of each active sink (only a head may be sent)."""

    async def pending_for(self, sink_id: str) -> list[Delivery]: ...

    async def delivered(self, sink_id: str, notification_id: str, now: datetime) -> None: ...

    async def failed(
        self,
        sink_id: str,
        notification_id: str,
        error: str,
        next_attempt_at: datetime,
        now: datetime,
    ) -> datetime:
        """Record a failed attempt; returns since when the sink has been failing."""

    async def mark_dead(self, sink_id: str, error: str) -> bool:
        """Mark the sink dead; True only the once it died (the chat is told then)."""


@dataclass(frozen=True)
class AddedSink:
    sink: Sink
    #: The webhook secret Tickler made, to be shown this once; None when it was given.
    new_secret: str | None


class SinkService:
    """The rules of a chat's sinks; handlers and the HTTP API call these only.
    `make_secret` makes a webhook's HMAC key (the core draws no randomness itself)."""

    def __init__(
        self,
        sinks: SinkRepository,
        now: Callable[[], datetime],
        make_secret: Callable[[], str],
    ) -> None:
        self._sinks = sinks
        self._now = now
        self._make_secret = make_secret

    async def list(self, chat_id: int) -> list[Sink]:
        return await self._sinks.list_for_chat(chat_id)

    async def add(
        self,
        chat_id: int,
        kind: str,
        target: str,
        *,
        events: str | Sequence[str] | None = None,
        secret: str | None = None,
        created_by: int | None = None,
    ) -> AddedSink:
        try:
            sink_kind = SinkKind(kind.strip().lower())
        except ValueError:
            raise InvalidSink(
                f"A sink is a webhook, slack or email, not {kind.strip()[:40]!r}."
            ) from None
        target = target.strip()
        chosen = parse_events(events)
        made: str | None = None
        stored_secret: str | None
        if sink_kind is SinkKind.EMAIL:
            if not _EMAIL.match(target) or len(target) > 254:
                raise InvalidSink(f"{target[:80]!r} is not an e-mail address.")
            if secret:
                raise InvalidSink("An e-mail sink has no secret: the SMTP login is Tickler's.")
            stored_secret, shown = None, target
        else:
            _check_url(target, sink_kind)
            if sink_kind is SinkKind.SLACK:
                if secret:
                    raise InvalidSink("A Slack webhook's secret is its URL: give no other.")
                stored_secret, shown = target, shown_target(sink_kind, target)
            else:
                if secret is not None and len(secret.strip()) < 16:
                    raise InvalidSink("A webhook secret has at least 16 characters.")
                made = None if secret else self._make_secret()
                stored_secret, shown = (secret.strip() if secret else made), target
        sink = Sink(
            id=new_id(),
            chat_id=chat_id,
            kind=sink_kind,
            target=shown,
            events=chosen,
            created_at=self._now(),
            secret=stored_secret,
            created_by=created_by,
        )
        if not await self._sinks.add(sink):
            raise InvalidSink(f"A chat has at most {MAX_SINKS} sinks; remove one first.")
        return AddedSink(sink, made)

    async def remove(self, chat_id: int, sink_id: str) -> None:
        if not await self._sinks.remove(chat_id, sink_id.strip()):
            raise InvalidSink(f"This chat has no sink {sink_id.strip()[:40]!r}.")

    async def set_events(self, chat_id: int, sink_id: str, events: str | Sequence[str]) -> None:
        chosen = parse_events(events)
        if not await self._sinks.set_events(chat_id, sink_id.strip(), chosen):
            raise InvalidSink(f"This chat has no sink {sink_id.strip()[:40]!r}.")


def _check_url(url: str, kind: SinkKind) -> None:
    try:
        parts = urlsplit(url)
        login = parts.username is not None or parts.password is not None
    except ValueError:
        raise InvalidSink(f"A {kind.value} sink needs an http(s) URL.") from None
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2000:
        raise InvalidSink(f"A {kind.value} sink needs an http(s) URL.")
    if login:
        # A URL is shown in /sinks and exported; a credential belongs in the secret.
        raise InvalidSink(
            f"A {kind.value} sink's URL may not carry a user or password; give the "
            "credential as the sink's secret instead."
        )
