"""The HTTP side on one port, over a real socket: /healthz, /metrics and the /api/v1 JSON
API of the real bot (the `bot` harness with its HTTP server on a free port), with
aiohttp as the client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from bot import notifier as notifier_module
from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, OLGA, BotHarness, start_bot, stop_bot
from bot.demo_kit.telegram_server import TelegramServer
from bot.http_api import MAX_BODY_BYTES, HttpServer
from bot.settings import ConfigError, load_settings
from scheduler.models import Action, Owner, RunStatus, Schedule
from scheduler.service import TriggerSpec
from tests.engine_calls import list_notifications

TOKEN = "tk_live_9f3b2c7d1e8a4f60b5c2d9e7a1f3c8b4"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAILY_9 = TriggerSpec(kind="cron", cron="0 9 * * *")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Api:
    bot: BotHarness
    http: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, *, auth: bool = True, **kwargs: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {**(AUTH if auth else {}), **kwargs.pop("headers", {})}
        async with self.http.request(method, path, headers=headers, **kwargs) as response:
            text = await response.text()
            body = json.loads(text) if response.content_type == "application/json" else text
            return response.status, body, response

    async def schedule(self, chat: int = ALICE, name: str = "Daily brief") -> Schedule:
        return await self.bot.services.service.create_schedule(
            chat,
            Owner(id=chat, first_name="Alice"),
            name=name,
            trigger=DAILY_9,
            action=Action(text="Prepare the brief."),
        )


@contextlib.asynccontextmanager
async def _serve(
    telegram_server: TelegramServer, agent_stub: AgentStub, db: Path, **settings: Any
) -> AsyncIterator[Api]:
    port = free_port()
    harness = await start_bot(telegram_server, agent_stub, db, http_port=port, **settings)
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            yield Api(harness, http)
    finally:
        await stop_bot(harness)


@pytest_asyncio.fixture
async def api(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> AsyncIterator[Api]:
    """The bot with its HTTP server on a free port and the API on (API_TOKEN set)."""
    async with _serve(telegram_server, agent_stub, tmp_path / "bot.db", api_token=TOKEN) as served:
        yield served


async def eventually(check: Callable[[], Any], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


# --- operations ------------------------------------------------------------------------
async def test_healthz_goes_503_while_the_loop_is_stuck_and_200_after(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, store = api.bot.services.engine, api.bot.services.store

    async def ticked() -> bool:
        return engine.ticks > 0

    await eventually(ticked)
    status, health, _ = await api.call("GET", "/healthz", auth=False)
    assert status == 200
    assert health["status"] == "ok" and health["loop_alive"] and health["db_ok"]

    # The next read hangs, as on a database that stopped answering one query.
    entered, release = asyncio.Event(), asyncio.Event()
    next_due = store.engine.next_due

    async def stuck(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        await release.wait()
        return await next_due(*args, **kwargs)

    monkeypatch.setattr(store.engine, "next_due", stuck)
    engine.wake()
    await asyncio.wait_for(entered.wait(), 1)
    await api.bot.clock.advance(timedelta(minutes=5))

    status, health, _ = await api.call("GET", "/healthz", auth=False)
    assert status == 503
    assert health["status"] == "unhealthy"
    assert health["loop_alive"] is True and health["db_ok"] is True
    assert health["last_tick_age_s"] >= 300

    monkeypatch.setattr(store.engine, "next_due", next_due)
    release.set()

    async def healthy() -> bool:
        return (await api.call("GET", "/healthz", auth=False))[0] == 200

    await eventually(healthy)


async def test_healthz_goes_503_while_every_engine_iteration_fails_and_200_after(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop goes on ticking (its tick age stays young) while each iteration fails:
    that alone must not pass for healthy."""
    engine, store = api.bot.services.engine, api.bot.services.store
    next_due = store.engine.next_due

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the read broke")

    monkeypatch.setattr(store.engine, "next_due", broken)
    for _ in range(3):
        ticks = engine.ticks

        async def ticked(ticks: int = ticks) -> bool:
            return engine.ticks > ticks

        engine.wake()
        await eventually(ticked)

    async def unhealthy() -> bool:
        return (await api.call("GET", "/healthz", auth=False))[0] == 503

    await eventually(unhealthy)
    _, health, _ = await api.call("GET", "/healthz", auth=False)
    assert health["loop_alive"] is True and health["db_ok"] is True
    assert health["last_tick_age_s"] < 60
    assert health["engine_ok"] is False and "the read broke" in health["engine_error"]

    monkeypatch.setattr(store.engine, "next_due", next_due)
    engine.wake()

    async def healthy() -> bool:
        status, body, _ = await api.call("GET", "/healthz", auth=False)
        return status == 200 and body["engine_ok"] is True

    await eventually(healthy)


