"""Deliver a due run to the agent over HTTP, as a synthetic update: the adapter behind
the core's `Dispatcher` protocol (scheduler/dispatching.py).

Two wire formats (SPEC "Agent endpoint"):

- `telegram`: a Telegram `Update` JSON posted to the agent's webhook, as Telegram itself
  would deliver it, so an agent behind a Telegram router needs no change.
- `openai`: a chat-completions request; the answer becomes the run's output.

Both carry `Idempotency-Key: {schedule_id}:{scheduled_for}` and, in `telegram` mode, a
deterministic `update_id` derived from it, so an agent can drop a retried delivery.

The dispatcher speaks httpx's language (its errors, timeouts and `httpx.Response`) and
sends through the fastest transport measured (bench/dispatch_transport.py): runs go to
the agent on pyreqwest, whose threads do the HTTP outside the GIL
(`adapters/agent_exchange.py`); when the environment names a proxy, or a test injects
a client, through that httpx client (by default on httpx-aiohttp's transport). Every
transport error is classified here, once, into a `DispatchError` (`_transport_error`).
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime
from functools import cached_property, lru_cache
from types import TracebackType
from typing import Any, Final, Literal, Self
from zoneinfo import ZoneInfo

import aiohttp
import httpx
from httpx_aiohttp import HttpxAiohttpClient
from pydantic import BaseModel, ValidationError, field_validator

from adapters.agent_exchange import ReqwestExchange
from scheduler.dispatching import (
    DispatchError,
    DispatchRequest,
    DispatchResult,
    Operator,
    format_instant,
    synthetic_update_id,
)

__all__ = ["AgentMode", "HttpAgentDispatcher"]

AgentMode = Literal["telegram", "openai"]

USER_AGENT: Final = "tickler/0.1"

# Connecting is quick or hopeless; a long run timeout (minutes, for a slow agent) should
# not also mean waiting minutes for a host that does not answer SYN.
_CONNECT_TIMEOUT_CAP: Final = 10.0
#: The connect deadlines of the direct path: the largest not above the run's timeout.
#: reqwest sets that deadline per client (one connection pool each), so they are few
#: whatever timeouts the schedules carry.
_CONNECT_DEADLINES: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, _CONNECT_TIMEOUT_CAP)

# The outer asyncio deadline is only a safety net for what httpx's per-phase timeouts
# cannot see (a body trickling in byte by byte resets the read timeout on every chunk).
# It fires a little after the per-call timeout so that, when httpx's own connect or read
# timeout applies, that one wins: it knows whether the request was sent, the net does not.
_SAFETY_NET_GRACE: Final = 0.25
#: How much later than the connect deadline the whole exchange's may fall, at the least.
_PHASE_MARGIN: Final = 0.05


class _Usage(BaseModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None

    @field_validator("*")
    @classmethod
    def _not_negative(cls, value: int | None) -> int | None:
        # A negative count would lower a week's use below its budget; it is dropped,
        # not held against the answer it came with.
        return None if value is not None and value < 0 else value


class _ContentPart(BaseModel):
    type: str
    text: str | None = None


class _Message(BaseModel):
    # None when the agent answers only with tool calls.
    content: str | list[_ContentPart] | None = None
    tool_calls: list[dict[str, Any]] | None = None


class _Choice(BaseModel):
    message: _Message


class _ChatCompletion(BaseModel):
    choices: list[_Choice]
    usage: _Usage | None = None


class HttpAgentDispatcher:
    """Posts synthetic updates (or chat-completions requests) to the agent's URL.

    Pass `client` to choose the transport (tests use `httpx.MockTransport`); the
    dispatcher then leaves closing it to the caller. Otherwise it builds an httpx client
    on the aiohttp transport with `max_connections` connections and closes it in
    `aclose()` (or on leaving `async with`).
    """

    #: `dispatch` ends within its `timeout` (plus a quarter second) whatever the agent
    #: does, under an asyncio deadline of its own: the engine need not add another.
    limits_own_time: Final = True

    def __init__(
        self,
        *,
        url: str,
        mode: AgentMode = "telegram",
        secret: str | None = None,
        token: str | None = None,
        model: str = "gpt-4o-mini",
        client: httpx.AsyncClient | None = None,
        max_connections: int = 64,
    ) -> None:
        # Fail at start-up, not at the first fire hours later.
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("The agent URL must be an absolute http:// or https:// URL.")
        # Parsed once: httpx would otherwise parse the string again on every request.
        self._url = parsed
        self._mode: AgentMode = mode
        self._secret = secret
        self._token = token
        self._model = model
        self._owns_client = client is None
        #: Set when requests skip the httpx client and go to the agent on pyreqwest.
        self._exchange: ReqwestExchange | None = None
        self._client: httpx.AsyncClient | None = client
        if client is None:
            if _proxy_configured():
                # Only the client knows how to route through a proxy.
                # HttpxAiohttpClient (unlike AsyncClient(transport=AiohttpTransport(...)))
                # also sends proxied requests through aiohttp.
                limits = httpx.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                )
                self._client = HttpxAiohttpClient(limits=limits, follow_redirects=False)
            else:
                # The client's own machinery (merging headers, cookie jar, auth and
                # redirect flows) costs more per POST than a whole exchange, and an
                # agent's webhook needs none of it.
                self._exchange = ReqwestExchange(max_connections=max_connections)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this dispatcher created it."""
        if self._exchange is not None:
            await self._exchange.aclose()
        if self._owns_client and self._client is not None:
            await self._client.aclose()

    async def dispatch(
        self,
        request: DispatchRequest,
        *,
        timeout: float,
    ) -> DispatchResult:
        """Deliver one attempt; the whole attempt is bounded by about `timeout` seconds.

        No retries here: the engine records every attempt and schedules the next one.
        """
        headers = self._headers(request)
        if self._mode == "telegram":
            return await self._post_content(_telegram_content(request), headers, timeout)
        return await self._post(self._openai_body(request), headers, timeout)

    async def forward_chat(
        self,
        *,
        update: dict[str, Any],
        history: list[dict[str, Any]],
        idempotency_key: str,
        now: datetime,
        timezone: str,
        timeout: float = 120.0,
        tools: list[dict[str, Any]] | None = None,
    ) -> DispatchResult:
        """A plain chat message for the agent (the bot as a conversational front end).

        In `telegram` mode the update goes as Telegram delivered it; in `openai` mode
        the recent turns of the chat (`history`, ending with this message, or with the
        tool results of the previous answer) are sent, with `tools` when given; the
        answer's tool calls come back in `DispatchResult.tool_calls`. The system message
        gives `now` in the chat's `timezone`, so "tomorrow at 9" can become an instant.
        """
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": idempotency_key,
        }
        body: dict[str, Any]
        if self._mode == "telegram":
            if self._secret is not None:
                headers["X-Telegram-Bot-Api-Secret-Token"] = self._secret
            body = update
        else:
            if self._token is not None:
                headers["Authorization"] = f"Bearer {self._token}"
            system = (
                "You are the operator's assistant, reached through their Telegram chat "
                f"(Tickler). Reply to their latest message. {_now_in(now, timezone)}"
            )
            body = {
                "model": self._model,
                "messages": [{"role": "system", "content": system}, *history],
            }
            if tools:
                body["tools"] = tools
        return await self._post(body, headers, timeout)

    async def _post(
        self, body: dict[str, Any], headers: dict[str, str], timeout: float
    ) -> DispatchResult:
        return await self._post_content(
            json.dumps(body, ensure_ascii=False).encode(), headers, timeout
        )

    async def _post_content(
        self, content: bytes, headers: dict[str, str], timeout: float
    ) -> DispatchResult:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        response: httpx.Response | None
        try:
            if self._exchange is not None:
                # reqwest bounds the whole exchange itself, from connecting to the last
                # byte of the answer (tested with an answer trickling in): no second
                # deadline per run.
                status, response = await self._send_direct(
                    self._exchange, content, headers, timeout
                )
            else:
                assert self._client is not None
                # httpx's per-phase timeouts tell a connect failure (never sent) from a
                # read timeout (sent, maybe acted on); the outer deadline bounds the total.
                async with asyncio.timeout(timeout + _SAFETY_NET_GRACE):
                    response = await self._client.post(
                        self._url, content=content, headers=headers, timeout=_phases(timeout)
                    )
                status = response.status_code
        except httpx.InvalidURL as exc:
            raise DispatchError("The agent URL is not valid.", uncertain=False) from exc
        except (httpx.HTTPError, aiohttp.ClientError) as exc:
            raise _transport_error(exc, timeout) from exc
        except TimeoutError as exc:
            raise DispatchError(
                f"The agent did not finish answering within {timeout:g} s; "
                "it may have received the request.",
                uncertain=True,
            ) from exc
        if not 200 <= status < 300:
            raise DispatchError(
                f"The agent answered HTTP {status}.", uncertain=False, status_code=status
            )
        if status == 202 or self._mode == "telegram" or response is None:
            # 202: accepted, the result comes later (PATCH or the report_result tool),
            # whatever the body says.
            # The agent answers the chat itself; a 2xx is all that matters.
            return _accepted(status)
        return _parse_completion(response)

    async def _send_direct(
        self,
        exchange: ReqwestExchange,
        content: bytes,
        headers: dict[str, str],
        timeout: float,
    ) -> tuple[int, httpx.Response | None]:
        """POST straight to the agent, reading the whole answer, as `client.post` would.
        Returns the status and, when the mode reads the answer (`openai`), the answer as
        an `httpx.Response`. No `httpx.Request` is built: its header normalisation and
        byte stream cost more than the rest of the exchange."""
        reads = self._mode != "telegram"
        connect, total = _deadlines(timeout)
        status, raw_headers, body = await exchange.exchange(
            self._url_text, headers, content, connect=connect, total=total, read_body=reads
        )
        if not reads:
            return status, None
        return status, _read_response(status, raw_headers, body)

    @cached_property
    def _url_text(self) -> str:
        return str(self._url)

    def _headers(self, request: DispatchRequest) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": request.idempotency_key,
            "X-Tickler-Schedule-Id": request.schedule_id,
            "X-Tickler-Run-Id": request.run_id,
        }
        headers.update(self._auth_headers)
        return headers

    @cached_property
    def _auth_headers(self) -> dict[str, str]:
        if self._mode == "telegram" and self._secret is not None:
            return {"X-Telegram-Bot-Api-Secret-Token": self._secret}
        if self._mode == "openai" and self._token is not None:
            return {"Authorization": f"Bearer {self._token}"}
        return {}

    def _openai_body(self, request: DispatchRequest) -> dict[str, Any]:
        system = (
            f"This is a scheduled run of the schedule '{request.schedule_name}' (Tickler), "
            f"due at {format_instant(request.scheduled_for)} "
            f"(the schedule's time zone is {request.timezone}). "
            "No one is waiting at the keyboard: do the task and reply with the result, "
            "which will be posted to the operator's chat."
        )
        return {
            "model": request.model or self._model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": request.prompt},
            ],
        }


