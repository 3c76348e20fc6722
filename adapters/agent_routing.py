"""Each chat's runs to its own agent: the `Dispatcher` the engine sees when chats may
have agents of their own (scheduler/chat_agents.py).

One `HttpAgentDispatcher` (one connection pool) per distinct agent, built on first use;
a chat without settings of its own goes to the default agent (`AGENT_URL`). The chats'
settings are read from the store at most every `refresh_every` seconds, and at once
after `invalidate()` (a change made in this process): a delivery costs no query.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from adapters.agent_dispatch import AgentMode, HttpAgentDispatcher
from scheduler.chat_agents import ChatAgent, ChatAgentRepository
from scheduler.dispatching import DispatchError, DispatchRequest, DispatchResult

__all__ = ["AgentSpec", "ChatRoutingDispatcher", "resolve"]

log = logging.getLogger("tickler.agents")


@dataclass(frozen=True)
class AgentSpec:
    """Where and how one agent is reached (equal specs share one dispatcher)."""

    url: str
    mode: AgentMode
    secret: str | None
    token: str | None
    model: str


def resolve(default: AgentSpec, chat: ChatAgent | None) -> AgentSpec:
    """The agent a chat's runs go to: its own fields over the default's. A chat with a
    URL of its own gets none of the default's secrets."""
    if chat is None:
        return default
    own_url = chat.url is not None and chat.url != default.url
    secret = chat.secret if chat.secret is not None else (None if own_url else default.secret)
    token = chat.secret if chat.secret is not None else (None if own_url else default.token)
    return AgentSpec(
        url=chat.url or default.url,
        mode=chat.mode or default.mode,
        secret=secret,
        token=token,
        model=chat.model or default.model,
    )


class ChatRoutingDispatcher:
    """Delivers each run to its chat's agent (or the default one)."""

    limits_own_time: Final = True

    def __init__(
        self,
        default: AgentSpec,
        agents: ChatAgentRepository,
        *,
        max_connections: int = 64,
        refresh_every: float = 5.0,
        on_secrets: Callable[[Iterable[str | None]], None] | None = None,
    ) -> None:
        self.default = default
        #: Told the chats' secrets whenever they are read, to keep them out of the logs.
        self._on_secrets = on_secrets
        self._agents = agents
        self._max_connections = max_connections
        self._refresh_every = refresh_every
        self._specs: dict[int, AgentSpec] = {}
        self._read_at: float | None = None
        self._reading: asyncio.Lock | None = None
        self._dispatchers: dict[AgentSpec, HttpAgentDispatcher] = {}

    def invalidate(self) -> None:
        """Read the chats' settings again before the next delivery."""
        self._read_at = None

    async def spec_for(self, chat_id: int) -> AgentSpec:
        loop = asyncio.get_running_loop()
        at = self._read_at
        if at is None or loop.time() - at >= self._refresh_every:
            if self._reading is None:
                self._reading = asyncio.Lock()
            async with self._reading:
                if self._read_at is None or loop.time() - self._read_at >= self._refresh_every:
                    chats = await self._agents.all()
                    if self._on_secrets is not None:
                        self._on_secrets(c.secret for c in chats)
                    self._specs = {c.chat_id: resolve(self.default, c) for c in chats}
                    self._read_at = loop.time()
        return self._specs.get(chat_id, self.default)

    def dispatcher(self, spec: AgentSpec) -> HttpAgentDispatcher:
        found = self._dispatchers.get(spec)
        if found is None:
            found = HttpAgentDispatcher(
                url=spec.url,
                mode=spec.mode,
                secret=spec.secret,
                token=spec.token,
                model=spec.model,
                max_connections=self._max_connections,
            )
            self._dispatchers[spec] = found
        return found

    async def for_chat(self, chat_id: int) -> HttpAgentDispatcher:
        """The dispatcher of the chat's agent (also for forwarding its messages)."""
        return self.dispatcher(await self.spec_for(chat_id))

    async def dispatch(self, request: DispatchRequest, *, timeout: float) -> DispatchResult:
        try:
            target = await self.for_chat(request.chat_id)
        except ValueError as exc:
            # A URL the service let through but the transport refuses: this chat's runs
            # fail with a sentence, the others go on.
            raise DispatchError("The chat's agent URL is not valid.", uncertain=False) from exc
        return await target.dispatch(request, timeout=timeout)

    async def aclose(self) -> None:
        for dispatcher in self._dispatchers.values():
            await dispatcher.aclose()
        self._dispatchers.clear()