async def test_metrics_show_runs_by_status_and_dispatch_after_a_run(api: Api) -> None:
    schedule = await api.schedule()
    status, run, _ = await api.call("POST", f"/api/v1/chats/{ALICE}/schedules/{schedule.id}/run")
    assert status == 202 and run["status"] == "pending"

    async def succeeded() -> bool:
        [done] = await api.bot.services.store.runs.list_for_chat(ALICE)
        return done.status is RunStatus.SUCCEEDED

    await eventually(succeeded)
    status, text, response = await api.call("GET", "/metrics", auth=False)
    assert status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    lines = set(text.splitlines())
    assert 'tickler_runs{status="succeeded"} 1.0' in lines
    assert 'tickler_runs{status="dead"} 0.0' in lines
    assert 'tickler_dispatch_duration_seconds_count{status="succeeded"} 1.0' in lines
    assert 'tickler_fire_lag_seconds_count{trigger="manual"} 1.0' in lines
    assert "tickler_due_runs 0.0" in lines
    assert "tickler_due_schedules 0.0" in lines
    assert "tickler_tripped_schedules 0.0" in lines


# --- the API: access -------------------------------------------------------------------
async def test_a_missing_or_wrong_token_is_401(api: Api) -> None:
    path = f"/api/v1/chats/{ALICE}/schedules"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
        status, body, response = await api.call("GET", path, auth=False, headers=headers)
        assert status == 401, headers
        assert "token" in body["error"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = await api.call("GET", path)
    assert status == 200 and body == {"schedules": []}


async def test_the_api_is_off_without_a_token(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> None:
    async with _serve(telegram_server, agent_stub, tmp_path / "bot.db") as api:
        status, body, _ = await api.call("GET", f"/api/v1/chats/{ALICE}/schedules")
        assert status == 404 and "error" in body
        assert (await api.call("GET", "/api/v1/openapi.json"))[0] == 404
        assert (await api.call("GET", "/healthz"))[0] == 200


async def test_other_chats_and_their_schedules_are_404(api: Api) -> None:
    olgas = await api.schedule(OLGA, "Olga's report")
    status, body, _ = await api.call("GET", "/api/v1/chats/4242/schedules")
    assert status == 404 and "4242" in body["error"]
    # Olga's schedule exists, but not in Alice's chat.
    for action in ("pause", "resume", "archive", "run"):
        status, body, _ = await api.call(
            "POST", f"/api/v1/chats/{ALICE}/schedules/{olgas.id}/{action}"
        )
        assert status == 404, action
        assert olgas.id in body["error"]
    status, body, _ = await api.call("GET", f"/api/v1/chats/{ALICE}/runs?schedule_id={olgas.id}")
    assert status == 404
    # Olga's own chat (an operator's private chat) may be addressed.
    status, body, _ = await api.call("GET", f"/api/v1/chats/{OLGA}/schedules")
    assert status == 200 and [s["id"] for s in body["schedules"]] == [olgas.id]
    assert (await api.call("GET", f"/api/v1/chats/{OLGA}/nothing-here"))[0] == 404


async def test_manage_schedules_and_runs(api: Api) -> None:
    schedule = await api.schedule()
    base = f"/api/v1/chats/{ALICE}/schedules/{schedule.id}"
    status, body, _ = await api.call("GET", f"/api/v1/chats/{ALICE}/schedules")
    assert status == 200 and [s["name"] for s in body["schedules"]] == ["Daily brief"]
    assert body["schedules"][0]["trigger"]["expr"] == "0 9 * * *"

    status, body, _ = await api.call("POST", base + "/pause", json={"reason": "holiday"})
    assert status == 200 and body["enabled"] is False and body["pause_reason"] == "holiday"
    status, body, _ = await api.call("POST", base + "/pause")
    assert status == 409 and "already paused" in body["error"]
    status, body, _ = await api.call("POST", base + "/resume")
    assert status == 200 and body["schedule"]["enabled"] is True
    assert body["skipped_while_paused"] == 0

    status, run, _ = await api.call("POST", base + "/run")
    assert status == 202 and run["trigger"] == "manual"
    status, body, _ = await api.call(
        "GET", f"/api/v1/chats/{ALICE}/runs", params={"schedule_id": schedule.id, "limit": "5"}
    )
    assert status == 200 and [r["id"] for r in body["runs"]] == [run["id"]]
    status, body, _ = await api.call("GET", f"/api/v1/chats/{ALICE}/runs?limit=0")
    assert status == 422 and body["field"] == "limit"

    status, body, _ = await api.call("POST", base + "/archive")
    assert status == 200 and body["archived_at"] is not None
    status, body, _ = await api.call("GET", f"/api/v1/chats/{ALICE}/schedules")
    assert body == {"schedules": []}


async def test_an_async_agent_result_via_patch_reaches_the_chat_with_its_link(
    api: Api, agent_stub: AgentStub
) -> None:
    """The must-show of issue 20's item 5: the agent answers the run 202, then reports
    through PATCH; the chat gets the summary with the link, once."""
    schedule = await api.schedule()
    agent_stub.respond_with(202)
    status, run, _ = await api.call("POST", f"/api/v1/chats/{ALICE}/schedules/{schedule.id}/run")
    assert status == 202
    service = api.bot.services.service

    async def awaiting() -> bool:
        return (await service.get_run(ALICE, run["id"])).awaiting_result

    await eventually(awaiting)
    path = f"/api/v1/chats/{ALICE}/runs/{run['id']}"
    pr = "https://git.example.com/acme/app/pull/42"
    status, body, _ = await api.call(
        "PATCH", path, json={"status": "succeeded", "outputs_url": "javascript:alert(1)"}
    )
    assert status == 422 and body["error"] == (
        "The outputs_url must be an absolute http:// or https:// link."
    )
    status, body, _ = await api.call(
        "PATCH", f"/api/v1/chats/{OLGA}/runs/{run['id']}", json={"status": "succeeded"}
    )
    assert status == 404
    assert (await service.get_run(ALICE, run["id"])).awaiting_result

    report = {"status": "succeeded", "summary": "Opened the PR for the brief.", "outputs_url": pr}
    status, body, _ = await api.call("PATCH", path, json=report)
    assert status == 200, body
    assert (body["status"], body["summary"], body["outputs_url"]) == (
        "succeeded",
        "Opened the PR for the brief.",
        pr,
    )
    message = await api.bot.alice.wait_reply(containing=pr)
    assert "Daily brief" in (message.text or "")
    assert "Opened the PR for the brief." in (message.text or "")
    status, body, _ = await api.call("PATCH", path, json=report)
    assert status == 409 and "not awaiting a result" in body["error"]
    # The short route finds the run in the chats the API may address, and only there.
    status, body, _ = await api.call("PATCH", f"/api/v1/runs/{run['id']}", json=report)
    assert status == 409 and "not awaiting a result" in body["error"]
    status, body, _ = await api.call("PATCH", "/api/v1/runs/01NOSUCHRUN", json=report)
    assert status == 404 and "01NOSUCHRUN" in body["error"]
    # Kept in the history (the summary, the link as an anchor) and the run's detail.
    alice = api.bot.alice
    await alice.send(f"/history {schedule.ref}")
    history = await alice.wait_reply(containing="History of Daily brief")
    assert "Opened the PR for the brief." in (history.text or "")
    await alice.press("1", history)
    detail = await alice.wait_reply(containing="Run of Daily brief")
    assert f"Link: {pr}" in (detail.text or "")
    assert "Summary: Opened the PR for the brief." in (detail.text or "")


async def test_a_result_by_run_id_alone_reaches_the_runs_chat(
    api: Api, agent_stub: AgentStub
) -> None:
    schedule = await api.schedule()
    agent_stub.respond_with(202)
    _, run, _ = await api.call("POST", f"/api/v1/chats/{ALICE}/schedules/{schedule.id}/run")
    service = api.bot.services.service

    async def awaiting() -> bool:
        return (await service.get_run(ALICE, run["id"])).awaiting_result

    await eventually(awaiting)
    pr = "https://git.example.com/acme/app/pull/7"
    status, body, _ = await api.call(
        "PATCH", f"/api/v1/runs/{run['id']}", json={"status": "succeeded", "outputs_url": pr}
    )
    assert status == 200 and body["outputs_url"] == pr
    await api.bot.alice.wait_reply(containing=pr)


async def test_the_openapi_document_describes_the_api(api: Api) -> None:
    status, doc, _ = await api.call("GET", "/api/v1/openapi.json", auth=False)
    assert status == 200 and doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert "post" in paths["/api/v1/chats/{chat_id}/proposals"]
    assert "/api/v1/chats/{chat_id}/schedules/{schedule_id}/pause" in paths
    assert "/api/v1/chats/{chat_id}/runs" in paths
    assert "patch" in paths["/api/v1/chats/{chat_id}/runs/{run_id}"]
    schemas = doc["components"]["schemas"]
    assert {"ProposalRequest", "Schedule", "Run", "ErrorResponse"} <= set(schemas)
    # Every reference resolves.
    refs = {ref.rsplit("/", 1)[1] for ref in _refs(doc) if ref.startswith("#/components/schemas/")}
    assert refs <= set(schemas)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


# --- the API: bad requests -----------------------------------------------------------------
async def test_malformed_json_and_bad_fields_are_422_naming_the_field(api: Api) -> None:
    schedule = await api.schedule()
    pause = f"/api/v1/chats/{ALICE}/schedules/{schedule.id}/pause"
    headers = {"Content-Type": "application/json"}
    status, body, _ = await api.call("POST", pause, data=b'{"reason": ', headers=headers)
    assert status == 422 and body["error"].startswith("Malformed JSON")
    status, body, _ = await api.call("POST", pause, data=b"\xff\xfe", headers=headers)
    assert status == 422 and body["error"].startswith("Malformed JSON")
    status, body, _ = await api.call("POST", pause, json={"reason": "x" * 500})
    assert status == 422 and body["field"] == "reason"
    assert body["error"].startswith("Invalid reason: ")
    status, body, _ = await api.call("POST", pause, json={"reasn": "typo"})
    assert status == 422 and body["field"] == "reasn"
    # Nothing changed.
    assert (await api.bot.services.service.get_schedule(ALICE, schedule.id)).enabled


async def test_a_body_over_the_limit_is_413(api: Api) -> None:
    schedule = await api.schedule()
    pause = f"/api/v1/chats/{ALICE}/schedules/{schedule.id}/pause"
    big = json.dumps({"reason": "x" * (MAX_BODY_BYTES + 10)}).encode()
    status, body, _ = await api.call("POST", pause, data=big)
    assert status == 413 and "64 KiB" in body["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    status, body, _ = await api.call("POST", pause, data=chunks())
    assert status == 413
    assert (await api.bot.services.service.get_schedule(ALICE, schedule.id)).enabled


async def test_a_burst_beyond_the_rate_is_429_with_retry_after(api: Api) -> None:
    path = f"/api/v1/chats/{ALICE}/schedules"
    answers = [await api.call("GET", path) for _ in range(30)]
    statuses = [status for status, _, _ in answers]
    assert statuses[:20] == [200] * 20  # the burst
    limited = [(body, response) for status, body, response in answers if status == 429]
    assert limited, statuses
    body, response = limited[0]
    assert int(response.headers["Retry-After"]) >= 1
    assert "slow down" in body["error"]


async def test_tokens_never_appear_in_logs_or_responses(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    schedule = await api.schedule()
    seen: list[str] = []
    requests: list[tuple[str, str, dict[str, str]]] = [
        ("GET", f"/api/v1/chats/{ALICE}/schedules", AUTH),
        ("GET", f"/api/v1/chats/{ALICE}/schedules", {"Authorization": f"Bearer {TOKEN}x"}),
        ("GET", f"/api/v1/chats/{ALICE}/schedules", {"Authorization": TOKEN}),
        ("POST", f"/api/v1/chats/{ALICE}/schedules/{schedule.id}/pause", AUTH),
        ("POST", f"/api/v1/chats/{ALICE}/schedules/nope/run", AUTH),
        ("GET", "/api/v1/openapi.json", {}),
        ("GET", "/healthz", AUTH),
        ("GET", "/metrics", AUTH),
    ]
    for method, path, headers in requests:
        async with api.http.request(method, path, headers=headers) as response:
            seen.append(await response.text())
            seen.extend(f"{k}: {v}" for k, v in response.headers.items())
    assert seen and not [s for s in seen if TOKEN in s]
    assert caplog.records and TOKEN not in caplog.text


async def test_a_non_ascii_token_is_401_and_rate_limited_without_an_error_log(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = f"/api/v1/chats/{ALICE}/schedules"
    statuses = [
        # \udcf6: the lone byte 0xf6 (Latin-1 ö), as a client that does not speak UTF-8
        # sends it.
        (await raw_request(api, "GET", path, headers=["Authorization: Bearer t\udcf6ken"]))[0]
        for _ in range(30)
    ]
    assert statuses[:20] == [401] * 20  # the burst, counted like any wrong token
    assert 429 in statuses[20:] and set(statuses) == {401, 429}, statuses
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_json_nested_too_deep_is_422(api: Api) -> None:
    deep = b"[" * 20_000 + b"]" * 20_000
    status, body, _ = await api.call("POST", f"/api/v1/chats/{ALICE}/proposals", data=deep)
    assert status == 422 and body["error"] == "Malformed JSON: nested too deep."
    assert await api.bot.services.service.list_schedules(ALICE) == []


async def test_a_body_that_stalls_mid_send_is_408(api: Api) -> None:
    http_server(api).body_timeout_s = 0.2
    schedule = await api.schedule()
    pause = f"/api/v1/chats/{ALICE}/schedules/{schedule.id}/pause"
    status, answer = await raw_request(
        api, "POST", pause, body=b'{"reason": "hol', length=100, auth=True
    )
    assert status == 408, answer
    assert "did not arrive within 0.2 s" in answer
    assert (await api.bot.services.service.get_schedule(ALICE, schedule.id)).enabled


async def test_a_client_gone_mid_body_is_one_info_line(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    schedule = await api.schedule()
    pause = f"/api/v1/chats/{ALICE}/schedules/{schedule.id}/pause"
    _, writer = await asyncio.open_connection(*http_server(api).address)
    writer.write(request_bytes("POST", pause, [f"Authorization: Bearer {TOKEN}"], b"{", 100))
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    async def logged() -> bool:
        return any("went away" in r.getMessage() for r in caplog.records)

    await eventually(logged)
    gone = [r for r in caplog.records if "went away" in r.getMessage()]
    assert [r.levelno for r in gone] == [logging.INFO] and gone[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert (await api.bot.services.service.get_schedule(ALICE, schedule.id)).enabled


def http_server(api: Api) -> HttpServer:
    server = api.bot.app.started.http
    assert isinstance(server, HttpServer)
    return server


def request_bytes(method: str, path: str, headers: list[str], body: bytes, length: int) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    return ("\r\n".join([*head, *headers, "", ""])).encode("utf-8", "surrogateescape") + body


async def raw_request(
    api: Api,
    method: str,
    path: str,
    *,
    headers: list[str] | None = None,
    body: bytes = b"",
    length: int | None = None,
    auth: bool = False,
) -> tuple[int, str]:
    """One request written byte by byte (UTF-8 headers, a Content-Length that may
    promise more than is sent) on its own connection; the status and the body text."""
    lines = [*(headers or []), *([f"Authorization: Bearer {TOKEN}"] if auth else [])]
    lines.append("Connection: close")
    reader, writer = await asyncio.open_connection(*http_server(api).address)
    try:
        writer.write(
            request_bytes(method, path, lines, body, len(body) if length is None else length)
        )
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode("utf-8", "replace")
        # The answer ends at its Content-Length: after answering a body that never came,
        # aiohttp keeps the connection a while to drain it (lingering close, 10 s), so
        # reading to the end of the connection would wait that out.
        declared = re.search(r"(?im)^content-length:\s*(\d+)\r$", head)
        rest = await (reader.readexactly(int(declared[1])) if declared else reader.read())
    finally:
        writer.close()
    status = int(head.split(" ", 2)[1])
    return status, rest.decode("utf-8", "replace")


# --- proposals (scheduler/proposals.py, bot/views_proposals.py) ------------------------------
async def test_a_bad_proposal_is_422_naming_the_field(api: Api) -> None:
    path = f"/api/v1/chats/{ALICE}/proposals"
    good: dict[str, Any] = {
        "name": "Weekly review",
        "trigger": {"kind": "cron", "cron": "0 17 * * 5"},
        "action": {"text": "Prepare my weekly review."},
    }
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "trigger": {"kind": "cron", "cron": "0 17 * * fri-"}}, "trigger.cron"),
        (
            {**good, "trigger": {"kind": "cron", "cron": "0 17 * * 5", "timezone": "Mars/Base"}},
            "trigger.timezone",
        ),
        ({**good, "trigger": {"kind": "hourly"}}, "trigger.kind"),
        ({**good, "action": {"text": "  "}}, "action.text"),
        ({**good, "name": ""}, "name"),
        ({key: v for key, v in good.items() if key != "action"}, "action"),
        ({**good, "risk_hint": "extreme"}, "risk_hint"),
    ]
    for payload, field in cases:
        status, body, _ = await api.call("POST", path, json=payload)
        assert status == 422, payload
        assert body["field"] == field, body
        assert body["error"].startswith(f"Invalid {field}: "), body
    status, body, _ = await api.call("POST", path, data=b"{name: 1}")
    assert status == 422 and body["error"].startswith("Malformed JSON")
    assert await api.bot.services.service.list_schedules(ALICE) == []


async def test_a_refusal_by_the_service_names_the_field_the_check_was_about(api: Api) -> None:
    path = f"/api/v1/chats/{ALICE}/proposals"
    good: dict[str, Any] = {
        "name": "Weekly review",
        "trigger": {"kind": "cron", "cron": "0 17 * * 5"},
        "action": {"text": "Prepare my weekly review."},
    }
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "trigger": {"kind": "cron"}}, "trigger.cron"),
        ({**good, "trigger": {"kind": "interval", "every_seconds": 30}}, "trigger.every_seconds"),
        (
            {
                **good,
                "trigger": {
                    "kind": "interval",
                    "every_seconds": 3600,
                    "start_at": "2030-01-01T09:00:00",
                },
            },
            "trigger.start_at",
        ),
        ({**good, "trigger": {"kind": "once", "at": "2001-01-01T09:00:00Z"}}, "trigger.at"),
        ({**good, "action": {"template": "no-such-template"}}, "action.template"),
        ({**good, "action": {"text": "Brief for {dat}"}}, "action.text"),
        ({**good, "name": "x" * 81}, "name"),
        (
            {**good, "action": {"kind": "plan", "steps": [{"text": "Collect."}, {"text": " "}]}},
            "action.steps[1].text",
        ),
        (
            {**good, "policies": {"retry": {"base_seconds": 60, "cap_seconds": 30}}},
            "policies.retry.cap_seconds",
        ),
    ]
    for payload, field in cases:
        status, body, _ = await api.call("POST", path, json=payload)
        assert status == 422, payload
        assert body["field"] == field, body
        assert body["error"].startswith(f"Invalid {field}: "), body
    assert await api.bot.services.service.list_schedules(ALICE) == []


async def test_a_proposal_through_the_api_is_active_after_alice_approves(api: Api) -> None:
    payload = {
        "name": "Inbox sweep",
        "trigger": {"kind": "interval", "every_seconds": 1800},
        "action": {"text": "Sweep my inbox and flag anything urgent."},
        "reason": "You asked me to keep the inbox under control.",
        "risk_hint": "high",
    }
    status, proposal, _ = await api.call("POST", f"/api/v1/chats/{ALICE}/proposals", json=payload)
    assert status == 201, proposal
    assert proposal["status"] == "pending" and proposal["tier"] == "high"
    assert proposal["proposed_by"] == "api" and proposal["schedule_id"] is None
    status, body, _ = await api.call("GET", f"/api/v1/chats/{ALICE}/schedules")
    assert body == {"schedules": []}  # high tier: nothing until approved

    alice = api.bot.alice
    await alice.wait_reply(containing="Inbox sweep")
    await alice.press("Approve")

    async def active() -> bool:
        schedules = (await api.call("GET", f"/api/v1/chats/{ALICE}/schedules"))[1]["schedules"]
        return [(s["name"], s["enabled"], s["created_by"]) for s in schedules] == [
            ("Inbox sweep", True, "agent")
        ]

    await eventually(active)


async def test_a_plan_is_proposed_with_its_steps_and_its_runs_name_their_plan_run(
    api: Api,
) -> None:
    steps = [
        {"title": "Collect", "text": "Collect what changed today."},
        {"title": "Summarise", "text": "Summarise it.", "continue_on_failure": True},
        {"title": "Publish", "text": "Publish the summary.", "requires_approval": True},
    ]
    payload = {
        "name": "Nightly digest",
        "trigger": {"kind": "cron", "cron": "0 2 * * *"},
        "action": {"kind": "plan", "text": "Nightly digest", "steps": steps},
    }
    status, proposal, _ = await api.call("POST", f"/api/v1/chats/{ALICE}/proposals", json=payload)
    assert status == 201, proposal
    assert proposal["request"]["action"]["steps"][2]["requires_approval"] is True
    card = await api.bot.alice.wait_reply(containing="Nightly digest")
    assert "step by step (3 steps)" in (card.text or "")
    if proposal["schedule_id"] is None:
        await api.bot.alice.press("Approve")
        await eventually(lambda: _has_schedule(api, "Nightly digest"))
    [schedule] = (await api.call("GET", f"/api/v1/chats/{ALICE}/schedules"))[1]["schedules"]
    assert [s["title"] for s in schedule["action"]["steps"]] == ["Collect", "Summarise", "Publish"]
    status, run, _ = await api.call("POST", f"/api/v1/chats/{ALICE}/schedules/{schedule['id']}/run")
    assert status == 202, run
    assert (run["plan_run_id"], run["step"]) == (run["id"], 0)


async def _has_schedule(api: Api, name: str) -> bool:
    schedules = (await api.call("GET", f"/api/v1/chats/{ALICE}/schedules"))[1]["schedules"]
    return [s["name"] for s in schedules] == [name]


async def test_an_identical_proposal_is_409_naming_the_existing_schedule(api: Api) -> None:
    path = f"/api/v1/chats/{ALICE}/proposals"
    payload = {
        "name": "Weekly review",
        "trigger": {"kind": "cron", "cron": "0 17 * * 5"},
        "action": {"text": "Prepare my weekly review."},
    }
    status, first, _ = await api.call("POST", path, json=payload)
    assert status == 201 and first["status"] == "active", first
    status, body, _ = await api.call("POST", path, json={**payload, "reason": "again"})
    assert status == 409, body
    assert body == {
        "error": f"It matches the existing schedule 'Weekly review' ({first['schedule_id']}), "
        "so it was not added again.",
        "field": None,
    }
    assert len(await api.bot.services.service.list_schedules(ALICE)) == 1
    assert len(await api.bot.services.store.proposals.list_for_chat(ALICE)) == 1


async def test_a_proposal_with_a_space_padded_zone_reaches_the_chat_with_its_buttons(
    api: Api,
) -> None:
    path = f"/api/v1/chats/{ALICE}/proposals"
    trigger = {"kind": "cron", "cron": "0 17 * * 5", "timezone": "Europe/Berlin "}
    low = {"name": "Weekly review", "trigger": trigger, "action": {"text": "Review my week."}}
    status, proposal, _ = await api.call("POST", path, json=low)
    assert status == 201 and proposal["tier"] == "low", proposal
    assert proposal["request"]["trigger"]["timezone"] == "Europe/Berlin"
    message = await api.bot.alice.wait_reply(containing="Weekly review")
    assert message.button_labels() == ["Undo"]
    assert "17:00" in (message.text or "")

    high = {
        **low,
        "name": "Inbox sweep",
        "action": {"text": "Sweep my inbox."},
        "risk_hint": "high",
    }
    status, proposal, _ = await api.call("POST", path, json=high)
    assert status == 201 and proposal["tier"] == "high", proposal
    message = await api.bot.alice.wait_reply(containing="Inbox sweep")
    assert message.button_labels() == ["Approve", "Reject"]
    await api.bot.alice.press("Approve", message)

    async def both_active() -> bool:
        schedules = await api.bot.services.service.list_schedules(ALICE)
        return sorted((s.name, s.enabled, s.timezone) for s in schedules) == [
            ("Inbox sweep", True, "Europe/Berlin"),
            ("Weekly review", True, "Europe/Berlin"),
        ]

    await eventually(both_active)


async def test_a_proposal_whose_message_fails_to_render_or_send_still_reaches_the_chat(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("the zone vanished")

    monkeypatch.setattr(notifier_module, "proposal_message", broken)
    api.bot.server.fail_next("sendMessage", 502, count=1, chat_id=ALICE)
    payload = {
        "name": "Inbox sweep",
        "trigger": {"kind": "interval", "every_seconds": 1800},
        "action": {"text": "Sweep my inbox."},
        "risk_hint": "high",
    }
    status, proposal, _ = await api.call("POST", f"/api/v1/chats/{ALICE}/proposals", json=payload)
    assert status == 201, proposal
    # Telegram's 502 is retried from the outbox; the short text keeps the buttons.
    message = await api.bot.alice.wait_reply(containing="Inbox sweep")
    assert message.button_labels() == ["Approve", "Reject"]
    assert "could not be shown" in (message.text or "")
    [reported] = [r for r in caplog.records if "could not render" in r.getMessage()]
    assert reported.levelno == logging.ERROR
    assert getattr(reported, "proposal_id", None) == proposal["id"]

    async def sent_on_the_second_try() -> bool:
        [row] = await list_notifications(api.bot.services.store, ALICE)
        return (row.proposal_id, row.attempts, row.status.value, row.last_error) == (
            proposal["id"],
            2,
            "sent",
            "Bad Gateway",
        )

    await eventually(sent_on_the_second_try)


# --- settings of the HTTP side ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (
            {"WEBHOOK_URL": "https://bot.example.org/hook"},
            "Configuration error: WEBHOOK_SECRET: is required when WEBHOOK_URL is set",
        ),
        (
            {"WEBHOOK_URL": "https://bot.example.org/healthz", "WEBHOOK_SECRET": "s"},
            "Configuration error: WEBHOOK_URL: its path /healthz is taken by the HTTP API",
        ),
        (
            {"WEBHOOK_URL": "https://bot.example.org/hook", "WEBHOOK_SECRET": "no spaces"},
            "Configuration error: WEBHOOK_SECRET: must be 1-256 characters",
        ),
        (
            {
                "WEBHOOK_URL": "https://bot.example.org/hook",
                "WEBHOOK_SECRET": "s",
                "HTTP_PORT": "0",
            },
            "Configuration error: HTTP_PORT: must not be 0 when WEBHOOK_URL is set",
        ),
    ],
)
def test_webhook_settings_that_cannot_work_stop_start_up(extra: dict[str, str], line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"AGENT_URL": "http://127.0.0.1:9/hook", **extra})
    assert str(caught.value).startswith(line)