def _now_in(now: datetime, timezone: str) -> str:
    """`Their time zone is Europe/Berlin; it is now Monday 2026-11-23T08:00:00+01:00
    there.`: the weekday, the local time and its offset, which a relative time needs."""
    local = now.astimezone(ZoneInfo(timezone)).replace(microsecond=0)
    return f"Their time zone is {timezone}; it is now {local:%A} {local.isoformat()} there."


def _telegram_content(request: DispatchRequest) -> bytes:
    """The update as Telegram delivers it (SPEC "Agent endpoint"), as JSON bytes, from a
    text template: only the ids, the date and the prompt change per fire, and encoding
    the whole nested dict each time cost more than the rest of building it.
    `message_id` reuses the update id and `date` is the fire instant, not "now", so a
    retried delivery is byte for byte the same update."""
    update_id = synthetic_update_id(request.idempotency_key)
    chat_type = "private" if request.chat_id > 0 else "group"
    return (
        f'{{"update_id": {update_id}, "message": {{"message_id": {update_id}, '
        f'"date": {int(request.scheduled_for.timestamp())}, '
        f'"chat": {{"id": {request.chat_id}, "type": "{chat_type}"}}, '
        f'"from": {_sender_json(request.operator)}, '
        f'"text": {json.dumps(request.prompt, ensure_ascii=False)}}}}}'
    ).encode()


