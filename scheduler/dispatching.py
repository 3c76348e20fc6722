"""What the engine hands the agent side, and what it gets back: the core's half of
dispatch. The HTTP half (wire formats, transports, how a transport error is classified)
is `adapters/agent_dispatch.py`.

The engine hands a `DispatchRequest` to a `Dispatcher` and gets back a `DispatchResult`
or a `DispatchError`. The error says, through `uncertain`, whether the agent may have
received the request: that decides between a blind retry and asking the operator
(SPEC "Run": a timeout after the request reached the agent leaves the outcome uncertain).
Every delivery of one fire carries the same `Idempotency-Key`
(`{schedule_id}:{scheduled_for}`), so an agent can drop a retried one.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, field_validator

__all__ = [
    "DispatchError",
    "DispatchRequest",
    "DispatchResult",
    "Dispatcher",
    "Operator",
    "format_instant",
    "idempotency_key",
    "synthetic_update_id",
]


class Operator(BaseModel):
    """The person who owns the schedule; appears as `from` of the synthetic message."""

    model_config = ConfigDict(frozen=True)

    id: int
    first_name: str = "Operator"
    username: str | None = None


class DispatchRequest(BaseModel):
    """One attempt's worth of work for the agent: which run, for whom, what to say."""

    model_config = ConfigDict(frozen=True)

    schedule_id: str
    run_id: str
    scheduled_for: AwareDatetime
    chat_id: int
    operator: Operator
    schedule_name: str
    prompt: str
    timezone: str
    #: A plan run's step (0-based; `scheduled_for` is then the plan's fire instant): each
    #: step is a delivery of its own, with a key of its own.
    step: int | None = None
    #: The model the schedule pins (`Policies.model`); None: the agent's configured one.
    model: str | None = None

    @field_validator("scheduled_for")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        # The key must not depend on which offset the caller happened to use.
        return value.astimezone(UTC)

    @property
    def idempotency_key(self) -> str:
        """`{schedule_id}:{scheduled_for}` as in SPEC, e.g. `01JD...:2026-11-24T07:00:00Z`.

        Fire instants of cron and interval triggers are whole seconds. Manual runs use
        the moment the operator pressed the button, so microseconds are kept when present:
        two quick "run now" presses must not share a key. A plan's step adds
        `#step-N` (1-based): `01JD...:2026-11-24T07:00:00Z#step-2`.
        """
        return idempotency_key(self.schedule_id, self.scheduled_for, self.step)


class DispatchResult(BaseModel):
    """A delivery the agent accepted (2xx)."""

    model_config = ConfigDict(frozen=True)

    status_code: int
    #: The agent's answer (first 4000 characters); None in `telegram` mode, where the
    #: agent answers in the chat itself, or when an `openai` answer had no text.
    output: str | None = None
    #: `prompt_tokens`, `completion_tokens`, `total_tokens` when the agent reported them.
    token_usage: dict[str, int] | None = None
    #: `openai` mode: the tool calls of the answer, as the agent sent them
    #: (`[{"id": ..., "type": "function", "function": {"name": ..., "arguments": "{...}"}}]`).
    tool_calls: list[dict[str, Any]] | None = None

    @property
    def deferred(self) -> bool:
        """The agent answered 202 Accepted: it will report the result later
        (docs/agent-protocol.md, "Answering later"), so the run waits for it."""
        return self.status_code == 202


class DispatchError(Exception):
    """The delivery failed; `str(error)` is one plain sentence, free of secrets and URLs.

    `uncertain` is True when the request may have reached the agent (a read timeout or a
    dropped connection after sending), so the agent may have acted on it. It is False
    when the request certainly did not get through (refused, DNS, connect timeout) and
    also when the agent answered: with an error status, or with a 2xx whose body is not
    a valid chat completion. In that last case the agent did receive the request, but
    the outcome is known (a bad answer), not unknown, so it is an ordinary failure.

    `status_code` is the HTTP status the agent answered with, when it answered at all.
    """

    def __init__(self, message: str, *, uncertain: bool, status_code: int | None = None) -> None:
        super().__init__(message)
        self.uncertain = uncertain
        self.status_code = status_code


class Dispatcher(Protocol):
    """What the engine needs from the agent side (adapters/agent_dispatch.py sends over
    HTTP; tests pass any fake). Transport errors are classified by the dispatcher, once:
    the engine sees only `DispatchError`."""

    @property
    def limits_own_time(self) -> bool:
        """True when `dispatch` ends within its `timeout` (plus a moment) whatever the
        agent does, under a deadline of its own: the engine then adds no second deadline
        around an agent run (one per run is pure cost). False makes the engine wrap each
        attempt in `asyncio.timeout(timeout + 1)`. Read once, when the engine is built."""
        ...

    # The timeout is a parameter, not the caller's asyncio.timeout(): a dispatcher maps
    # it onto the HTTP phases, which is how it can tell "never sent" from "maybe acted".
    async def dispatch(
        self,
        request: DispatchRequest,
        *,
        timeout: float,
    ) -> DispatchResult:
        """Deliver one attempt within `timeout` seconds, or raise `DispatchError`."""
        ...


def idempotency_key(schedule_id: str, scheduled_for: datetime, step: int | None = None) -> str:
    """The key every delivery of this fire carries (`Idempotency-Key`); with `step`
    (0-based), the key of that step of the plan run fired at `scheduled_for`."""
    key = f"{schedule_id}:{format_instant(scheduled_for)}"
    return key if step is None else f"{key}#step-{step + 1}"


@lru_cache(maxsize=4096)
def format_instant(instant: datetime) -> str:
    """`2026-11-24T07:00:00Z`, or `2026-11-24T07:00:00.123456Z` with microseconds.
    Cached: a burst keys thousands of deliveries with the same few instants."""
    utc = instant.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"


def synthetic_update_id(idempotency_key: str) -> int:
    """A deterministic 31-bit id for the synthetic update and message, never 0.

    The first four bytes of SHA-256, masked to 31 bits so it fits a signed 32-bit
    integer as Telegram ids do. A retried delivery carries the same id, so an agent
    that deduplicates Telegram updates by `update_id` drops the repeat.
    """
    digest = hashlib.sha256(idempotency_key.encode()).digest()
    # Zero reads as "no id" to some code; one key in 2**31 gets 1 instead.
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF or 1
