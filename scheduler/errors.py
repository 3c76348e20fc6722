"""Errors the scheduler raises, each carrying one sentence an operator can act on.

    TicklerError
     ├── InvalidSchedule (ValueError)    bad cron, zone, interval, prompt, instant, policy
     │    └── UnreadableSchedule         a stored schedule that cannot be decoded
     ├── ScheduleNotFound (LookupError)  no such schedule in this chat
     ├── RunNotFound (LookupError)       no such run in this chat
     ├── ProposalNotFound (LookupError)  no such proposal in this chat
     └── InvalidState (RuntimeError)     the request does not fit the current state
                                         (resume a schedule that is not paused, retry a
                                         run that is not dead, ...)

`str(error)` is the user-facing sentence; handlers show it as is. An InvalidSchedule
also names the part of the definition it is about (`field`, as the HTTP API's request
body spells it: "name", "trigger.cron", "action.text", "policies.retry.cap_seconds",
...), set where the check is made; None when no one part is at fault (a chat limit).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "AdminOnly",
    "InvalidSchedule",
    "InvalidState",
    "ProposalNotFound",
    "RunNotFound",
    "ScheduleNotFound",
    "TicklerError",
    "UnreadableSchedule",
    "about",
    "shown",
]


class TicklerError(Exception):
    """Base of every error whose message is meant for the operator."""


class InvalidSchedule(TicklerError, ValueError):
    """The schedule definition (or part of it) is not acceptable."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        #: The part of the definition at fault, dotted ("trigger.timezone"); None when
        #: no single part is (a chat limit).
        self.field = field


@contextmanager
def about(field: str) -> Iterator[None]:
    """An InvalidSchedule raised inside is about `field`, unless it names a part already
    (a check deeper down knew better)."""
    try:
        yield
    except InvalidSchedule as exc:
        if exc.field is None:
            exc.field = field
        raise


class UnreadableSchedule(InvalidSchedule):
    """A stored schedule row that cannot be decoded (written around Tickler's checks:
    by hand, or by an import that let it through). It is paused and left alone."""

    def __init__(self, schedule_id: str, chat_id: int, name: str, reason: str) -> None:
        self.schedule_id = schedule_id
        self.chat_id = chat_id
        self.name = name
        #: What is wrong with it, as a sentence.
        self.reason = reason
        super().__init__(
            f"Schedule '{shown(name)}' ({schedule_id}) cannot be read: {reason} It is paused "
            "and will not fire until its stored definition is fixed."
        )


class ScheduleNotFound(TicklerError, LookupError):
    """No schedule with that id exists in the caller's chat."""


class RunNotFound(TicklerError, LookupError):
    """No run with that id exists in the caller's chat."""


class ProposalNotFound(TicklerError, LookupError):
    """No proposal with that id exists in the caller's chat."""


class InvalidState(TicklerError, RuntimeError):
    """The operation is valid in general but not for the object's current state."""


class AdminOnly(InvalidState):
    """Only an admin may do this, and the one asking is not one."""


def shown(text: str, limit: int = 40) -> str:
    """User input as a refusal quotes it: on one line and at most `limit` characters,
    so echoing a 10 KB argument back cannot make the sentence unreadable or too long
    for a Telegram message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