@lru_cache(maxsize=1024)
def _sender_json(operator: Operator) -> str:
    sender: dict[str, Any] = {"id": operator.id, "is_bot": False, "first_name": operator.first_name}
    if operator.username is not None:
        sender["username"] = operator.username
    return json.dumps(sender, ensure_ascii=False)


def _parse_completion(response: httpx.Response) -> DispatchResult:
    try:
        completion = _ChatCompletion.model_validate_json(response.content)
    except ValidationError as exc:
        raise DispatchError(
            "The agent's answer is not a valid chat completion.",
            uncertain=False,
            status_code=response.status_code,
        ) from exc
    if not completion.choices:
        raise DispatchError(
            "The agent's answer has no choices.",
            uncertain=False,
            status_code=response.status_code,
        )
    message = completion.choices[0].message
    content = message.content
    if isinstance(content, list):
        # Some OpenAI-compatible servers answer with content parts; keep the text ones.
        content = "".join(part.text or "" for part in content if part.type == "text")
    # The whole answer: the chat shows all of it; the run ledger keeps its start.
    output = content
    usage = None
    if completion.usage is not None:
        usage = {k: v for k, v in completion.usage.model_dump().items() if v is not None} or None
    return DispatchResult(
        status_code=response.status_code,
        output=output,
        token_usage=usage,
        tool_calls=message.tool_calls or None,
    )