@pytest.mark.parametrize("token", ["a", "x" * 31, "é" * 40, "two words " * 4])
def test_a_weak_api_token_stops_start_up_naming_it(token: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"AGENT_URL": "http://127.0.0.1:9/hook", "API_TOKEN": token})
    assert str(caught.value) == (
        "Configuration error: API_TOKEN: must be at least 32 characters of visible ASCII "
        "(no spaces)."
    )


def test_http_settings_load_from_the_environment() -> None:
    settings = load_settings(
        {
            "AGENT_URL": "http://127.0.0.1:9/hook",
            "HTTP_PORT": "9090",
            "API_TOKEN": TOKEN,
            "API_CHAT_IDS": "-100123, 77",
        }
    )
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 9090)
    assert settings.api_chat_ids == [-100123, 77]
    assert (settings.api_rate_per_second, settings.api_rate_burst) == (10.0, 20)
    assert TOKEN not in repr(settings)


# --- workflow templates and bundles ---------------------------------------------------------
async def test_a_bundle_template_proposed_backfilled_and_read_through_the_api(api: Api) -> None:
    proposal = {
        "name": "Weekly newsletter",
        "trigger": {"kind": "cron", "cron": "0 9 * * 1", "timezone": "Europe/Berlin"},
        "action": {
            "kind": "bundle",
            "lead_days": 7,
            "steps": [
                {"kind": "task", "title": "Collect links", "offset_days": -6, "proof": "link"},
                {"kind": "agent", "title": "Intro", "text": "Draft the intro.", "offset_days": -1},
            ],
        },
    }
    status, made, _ = await api.call("POST", f"/api/v1/chats/{ALICE}/proposals", json=proposal)
    assert status == 201, made
    template_id = made["schedule_id"]
    await api.bot.clock.advance(timedelta(days=7, hours=1))  # Mon 30 Nov, 09:00 Berlin
    backfill = f"/api/v1/chats/{ALICE}/schedules/{template_id}/bundles/backfill"
    window = {"from": "2026-11-23", "to": "2026-11-30"}

    async def caught_up() -> bool:
        status, listed, _ = await api.call("GET", f"/api/v1/chats/{ALICE}/bundles")
        return status == 200 and len(listed["bundles"]) >= 1

    await eventually(caught_up)
    status, first, _ = await api.call("POST", backfill, json=window)
    assert (status, first) == (
        200,
        {"created": 1, "skipped": 1, "anchors": ["2026-11-30", "2026-12-07"]},
    )
    status, again, _ = await api.call("POST", backfill, json=window)
    assert (again["created"], again["skipped"]) == (0, 2)
    status, listed, _ = await api.call("GET", f"/api/v1/chats/{ALICE}/bundles")
    views = {v["bundle"]["anchor_date"]: v for v in listed["bundles"]}
    assert set(views) == {"2026-11-30", "2026-12-07"}
    view = views["2026-11-30"]
    # Its first step (due Tue 24 Nov) is overdue and lacks its link.
    assert (view["overdue"], view["missing_proof"], view["next_due_step"]) == (1, 1, 1)
    assert [(s["number"], s["kind"], s["status"]) for s in view["steps"]] == [
        (1, "task", "todo"),
        (2, "agent", view["steps"][1]["status"]),
    ]
    status, one, _ = await api.call("GET", f"/api/v1/chats/{ALICE}/bundles/{view['bundle']['id']}")
    assert status == 200 and one["bundle"]["template_id"] == template_id
    status, missing, _ = await api.call("GET", f"/api/v1/chats/{ALICE}/bundles/NOPE")
    assert status == 404 and missing["error"].startswith("No bundle 'NOPE' here")
    status, refused, _ = await api.call(
        "POST", backfill, json={"from": "2026-12-01", "to": "2026-12-09"}
    )
    assert status == 409 and "past days only" in refused["error"]
    doc = (await api.call("GET", "/api/v1/openapi.json", auth=False))[1]
    assert (
        "post" in doc["paths"]["/api/v1/chats/{chat_id}/schedules/{schedule_id}/bundles/backfill"]
    )
    assert {"BundleView", "BundleList", "BundleBackfillResult"} <= set(doc["components"]["schemas"])


async def test_a_budget_rides_in_the_policies_and_the_budget_route_shows_the_use(
    api: Api,
) -> None:
    payload = {
        "name": "Nightly report",
        "trigger": {"kind": "cron", "cron": "0 2 * * *"},
        "action": {"text": "Write the nightly report."},
        "policies": {"budget_runs_per_week": 10, "budget_tokens_per_week": 120000},
        "reason": "You asked for a nightly report.",
        "expected_tokens_per_run": 4000,
    }
    status, proposal, _ = await api.call("POST", f"/api/v1/chats/{ALICE}/proposals", json=payload)
    assert status == 201, proposal
    card = await api.bot.alice.wait_reply(containing="Nightly report")
    assert "Tokens (agent's estimate): 4,000 a run, about 28,000 a week" in (card.text or "")
    bad = {**payload, "name": "Other", "policies": {"budget_runs_per_week": 0}}
    status, body, _ = await api.call("POST", f"/api/v1/chats/{ALICE}/proposals", json=bad)
    assert status == 422 and "budget_runs_per_week" in body["field"]

    await api.bot.services.service.set_chat_budget(ALICE, 50, None)
    status, budget, _ = await api.call("GET", f"/api/v1/chats/{ALICE}/budget")
    assert status == 200, budget
    assert budget["limits"] == {"runs_per_week": 50, "tokens_per_week": None}
    assert budget["use"]["week"] == {"runs": 0, "tokens": 0}
    doc = (await api.call("GET", "/api/v1/openapi.json", auth=False))[1]
    assert "get" in doc["paths"]["/api/v1/chats/{chat_id}/budget"]
    schemas = doc["components"]["schemas"]
    assert any("budget_runs_per_week" in s.get("properties", {}) for s in schemas.values())
    assert "expected_tokens_per_run" in schemas["ProposalRequest"]["properties"]


async def test_a_chats_own_agent_is_set_shown_without_its_secret_and_reset(api: Api) -> None:
    path = f"/api/v1/chats/{ALICE}/agent"
    status, shown, _ = await api.call("GET", path)
    assert (status, shown["default"]) == (200, True)
    body = {"url": "https://agent.example/hook", "mode": "openai", "secret": "sk-own-secret-000"}
    status, shown, response = await api.call("PUT", path, json=body)
    assert status == 200, shown
    assert shown == {
        "chat_id": ALICE,
        "default": False,
        "url": "https://agent.example/hook",
        "mode": "openai",
        "secret_set": True,
        "model": None,
    }
    assert "sk-own-secret-000" not in await response.text()
    status, err, _ = await api.call("PUT", path, json={"url": "ftp://agent.example/"})
    assert (status, err["error"]) == (
        422,
        "The agent URL must be an absolute http:// or https:// URL.",
    )
    assert (await api.bot.services.agents.get(ALICE)) is not None  # unchanged
    status, shown, _ = await api.call("DELETE", path)
    assert (status, shown["default"]) == (200, True)
    assert await api.bot.services.agents.get(ALICE) is None
    status, _, _ = await api.call("GET", "/api/v1/chats/999/agent")
    assert status == 404
