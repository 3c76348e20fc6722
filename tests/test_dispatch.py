"""The agent dispatcher, mostly over real loopback HTTP against the agent stub."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import httpx
import pytest
import telegram
import trustme
from aiohttp import web
from pydantic import ValidationError

from adapters.agent_dispatch import HttpAgentDispatcher
from bot.demo_kit.agent_stub import AgentStub, Reply, refused_url
from scheduler.dispatching import DispatchError, DispatchRequest, Operator, synthetic_update_id

FIRE = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)


def make_request(**changes: object) -> DispatchRequest:
    fields: dict[str, object] = {
        "schedule_id": "01JDSCHEDULE",
        "run_id": "01JERUN",
        "scheduled_for": FIRE,
        "chat_id": 123456789,
        "operator": Operator(id=123456789, first_name="Ada"),
        "schedule_name": "Daily brief",
        "prompt": "Prepare my daily brief for Tuesday 24 November (Europe/Berlin).",
        "timezone": "Europe/Berlin",
    }
    fields.update(changes)
    return DispatchRequest.model_validate(fields)


@pytest.fixture
async def telegram_dispatcher(agent_stub: AgentStub) -> AsyncIterator[HttpAgentDispatcher]:
    async with HttpAgentDispatcher(url=agent_stub.url, secret="s3cret") as dispatcher:
        yield dispatcher


@pytest.fixture
async def openai_dispatcher(agent_stub: AgentStub) -> AsyncIterator[HttpAgentDispatcher]:
    async with HttpAgentDispatcher(
        url=agent_stub.openai_url, mode="openai", token="tok-123", model="agent-1"
    ) as dispatcher:
        yield dispatcher


class TestIdempotencyKey:
    def test_whole_seconds_with_z(self) -> None:
        assert make_request().idempotency_key == "01JDSCHEDULE:2026-11-24T07:00:00Z"

    def test_microseconds_kept_for_manual_runs(self) -> None:
        request = make_request(scheduled_for=FIRE.replace(microsecond=123456))
        assert request.idempotency_key == "01JDSCHEDULE:2026-11-24T07:00:00.123456Z"

    def test_offset_normalised_to_utc(self) -> None:
        berlin_winter = timezone(timedelta(hours=1))
        request = make_request(scheduled_for=datetime(2026, 11, 24, 8, 0, tzinfo=berlin_winter))
        assert request.scheduled_for == FIRE
        assert request.idempotency_key == "01JDSCHEDULE:2026-11-24T07:00:00Z"

    def test_naive_instant_rejected(self) -> None:
        with pytest.raises(ValidationError):
            make_request(scheduled_for=datetime(2026, 11, 24, 7, 0))

    def test_update_id_is_deterministic_31_bit(self) -> None:
        key = make_request().idempotency_key
        assert synthetic_update_id(key) == synthetic_update_id(key)
        assert 0 < synthetic_update_id(key) < 2**31
        assert synthetic_update_id(key) != synthetic_update_id(key + "x")


class TestTelegramMode:
    async def test_payload_is_a_telegram_update(
        self, agent_stub: AgentStub, telegram_dispatcher: HttpAgentDispatcher
    ) -> None:
        request = make_request()
        result = await telegram_dispatcher.dispatch(request, timeout=2)

        assert result.status_code == 200
        assert result.output is None
        (seen,) = agent_stub.requests
        h = synthetic_update_id(request.idempotency_key)
        assert seen.method == "POST"
        assert seen.path == "/webhook"
        assert seen.json == {
            "update_id": h,
            "message": {
                "message_id": h,
                "date": 1795503600,
                "chat": {"id": 123456789, "type": "private"},
                "from": {"id": 123456789, "is_bot": False, "first_name": "Ada"},
                "text": "Prepare my daily brief for Tuesday 24 November (Europe/Berlin).",
            },
        }
        # An agent that reads Telegram webhooks with PTB parses it as a real update.
        update = telegram.Update.de_json(seen.json, bot=None)
        assert update.effective_user is not None
        assert update.effective_user.first_name == "Ada"
        assert update.message is not None
        assert update.message.text == request.prompt

    async def test_headers(
        self, agent_stub: AgentStub, telegram_dispatcher: HttpAgentDispatcher
    ) -> None:
        await telegram_dispatcher.dispatch(make_request(), timeout=2)
        headers = agent_stub.requests[0].headers
        assert headers["x-telegram-bot-api-secret-token"] == "s3cret"
        assert headers["idempotency-key"] == "01JDSCHEDULE:2026-11-24T07:00:00Z"
        assert headers["x-tickler-schedule-id"] == "01JDSCHEDULE"
        assert headers["x-tickler-run-id"] == "01JERUN"
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"] == "tickler/0.1"
        assert "authorization" not in headers

    async def test_no_secret_header_without_secret(self, agent_stub: AgentStub) -> None:
        async with HttpAgentDispatcher(url=agent_stub.url) as dispatcher:
            await dispatcher.dispatch(make_request(), timeout=2)
        assert "x-telegram-bot-api-secret-token" not in agent_stub.requests[0].headers

    async def test_group_chat_and_username(
        self, agent_stub: AgentStub, telegram_dispatcher: HttpAgentDispatcher
    ) -> None:
        request = make_request(chat_id=-1001234567890, operator=Operator(id=42, username="ada"))
        await telegram_dispatcher.dispatch(request, timeout=2)
        message = agent_stub.requests[0].json["message"]
        assert message["chat"] == {"id": -1001234567890, "type": "group"}
        assert message["from"] == {
            "id": 42,
            "is_bot": False,
            "first_name": "Operator",
            "username": "ada",
        }

    async def test_retry_carries_the_same_ids_a_new_fire_does_not(
        self, agent_stub: AgentStub, telegram_dispatcher: HttpAgentDispatcher
    ) -> None:
        first = make_request()
        retry = make_request(run_id="01JERUN2")  # the same fire, attempted again
        next_day = make_request(scheduled_for=FIRE + timedelta(days=1))
        for request in (first, retry, next_day):
            await telegram_dispatcher.dispatch(request, timeout=2)

        a, b, c = agent_stub.requests
        assert a.body == b.body  # byte for byte the same update
        assert a.headers["idempotency-key"] == b.headers["idempotency-key"]
        assert a.json["update_id"] != c.json["update_id"]
        assert agent_stub.count_by_key() == {
            "01JDSCHEDULE:2026-11-24T07:00:00Z": 2,
            "01JDSCHEDULE:2026-11-25T07:00:00Z": 1,
        }

    async def test_any_2xx_is_success(
        self, agent_stub: AgentStub, telegram_dispatcher: HttpAgentDispatcher
    ) -> None:
        agent_stub.respond_with(204)
        result = await telegram_dispatcher.dispatch(make_request(), timeout=2)
        assert result.status_code == 204
        assert not result.deferred

    async def test_a_202_is_a_result_to_come(
        self, agent_stub: AgentStub, telegram_dispatcher: HttpAgentDispatcher
    ) -> None:
        agent_stub.respond_with(202)
        result = await telegram_dispatcher.dispatch(make_request(), timeout=2)
        assert result.deferred and result.output is None


class TestOpenAIMode:
    async def test_output_usage_and_bearer(
        self, agent_stub: AgentStub, openai_dispatcher: HttpAgentDispatcher
    ) -> None:
        agent_stub.openai_answer(
            "Here is your brief.",
            usage={"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
        )
        result = await openai_dispatcher.dispatch(make_request(), timeout=2)

        assert result.status_code == 200
        assert result.output == "Here is your brief."
        assert result.token_usage == {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
        }
        (seen,) = agent_stub.requests
        assert seen.path == "/v1/chat/completions"
        assert seen.headers["authorization"] == "Bearer tok-123"
        assert seen.headers["idempotency-key"] == "01JDSCHEDULE:2026-11-24T07:00:00Z"
        assert seen.headers["x-tickler-run-id"] == "01JERUN"
        assert "x-telegram-bot-api-secret-token" not in seen.headers
        assert seen.json["model"] == "agent-1"
        system, user = seen.json["messages"]
        assert system["role"] == "system"
        assert "scheduled run of the schedule 'Daily brief' (Tickler)" in system["content"]
        assert user == {"role": "user", "content": make_request().prompt}

    async def test_a_negative_token_count_is_dropped_not_counted(
        self, agent_stub: AgentStub, openai_dispatcher: HttpAgentDispatcher
    ) -> None:
        # It would lower a week's use below its budget; the answer itself stands.
        agent_stub.openai_answer(
            "Done.", usage={"prompt_tokens": 10, "completion_tokens": -5, "total_tokens": -1}
        )
        result = await openai_dispatcher.dispatch(make_request(), timeout=2)
        assert result.output == "Done."
        assert result.token_usage == {"prompt_tokens": 10}

    async def test_the_whole_answer_comes_back(
        self, agent_stub: AgentStub, openai_dispatcher: HttpAgentDispatcher
    ) -> None:
        # The chat shows all of it; the run ledger keeps the first 4000 characters.
        agent_stub.openai_answer("é" * 5000)
        result = await openai_dispatcher.dispatch(make_request(), timeout=2)
        assert result.output == "é" * 5000
        assert result.token_usage is None

    async def test_tool_call_without_content_does_not_crash(
        self, agent_stub: AgentStub, openai_dispatcher: HttpAgentDispatcher
    ) -> None:
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "list_schedules", "arguments": "{}"},
        }
        agent_stub.openai_answer(None, tool_calls=[call])
        result = await openai_dispatcher.dispatch(make_request(), timeout=2)
        assert result.output is None

    async def test_a_chat_message_offers_tools_and_gets_the_calls_back(
        self, agent_stub: AgentStub, openai_dispatcher: HttpAgentDispatcher
    ) -> None:
        call = {
            "id": "call_7",
            "type": "function",
            "function": {"name": "list_schedules", "arguments": "{}"},
        }
        agent_stub.openai_answer("Let me look.", tool_calls=[call])
        tools = [{"type": "function", "function": {"name": "list_schedules"}}]
        result = await openai_dispatcher.forward_chat(
            update={},
            history=[{"role": "user", "content": "What runs today?"}],
            idempotency_key="chat:1:2",
            now=FIRE,
            timezone="UTC",
            tools=tools,
        )
        assert result.output == "Let me look." and result.tool_calls == [call]
        (seen,) = agent_stub.requests
        assert seen.json["tools"] == tools
        # Without tools, none are offered and none come back.
        agent_stub.openai_answer("Nothing.")
        result = await openai_dispatcher.forward_chat(
            update={},
            history=[{"role": "user", "content": "?"}],
            idempotency_key="chat:1:3",
            now=FIRE,
            timezone="UTC",
        )
        assert result.tool_calls is None and "tools" not in agent_stub.requests[-1].json

    async def test_a_202_is_a_result_to_come_whatever_its_body(
        self, agent_stub: AgentStub, openai_dispatcher: HttpAgentDispatcher
    ) -> None:
        # Not a chat completion, and not read as one: the agent reports later.
        agent_stub.respond_with(Reply(status=202, text="accepted"))
        result = await openai_dispatcher.dispatch(make_request(), timeout=2)
        assert result.deferred and result.output is None

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param("not json", id="not-json"),
            pytest.param(json.dumps({"choices": []}), id="no-choices"),
            pytest.param(json.dumps({"choices": [{"text": "legacy"}]}), id="no-message"),
            pytest.param(json.dumps({"error": "boom"}), id="error-object"),
        ],
    )
    async def test_malformed_answer_is_a_known_failure(
        self, agent_stub: AgentStub, openai_dispatcher: HttpAgentDispatcher, body: str
    ) -> None:
        agent_stub.respond_with(Reply(text=body))
        with pytest.raises(DispatchError) as caught:
            await openai_dispatcher.dispatch(make_request(), timeout=2)
        assert caught.value.uncertain is False
        assert caught.value.status_code == 200


class TestFailures:
    async def test_http_500_is_not_uncertain(
        self, agent_stub: AgentStub, telegram_dispatcher: HttpAgentDispatcher
    ) -> None:
        agent_stub.respond_with(500)
        with pytest.raises(DispatchError) as caught:
            await telegram_dispatcher.dispatch(make_request(), timeout=2)
        assert str(caught.value) == "The agent answered HTTP 500."
        assert caught.value.status_code == 500
        assert caught.value.uncertain is False

    async def test_scripted_answers_then_default(
        self, agent_stub: AgentStub, telegram_dispatcher: HttpAgentDispatcher
    ) -> None:
        agent_stub.script([503, 500])
        statuses = []
        for _ in range(3):
            try:
                statuses.append(
                    (await telegram_dispatcher.dispatch(make_request(), timeout=2)).status_code
                )
            except DispatchError as error:
                statuses.append(error.status_code or 0)
        assert statuses == [503, 500, 200]

    async def test_refused_connection_is_not_uncertain(self) -> None:
        async with HttpAgentDispatcher(url=refused_url(), secret="s3cret") as dispatcher:
            with pytest.raises(DispatchError) as caught:
                await dispatcher.dispatch(make_request(), timeout=2)
        assert caught.value.uncertain is False
        assert caught.value.status_code is None
        assert str(caught.value) == "Could not connect to the agent."

    async def test_hang_is_uncertain_and_bounded(
        self, agent_stub: AgentStub, telegram_dispatcher: HttpAgentDispatcher
    ) -> None:
        agent_stub.hang()
        started = time.monotonic()
        with pytest.raises(DispatchError) as caught:
            await telegram_dispatcher.dispatch(make_request(), timeout=0.3)
        elapsed = time.monotonic() - started
        assert caught.value.uncertain is True
        assert caught.value.status_code is None
        assert "may have received" in str(caught.value)
        assert len(agent_stub.requests) == 1  # it did arrive
        assert 0.25 < elapsed < 1.0

    async def test_connection_dropped_after_sending_is_uncertain(
        self, agent_stub: AgentStub, telegram_dispatcher: HttpAgentDispatcher
    ) -> None:
        agent_stub.drop()
        with pytest.raises(DispatchError) as caught:
            await telegram_dispatcher.dispatch(make_request(), timeout=2)
        assert caught.value.uncertain is True
        assert len(agent_stub.requests) == 1

    async def test_slow_answer_within_timeout_succeeds(
        self, agent_stub: AgentStub, telegram_dispatcher: HttpAgentDispatcher
    ) -> None:
        agent_stub.delay(0.1)
        result = await telegram_dispatcher.dispatch(make_request(), timeout=1)
        assert result.status_code == 200

    async def test_messages_carry_no_secrets(self, agent_stub: AgentStub) -> None:
        url = agent_stub.base_url + "/hook/url-secret"
        agent_stub.respond_with(500)
        async with HttpAgentDispatcher(url=url, secret="s3cret", token="tok") as dispatcher:
            with pytest.raises(DispatchError) as caught:
                await dispatcher.dispatch(make_request(), timeout=2)
        assert "secret" not in str(caught.value)
        assert "tok" not in str(caught.value)

    @pytest.mark.parametrize("url", ["ftp://agent/", "/webhook", "http:///webhook", ""])
    def test_bad_url_rejected_at_construction(self, url: str) -> None:
        with pytest.raises(ValueError, match="agent URL"):
            HttpAgentDispatcher(url=url)

    async def test_non_positive_timeout_is_a_programming_error(
        self, telegram_dispatcher: HttpAgentDispatcher
    ) -> None:
        with pytest.raises(ValueError):
            await telegram_dispatcher.dispatch(make_request(), timeout=0)


async def test_64_concurrent_dispatches_all_arrive(
    agent_stub: AgentStub, telegram_dispatcher: HttpAgentDispatcher
) -> None:
    agent_stub.delay(0.05)  # hold answers so the requests really overlap
    requests = [make_request(scheduled_for=FIRE + timedelta(minutes=i)) for i in range(64)]
    results = await asyncio.gather(*(telegram_dispatcher.dispatch(r, timeout=5) for r in requests))
    assert all(result.status_code == 200 for result in results)
    await agent_stub.wait_for_requests(64)
    counts = agent_stub.count_by_key()
    assert len(counts) == 64
    assert set(counts.values()) == {1}


class RawServer:
    """A bare TCP server on 127.0.0.1 whose connections go to `_handle`; `async with`
    gives its URL (with `path`)."""

    path = ""
    _server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}{self.path}"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


class RawAgent(RawServer):
    """An agent that misbehaves below HTTP, as the stub cannot: it reads the request,
    then does what `act` says with the connection."""

    path = "/webhook"

    def __init__(self, act: str) -> None:
        self.act = act
        self.requests = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            if self.act == "reset":
                # SO_LINGER 0: close with a RST, as a crashing agent's kernel does.
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif self.act == "half-answer":
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"ok"')
                await writer.drain()
            elif self.act == "trickle":
                # An answer that keeps coming, a byte at a time, never finishing: each
                # byte would restart a read timeout.
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                for _ in range(100):
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(0.05)
            elif self.act == "redirect":
                writer.write(
                    b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
                )
                await writer.drain()
                # A followed redirect would come back on this connection.
                while await reader.readuntil(b"\r\n\r\n"):
                    self.requests += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@contextlib.contextmanager
def unanswered_port() -> Iterator[str]:
    """A listening port whose backlog is full, so a new connection is never made: the
    kernel drops the SYN, as a firewall or a dead host would."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield f"http://127.0.0.1:{port}/webhook"