@lru_cache(maxsize=16)
def _accepted(status: int) -> DispatchResult:
    """The (frozen) result of a delivery answered `status` with nothing to read, shared:
    a burst would otherwise validate thousands of identical models."""
    return DispatchResult(status_code=status)


@lru_cache(maxsize=64)
def _deadlines(timeout: float) -> tuple[float, float]:
    """The direct path's connect deadline (the largest of `_CONNECT_DEADLINES` within
    `timeout`) and whole-exchange deadline, never the same instant as the connect one: a
    connection not made in time must fail as not sent, not race a timeout that may have
    been delivered."""
    connect = max((d for d in _CONNECT_DEADLINES if d <= timeout), default=_CONNECT_DEADLINES[0])
    return connect, max(timeout, connect + _PHASE_MARGIN)


@lru_cache(maxsize=64)
def _phases(timeout: float) -> httpx.Timeout:
    return httpx.Timeout(timeout, connect=min(timeout, _CONNECT_TIMEOUT_CAP))


def _read_response(status: int, headers: list[tuple[str, str]], body: bytes) -> httpx.Response:
    """The answer as an already-read `httpx.Response`; `content=` decodes a
    Content-Encoding as `aread()` would (the exchange asked for no decompression)."""
    return httpx.Response(
        status_code=status,
        headers=headers,
        content=body,
        extensions={"http_version": b"HTTP/1.1"},
    )


def _proxy_configured() -> bool:
    """Whether the environment names a proxy, which only the client knows how to route."""
    return any(os.environ.get(name) for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")) or any(
        os.environ.get(name.lower()) for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    )


def _transport_error(exc: httpx.HTTPError | aiohttp.ClientError, timeout: float) -> DispatchError:
    """One sentence for the operator, and whether the request may have been delivered.

    Only errors raised before the request could leave this process count as certain
    failures; anything after (a timeout waiting for the answer, a reset, a half answer)
    may have reached the agent, so it is uncertain.
    """
    original = _original_error(exc)
    if isinstance(
        original,
        httpx.UnsupportedProtocol | aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError,
    ):
        return DispatchError("The agent URL is not valid.", uncertain=False)
    if isinstance(
        original,
        httpx.ConnectTimeout | httpx.PoolTimeout | aiohttp.ConnectionTimeoutError,
    ):
        # aiohttp's connect timeout also covers the wait for a free pooled connection.
        return DispatchError("Connecting to the agent timed out.", uncertain=False)
    if isinstance(
        original,
        httpx.ConnectError
        | httpx.ProxyError
        | aiohttp.ClientConnectorError  # refused, DNS, TLS handshake, proxy connect
        | aiohttp.ClientHttpProxyError,  # the proxy refused to open a tunnel
    ):
        return DispatchError("Could not connect to the agent.", uncertain=False)
    if isinstance(original, httpx.DecodingError):
        # The body arrived but its Content-Encoding was broken: the agent answered.
        return DispatchError("The agent's answer could not be decoded.", uncertain=False)
    if isinstance(
        original,
        httpx.TimeoutException | aiohttp.ServerTimeoutError,
    ):
        return DispatchError(
            f"The agent did not answer within {timeout:g} s; it may have received the request.",
            uncertain=True,
        )
    return DispatchError(
        "The connection to the agent broke after the request was sent; "
        "it may have received the request.",
        uncertain=True,
    )


def _original_error(exc: BaseException) -> BaseException:
    """The aiohttp error behind an httpx one, when there is one.

    httpx-aiohttp translates aiohttp errors to httpx classes with a coarse table: every
    `aiohttp.ClientConnectionError` becomes `httpx.ConnectTimeout`, a refused connection
    as well as a server that dropped the connection after the request was sent (which
    must count as maybe delivered). The original aiohttp error, kept as `__cause__`,
    says what really happened.
    """
    return exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc
