"""A real HTTP server on 127.0.0.1 that plays the agent (TESTING.md "The agent side").

It accepts synthetic Telegram updates (`stub.url`) and chat-completions requests
(`stub.openai_url`), records every request, and answers as told:

    stub.respond_with(500)              every answer from now on
    stub.script([500, 500, 200])        the next three answers, then the default again
    stub.hang()                         never answer (cancelled when the stub stops)
    stub.delay(0.2)                     answer, but only after 0.2 s
    stub.drop()                         close the connection after reading the request
    stub.openai_answer("Done.", usage={"prompt_tokens": 3, ...})
    stub.respond_with(lambda req: 500 if req.json["update_id"] == 7 else 200)

A behaviour is an HTTP status, a `Reply`, `HANG`, `DROP`, or a callable taking the
`RecordedRequest` and returning one of those (or an aiohttp response), sync or async.

Use the `agent_stub` fixture (registered by `pytest_plugins = ["tests.agent_stub"]` in
conftest.py), or `async with AgentStub() as stub:` anywhere else.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeAlias

from aiohttp import web

from bot.demo_kit.loopback import LoopbackServer

__all__ = [
    "DROP",
    "HANG",
    "AgentStub",
    "Behaviour",
    "RecordedRequest",
    "Reply",
    "refused_url",
]

WEBHOOK_PATH = "/webhook"
OPENAI_PATH = "/v1/chat/completions"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the agent saw it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any  # None when the body is not JSON
    received_at: float  # time.monotonic()


class _Special(Enum):
    HANG = "hang"
    DROP = "drop"


HANG = _Special.HANG  # never answer
DROP = _Special.DROP  # close the connection without answering


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: a status with a JSON body (or raw text)."""

    status: int = 200
    json: Any = None
    text: str | None = None
    delay: float = 0.0


Behaviour: TypeAlias = (
    int
    | Reply
    | _Special
    | web.StreamResponse
    | Callable[[RecordedRequest], "Behaviour | Awaitable[Behaviour]"]
)


def openai_completion(
    text: str | None,
    usage: Mapping[str, int] | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A minimal chat-completions answer body."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "stub",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if tool_calls else "stop",
            }
        ],
    }
    if usage is not None:
        body["usage"] = dict(usage)
    return body


def refused_url(path: str = WEBHOOK_PATH) -> str:
    """A 127.0.0.1 URL on a port that nothing listens on (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


@dataclass
class AgentStub(LoopbackServer):
    """The agent, on a free loopback port. Start with `async with` or the fixture."""

    max_body = 16 * 1024 * 1024
    backlog = 1024

    requests: list[RecordedRequest] = field(default_factory=list)
    _default: Behaviour = 200
    _script: deque[Behaviour] = field(default_factory=deque)
    _delay: float = 0.0
    _openai_body: dict[str, Any] = field(
        default_factory=lambda: openai_completion(
            "Done.", {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
        )
    )
    _port: int = 0
    _runner: web.AppRunner | None = None
    _inflight: set[asyncio.Task[Any]] = field(default_factory=set)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    # -- addresses ---------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        """The agent's Telegram webhook (AGENT_MODE=telegram)."""
        return self.base_url + WEBHOOK_PATH

    @property
    def openai_url(self) -> str:
        """The full chat-completions URL (AGENT_MODE=openai)."""
        return self.base_url + OPENAI_PATH

    # -- behaviour -----------------------------------------------------------------

    def respond_with(self, behaviour: Behaviour = 200) -> None:
        """Answer every request from now on this way (after any scripted ones)."""
        self._default = behaviour

    def script(self, behaviours: Iterable[Behaviour]) -> None:
        """Answer the next requests in this order, then fall back to the default."""
        self._script.extend(behaviours)

    def hang(self) -> None:
        """Never answer; the handler is cancelled when the client gives up or the stub stops."""
        self._default = HANG

    def drop(self) -> None:
        """Read each request, then close the connection without an answer."""
        self._default = DROP

    def delay(self, seconds: float) -> None:
        """Hold every answer for `seconds` (0 turns it off)."""
        self._delay = seconds

    def openai_answer(
        self,
        text: str | None,
        usage: Mapping[str, int] | None = None,
        *,
        tool_calls: list[dict[str, Any]] | None = None,
    ) -> None:
        """The body of a 200 answer on the chat-completions path."""
        self._openai_body = openai_completion(text, usage, tool_calls)

    def reset(self) -> None:
        """Forget recorded requests and go back to answering 200 at once."""
        self.requests.clear()
        self._script.clear()
        self._default = 200
        self._delay = 0.0

    # -- inspection ------------------------------------------------------------

    def count_by_key(self) -> Counter[str]:
        """How many deliveries each Idempotency-Key got (a double fire shows as 2)."""
        return Counter(r.headers.get("idempotency-key", "") for r in self.requests)

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until at least `n` requests arrived; return the first `n`."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.requests) < n:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(
                f"{len(self.requests)} of {n} requests reached the agent stub in {timeout} s"
            ) from None
        return self.requests[:n]

    # -- the server side -------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            body = await request.read()
            try:
                parsed = json.loads(body) if body else None
            except ValueError:
                parsed = None
            recorded = RecordedRequest(
                method=request.method,
                path=request.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                json=parsed,
                received_at=time.monotonic(),
            )
            self.requests.append(recorded)
            self._arrived.set()
            behaviour = self._script.popleft() if self._script else self._default
            return await self._answer(request, recorded, behaviour)
        finally:
            self._inflight.discard(task)

    async def _answer(
        self, request: web.Request, recorded: RecordedRequest, behaviour: Behaviour
    ) -> web.StreamResponse:
        while callable(behaviour):
            result = behaviour(recorded)
            behaviour = await result if inspect.isawaitable(result) else result
        if behaviour is HANG:
            await asyncio.Event().wait()  # until cancelled
        if behaviour is DROP:
            assert request.transport is not None
            request.transport.close()
            # Nothing will be written; cancellation (connection lost) ends the handler.
            await asyncio.Event().wait()
        if self._delay:
            await asyncio.sleep(self._delay)
        if isinstance(behaviour, web.StreamResponse):
            return behaviour
        reply = Reply(status=behaviour) if isinstance(behaviour, int) else behaviour
        assert isinstance(reply, Reply)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.text is not None:
            return web.Response(status=reply.status, text=reply.text)
        if reply.status in (204, 304):
            return web.Response(status=reply.status)
        payload = reply.json
        if payload is None and 200 <= reply.status < 300:
            payload = self._openai_body if recorded.path == OPENAI_PATH else {"ok": True}
        if payload is None:
            payload = {"ok": False, "error": f"stub answered {reply.status}"}
        return web.json_response(payload, status=reply.status)