@contextlib.asynccontextmanager
async def tls_agent(authority: trustme.CA) -> AsyncIterator[tuple[str, list[bytes]]]:
    """An agent on https://127.0.0.1 with a certificate from `authority`: its URL, and
    the bodies it received."""
    seen: list[bytes] = []

    async def webhook(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(tls)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}/webhook", seen
    finally:
        await runner.cleanup()


class TestOnTheWire:
    """What the default transport (pyreqwest) makes of faults on a real socket: whether
    the agent may have the request decides between a blind retry and asking."""

    @pytest.mark.parametrize("act", ["reset", "half-answer"])
    async def test_a_broken_answer_is_uncertain(self, act: str) -> None:
        agent = RawAgent(act)
        async with agent as url, HttpAgentDispatcher(url=url) as dispatcher:
            with pytest.raises(DispatchError) as caught:
                await dispatcher.dispatch(make_request(), timeout=2)
        assert caught.value.uncertain is True
        assert "may have received" in str(caught.value)
        assert agent.requests == 1

    async def test_an_answer_trickling_in_is_cut_at_the_timeout(self) -> None:
        agent = RawAgent("trickle")
        async with agent as url, HttpAgentDispatcher(url=url) as dispatcher:
            started = time.monotonic()
            with pytest.raises(DispatchError) as caught:
                await dispatcher.dispatch(make_request(), timeout=0.4)
            elapsed = time.monotonic() - started
        assert caught.value.uncertain is True
        assert "may have received" in str(caught.value)
        assert 0.35 < elapsed < 1.0

    async def test_a_redirect_is_not_followed(self) -> None:
        agent = RawAgent("redirect")
        async with agent as url, HttpAgentDispatcher(url=url) as dispatcher:
            with pytest.raises(DispatchError) as caught:
                await dispatcher.dispatch(make_request(), timeout=2)
        assert str(caught.value) == "The agent answered HTTP 302."
        assert caught.value.uncertain is False
        assert agent.requests == 1

    async def test_a_connection_never_made_is_not_uncertain_and_bounded(self) -> None:
        with unanswered_port() as url:
            async with HttpAgentDispatcher(url=url) as dispatcher:
                started = time.monotonic()
                with pytest.raises(DispatchError) as caught:
                    await dispatcher.dispatch(make_request(), timeout=0.7)
                elapsed = time.monotonic() - started
        assert str(caught.value) == "Connecting to the agent timed out."
        assert caught.value.uncertain is False
        # Connecting gets the largest of the fixed deadlines within the timeout: 0.5 s.
        assert 0.45 < elapsed < 0.7

    async def test_waiting_for_a_free_connection_is_not_uncertain(
        self, agent_stub: AgentStub
    ) -> None:
        agent_stub.hang()
        async with HttpAgentDispatcher(url=agent_stub.url, max_connections=1) as dispatcher:
            # The same timeout: the connection limit holds per connect deadline.
            first = asyncio.create_task(dispatcher.dispatch(make_request(), timeout=0.5))
            await agent_stub.wait_for_requests(1)
            with pytest.raises(DispatchError) as caught:
                await dispatcher.dispatch(make_request(run_id="second"), timeout=0.5)
            with pytest.raises(DispatchError):
                await first
        assert str(caught.value) == "Connecting to the agent timed out."
        assert caught.value.uncertain is False
        assert len(agent_stub.requests) == 1

    async def test_schedules_timeouts_share_a_few_connection_pools(
        self, agent_stub: AgentStub, telegram_dispatcher: HttpAgentDispatcher
    ) -> None:
        timeouts = [0.3, 0.31, 0.7, 1.5, 3, 3.3, 7, 9.9, 20, 300, 301.5, 3600]
        for timeout in timeouts:
            await telegram_dispatcher.dispatch(make_request(), timeout=timeout)
        assert len(agent_stub.requests) == len(timeouts)
        exchange = telegram_dispatcher._exchange
        assert exchange is not None
        assert len(exchange._clients) <= 7

    async def test_an_agent_on_tls_is_trusted_through_the_systems_roots(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Certificates are checked against the system's roots, where `SSL_CERT_FILE`
        adds an operator's own authority (as it does for Python's ssl module): an agent
        with a certificate from an unknown authority is refused before anything is sent."""
        authority = trustme.CA()
        async with tls_agent(authority) as (url, seen):
            async with HttpAgentDispatcher(url=url) as dispatcher:
                with pytest.raises(DispatchError) as caught:
                    await dispatcher.dispatch(make_request(), timeout=2)
            assert str(caught.value) == "Could not connect to the agent."
            assert caught.value.uncertain is False
            assert seen == []

            roots = tmp_path / "ca.pem"
            authority.cert_pem.write_to_path(str(roots))
            monkeypatch.setenv("SSL_CERT_FILE", str(roots))
            async with HttpAgentDispatcher(url=url) as dispatcher:
                result = await dispatcher.dispatch(make_request(), timeout=2)
            assert result.status_code == 200
            assert len(seen) == 1

    async def test_a_compressed_answer_is_read(self, agent_stub: AgentStub) -> None:
        answer = {"choices": [{"message": {"role": "assistant", "content": "Done."}}]}
        body = gzip.compress(json.dumps(answer).encode())
        agent_stub.respond_with(
            lambda _: web.Response(
                body=body,
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        )
        async with HttpAgentDispatcher(url=agent_stub.openai_url, mode="openai") as dispatcher:
            result = await dispatcher.dispatch(make_request(), timeout=2)
        assert result.output == "Done."


class ForwardProxy(RawServer):
    """A bare HTTP forward proxy: it reads a request in absolute form (or a CONNECT),
    notes its target, and (with `forward`) passes it on in origin form (or opens the
    tunnel) and pipes the answer back; otherwise it closes the connection once the
    request is in."""

    def __init__(self, *, forward: bool = True) -> None:
        self.forward = forward
        self.targets: list[str] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, _, rest = head.partition(b"\r\n")
            method, target, version = line.split(b" ")
            self.targets.append(target.decode())
            if not self.forward:
                return
            if method == b"CONNECT":
                # A tunnel (to an agent on https): bytes both ways, unread.
                host, _, port = target.decode().rpartition(":")
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                parts = httpx.URL(target.decode())
                up_reader, up_writer = await asyncio.open_connection(parts.host, parts.port)
                up_writer.write(b" ".join((method, parts.raw_path, version)) + b"\r\n" + rest)
            await asyncio.gather(
                _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
            )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    finally:
        sink.close()


class TestThroughAProxy:
    """With a proxy in the environment the dispatcher posts through it (on httpx and
    aiohttp, which know how to), and tells a request that never left from one that may
    have arrived, as it does without one."""

    @pytest.fixture(autouse=True)
    def _no_inherited_proxy(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
            monkeypatch.delenv(name.lower(), raising=False)

    async def test_the_post_goes_through_the_proxy(
        self, agent_stub: AgentStub, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        proxy = ForwardProxy()
        async with proxy as proxy_url:
            monkeypatch.setenv("HTTP_PROXY", proxy_url)
            async with HttpAgentDispatcher(url=agent_stub.url, secret="s3cret") as dispatcher:
                result = await dispatcher.dispatch(make_request(), timeout=2)
        assert result.status_code == 200
        assert proxy.targets == [agent_stub.url]
        [arrived] = agent_stub.requests
        assert arrived.headers["idempotency-key"] == "01JDSCHEDULE:2026-11-24T07:00:00Z"
        assert arrived.headers["x-telegram-bot-api-secret-token"] == "s3cret"

    async def test_an_agent_on_tls_is_reached_through_the_proxys_tunnel(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        authority = trustme.CA()
        roots = tmp_path / "ca.pem"
        authority.cert_pem.write_to_path(str(roots))
        monkeypatch.setenv("SSL_CERT_FILE", str(roots))
        proxy = ForwardProxy()
        async with tls_agent(authority) as (url, seen), proxy as proxy_url:
            monkeypatch.setenv("HTTPS_PROXY", proxy_url)
            async with HttpAgentDispatcher(url=url) as dispatcher:
                result = await dispatcher.dispatch(make_request(), timeout=2)
        assert result.status_code == 200
        assert proxy.targets == [httpx.URL(url).netloc.decode()]
        assert len(seen) == 1

    async def test_no_proxy_for_the_agents_host_is_honoured(
        self, agent_stub: AgentStub, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        proxy = ForwardProxy()
        async with proxy as proxy_url:
            monkeypatch.setenv("HTTP_PROXY", proxy_url)
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            async with HttpAgentDispatcher(url=agent_stub.url) as dispatcher:
                await dispatcher.dispatch(make_request(), timeout=2)
        assert proxy.targets == []
        assert len(agent_stub.requests) == 1

    async def test_a_proxy_that_is_down_is_not_uncertain(
        self, agent_stub: AgentStub, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HTTP_PROXY", refused_url(path=""))
        async with HttpAgentDispatcher(url=agent_stub.url) as dispatcher:
            with pytest.raises(DispatchError) as caught:
                await dispatcher.dispatch(make_request(), timeout=2)
        assert str(caught.value) == "Could not connect to the agent."
        assert caught.value.uncertain is False
        assert agent_stub.requests == []

    async def test_a_proxy_that_drops_the_request_is_uncertain(
        self, agent_stub: AgentStub, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The proxy had the request: whether it passed it on, the bot cannot know.
        proxy = ForwardProxy(forward=False)
        async with proxy as proxy_url:
            monkeypatch.setenv("HTTP_PROXY", proxy_url)
            async with HttpAgentDispatcher(url=agent_stub.url) as dispatcher:
                with pytest.raises(DispatchError) as caught:
                    await dispatcher.dispatch(make_request(), timeout=2)
        assert caught.value.uncertain is True
        assert "may have received the request" in str(caught.value)
        assert proxy.targets == [agent_stub.url]


class TestWithMockTransport:
    """Error classification without a server, including aiohttp errors as httpx-aiohttp
    wraps them (its table maps every aiohttp connection error to ConnectTimeout)."""

    @staticmethod
    def dispatcher_raising(exc: Exception) -> HttpAgentDispatcher:
        def handler(request: httpx.Request) -> httpx.Response:
            raise exc

        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        return HttpAgentDispatcher(url="http://agent.test/webhook", client=client)

    @staticmethod
    def wrapped(httpx_exc: type[httpx.HTTPError], cause: Exception) -> Exception:
        exc = httpx_exc(str(cause))
        exc.__cause__ = cause
        return exc

    @pytest.mark.parametrize(
        ("exc", "uncertain"),
        [
            pytest.param(httpx.ConnectError("refused"), False, id="connect-error"),
            pytest.param(httpx.ConnectTimeout("slow syn"), False, id="connect-timeout"),
            pytest.param(httpx.PoolTimeout("pool"), False, id="pool-timeout"),
            pytest.param(httpx.UnsupportedProtocol("ftp"), False, id="bad-scheme"),
            pytest.param(httpx.ReadTimeout("read"), True, id="read-timeout"),
            pytest.param(httpx.WriteTimeout("write"), True, id="write-timeout"),
            pytest.param(httpx.ReadError("reset"), True, id="read-error"),
            pytest.param(httpx.RemoteProtocolError("eof"), True, id="disconnected"),
            pytest.param(
                wrapped(
                    httpx.ConnectTimeout,
                    aiohttp.ClientConnectorError(
                        aiohttp.client_reqrep.ConnectionKey("h", 1, False, True, None, None, None),
                        ConnectionRefusedError(111, "refused"),
                    ),
                ),
                False,
                id="aiohttp-refused",
            ),
            pytest.param(
                wrapped(httpx.ConnectTimeout, aiohttp.ConnectionTimeoutError()),
                False,
                id="aiohttp-connect-timeout",
            ),
            pytest.param(
                wrapped(httpx.ReadTimeout, aiohttp.SocketTimeoutError()),
                True,
                id="aiohttp-read-timeout",
            ),
            pytest.param(
                wrapped(httpx.ConnectTimeout, aiohttp.ServerDisconnectedError()),
                True,
                id="aiohttp-disconnected-after-send",
            ),
            pytest.param(
                wrapped(httpx.ConnectTimeout, aiohttp.ClientOSError(104, "reset")),
                True,
                id="aiohttp-reset-after-send",
            ),
            pytest.param(
                wrapped(httpx.UnsupportedProtocol, aiohttp.NonHttpUrlClientError("ftp://x")),
                False,
                id="aiohttp-bad-scheme",
            ),
            pytest.param(aiohttp.ClientResponseError(None, ()), True, id="aiohttp-unmapped"),  # type: ignore[arg-type]
        ],
    )
    async def test_classification(self, exc: Exception, uncertain: bool) -> None:
        async with self.dispatcher_raising(exc) as dispatcher:
            with pytest.raises(DispatchError) as caught:
                await dispatcher.dispatch(make_request(), timeout=1)
        assert caught.value.uncertain is uncertain
        assert caught.value.__cause__ is exc

    async def test_safety_net_counts_as_uncertain(self) -> None:
        async def never(request: httpx.Request) -> httpx.Response:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        client = httpx.AsyncClient(transport=httpx.MockTransport(never))
        async with client, HttpAgentDispatcher(url="http://agent.test/", client=client) as d:
            started = time.monotonic()
            with pytest.raises(DispatchError) as caught:
                await d.dispatch(make_request(), timeout=0.1)
        assert caught.value.uncertain is True
        assert time.monotonic() - started < 0.6

    async def test_injected_client_is_left_open(self) -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
        async with HttpAgentDispatcher(url="http://agent.test/", client=client) as d:
            await d.dispatch(make_request(), timeout=1)
        assert not client.is_closed
        await client.aclose()
