"""Per-chat agents: a chat (tenant) may send its runs to an agent of its own.

A chat's agent is set by an admin (`/agent` in the chat, `PUT /api/v1/chats/{id}/agent`,
the `agents:` list of schedules.yaml); `AGENT_URL` and its settings stay the default. Each
field left unset falls back to the default's, except the secret: a chat that names its
own URL never sends the default's secret or token there (it would leak it to another
host). The secret (telegram mode: `X-Telegram-Bot-Api-Secret-Token`; openai mode: the
bearer token) is stored, shown masked, never exported in clear nor logged.

Validation happens here, once (`ChatAgentService`); the store keeps what it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from scheduler.clock import Clock
from scheduler.errors import TicklerError

__all__ = [
    "AGENT_MODES",
    "ChatAgent",
    "ChatAgentRepository",
    "ChatAgentService",
    "InvalidAgent",
    "check_url",
    "mask_secret",
]

AGENT_MODES: Final = ("telegram", "openai")
AgentModeName = Literal["telegram", "openai"]

_T = TypeVar("_T")

URL_MAX: Final = 2000
SECRET_MAX: Final = 256
MODEL_MAX: Final = 100


@dataclass(frozen=True)
class ChatAgent:
    """A chat's own agent settings; None fields fall back to the default agent's."""

    chat_id: int
    url: str | None = None
    mode: AgentModeName | None = None
    secret: str | None = None
    model: str | None = None
    updated_at: datetime | None = None

    @property
    def empty(self) -> bool:
        return self.url is None and self.mode is None and self.secret is None and self.model is None


class ChatAgentRepository(Protocol):
    async def get(self, chat_id: int) -> ChatAgent | None:
        """The chat's agent settings, or None when it uses the default agent."""
        ...

    async def put(self, agent: ChatAgent) -> None:
        """Insert or replace the chat's settings."""
        ...

    async def delete(self, chat_id: int) -> bool:
        """Back to the default agent; False if the chat had none of its own."""
        ...

    async def all(self) -> list[ChatAgent]:
        """Every chat's own settings, by chat id."""
        ...


class InvalidAgent(TicklerError, ValueError):
    """A bad agent setting; `str(error)` is one sentence for the operator."""


def check_url(url: str) -> str:
    url = url.strip()
    if len(url) > URL_MAX:
        raise InvalidAgent(f"The agent URL is too long (at most {URL_MAX} characters).")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not host or " " in url:
        raise InvalidAgent("The agent URL must be an absolute http:// or https:// URL.")
    if parts.username is not None or parts.password is not None:
        # The URL is shown by /agent and the API and exported; a credential is the secret.
        raise InvalidAgent(
            "The agent URL may not carry a user or password; set the credential with "
            "/agent secret instead."
        )
    return url


def check_mode(mode: str) -> AgentModeName:
    mode = mode.strip().lower()
    if mode == "telegram":
        return "telegram"
    if mode == "openai":
        return "openai"
    raise InvalidAgent("The agent mode must be telegram or openai.")


def check_secret(secret: str) -> str:
    secret = secret.strip()
    if not secret or len(secret) > SECRET_MAX or any(c.isspace() for c in secret):
        raise InvalidAgent(f"The secret must be 1 to {SECRET_MAX} characters without spaces.")
    return secret


def check_model(model: str) -> str:
    model = model.strip()
    if not model or len(model) > MODEL_MAX or any(c.isspace() for c in model):
        raise InvalidAgent(
            f"The model must be a name of 1 to {MODEL_MAX} characters without spaces."
        )
    return model


def mask_secret(secret: str | None) -> str:
    """`••••1234`: enough to tell two secrets apart, not enough to use one."""
    if secret is None:
        return "not set"
    return "••••" + (secret[-4:] if len(secret) >= 12 else "")


#: Marks a field `update` leaves as it is.
class _Keep:
    pass


KEEP: Final = _Keep()


class ChatAgentService:
    """Reads and changes chats' agents; every value is checked here."""

    def __init__(
        self,
        repo: ChatAgentRepository,
        clock: Clock,
        *,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._repo = repo
        self._clock = clock
        #: Told after every change (the dispatcher reads the settings again).
        self._on_change = on_change

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    async def get(self, chat_id: int) -> ChatAgent | None:
        return await self._repo.get(chat_id)

    async def all(self) -> list[ChatAgent]:
        return await self._repo.all()

    async def update(
        self,
        chat_id: int,
        *,
        url: str | _Keep | None = KEEP,
        mode: str | _Keep | None = KEEP,
        secret: str | _Keep | None = KEEP,
        model: str | _Keep | None = KEEP,
    ) -> ChatAgent | None:
        """Change the given fields (None clears one); checked all before any is stored.
        Returns the chat's settings, or None when nothing of its own is left."""
        current = await self._repo.get(chat_id) or ChatAgent(chat_id)
        changed = replace(
            current,
            url=_apply(current.url, url, check_url),
            mode=_apply(current.mode, mode, check_mode),
            secret=_apply(current.secret, secret, check_secret),
            model=_apply(current.model, model, check_model),
            updated_at=self._clock.now(),
        )
        if changed.empty:
            await self._repo.delete(chat_id)
            self._changed()
            return None
        await self._repo.put(changed)
        self._changed()
        return changed

    async def reset(self, chat_id: int) -> bool:
        gone = await self._repo.delete(chat_id)
        self._changed()
        return gone


def _apply(current: _T | None, given: str | _Keep | None, check: Callable[[str], _T]) -> _T | None:
    if isinstance(given, _Keep):
        return current
    return None if given is None else check(given)
