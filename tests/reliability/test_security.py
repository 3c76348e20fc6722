"""Security: one chat never reads or changes another's data, and no token leaks.

Olga's chat holds a schedule, runs in every state a button acts on, work items and
proposals. Alice (an admin, so every button she presses counts) names Olga's ids in
every command, in forged button data and in API calls for her own chat. Each answer
must be exactly the answer for an id that does not exist (the id itself aside), and
the database file must not change at all.

Tokens (the bot token, API_TOKEN, AGENT_SECRET, AGENT_TOKEN) must not appear in the
logs (captured at DEBUG over a scripted session with an agent failure, a handler
crash, an API 500 and a wrong token), in any message the bot sent, in /export's zip,
or in what `tickler export` writes and prints.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import socket
import sys
import zipfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, OLGA, BotHarness, start_bot, stop_bot
from bot.demo_kit.telegram_server import BotMessage, TelegramServer, TgUser
from scheduler.ids import new_id
from scheduler.models import Action, ActionKind, Owner, RiskTier, Run, RunStatus, RunTrigger
from scheduler.proposals import ProposalRequest
from scheduler.service import TriggerSpec
from scheduler.work_item_model import WorkItemStatus
from tests.reliability.figures import tally
from tests.reliability.hostile import db_snapshot

API_TOKEN = "tk_security_81f2a7c4d9e05b3a6c1d8e7f2a9b4c0d"
AGENT_SECRET = "agent-secret-3c9d1e7f5a2b8c4d6e0f"
AGENT_TOKEN = "sk-agent-token-7e5d3c1b9a8f6e4d2c0b"
SECRET_NAME = "Olga's acquisition plan"
PROBE = "/help"
PROBE_ANSWER = "/start — "


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def exchange(user: TgUser, text: str) -> list[BotMessage]:
    """Send `text`, then a probe; the bot's messages in between (updates are handled
    in order, so they are all the answers to `text`)."""
    user.mark_read()
    await user.send(text)
    await user.send(PROBE)
    replies: list[BotMessage] = []
    while True:
        reply = await user.wait_reply(timeout=10)
        if (reply.text or "").startswith(PROBE_ANSWER):
            return replies
        replies.append(reply)


async def press(user: TgUser, data: str, message_id: int | None = None) -> list[str]:
    """Press a button with `data` (on the newest message unless told): the answer and
    what followed."""
    user.mark_read()
    query = await user.press_data(data, message_id or user.last_reply().message_id)
    await user.send(PROBE)
    texts: list[str] = []
    while True:
        reply = await user.wait_reply(timeout=10)
        if (reply.text or "").startswith(PROBE_ANSWER):
            break
        texts.append(reply.text or "")
    answer = await user.server.wait_answered(query)
    return [str(answer.get("text")), *texts]


@pytest_asyncio.fixture
async def served(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> AsyncIterator[tuple[BotHarness, aiohttp.ClientSession]]:
    port = free_port()
    harness = await start_bot(
        telegram_server,
        agent_stub,
        tmp_path / "bot.db",
        http_port=port,
        api_token=API_TOKEN,
        agent_secret=AGENT_SECRET,
        agent_token=AGENT_TOKEN,
    )
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            yield harness, http
    finally:
        await stop_bot(harness)


async def olga_data(bot: BotHarness) -> dict[str, str]:
    """Olga's chat: a schedule, runs waiting on a button, work items, proposals."""
    svc = bot.services
    now = bot.clock.now()
    schedule = await svc.service.create_schedule(
        OLGA,
        Owner(id=OLGA, first_name="Olga"),
        name=SECRET_NAME,
        trigger=TriggerSpec(kind="cron", cron="0 9 * * *"),
        action=Action(text="Draft the plan."),
    )

    async def run(status: RunStatus, hours_ago: int) -> str:
        ident = new_id()
        await svc.store.runs.add(
            Run(
                id=ident,
                schedule_id=schedule.id,
                chat_id=OLGA,
                scheduled_for=now - timedelta(hours=hours_ago),
                trigger=RunTrigger.SCHEDULE,
                status=status,
                attempt=3,
                # Awaiting approval: its deadline, far enough not to pass in the test.
                next_attempt_at=now + timedelta(days=30)
                if status is RunStatus.AWAITING_APPROVAL
                else None,
                error="agent answered 500" if status is RunStatus.DEAD else None,
                created_at=now,
                updated_at=now,
            )
        )
        return ident

    assert svc.work_items is not None and svc.proposals is not None
    waiting = await svc.work_items.add_followup(
        OLGA, "Call the notary", now + timedelta(days=3), actor="olga"
    )
    await svc.work_items.create_from_fire(schedule, now - timedelta(hours=1), "Sign the deed")
    todo = next(
        i
        for i in await svc.store.work_items.list_work_items(OLGA, [WorkItemStatus.TODO])
        if i.title == "Sign the deed"
    )

    async def propose(name: str, cron: str, kind: ActionKind, hint: RiskTier | None) -> str:
        assert svc.proposals is not None
        proposal = await svc.proposals.propose(
            OLGA,
            ProposalRequest(
                name=name,
                trigger=TriggerSpec(kind="cron", cron=cron),
                action=Action(kind=kind, text="Do it."),
                risk_hint=hint,
            ),
            proposed_by="api",
        )
        return proposal.id

    return {
        "s": schedule.id,
        "r": await run(RunStatus.DEAD, 5),
        "ru": await run(RunStatus.UNKNOWN, 4),
        "rw": await run(RunStatus.AWAITING_APPROVAL, 3),
        "w": waiting.id,
        "wt": todo.id,
        "p": await propose("High", "*/5 * * * *", ActionKind.AGENT, RiskTier.HIGH),
        "pm": await propose("Medium", "0 */6 * * *", ActionKind.AGENT, None),
        "pl": await propose("Low", "0 9 * * *", ActionKind.REMINDER, None),
    }


COMMANDS = [
    "/show {s}",
    "/edit {s} name Mine now",
    "/edit {s} cron 0 8 * * *",
    "/edit {s} prompt Tell me {{last_output}}",
    "/pause {s}",
    "/resume {s}",
    "/delete {s}",
    "/runnow {s}",
    "/history {s}",
    "/backfill {s} 2026-11-01 2026-11-20",
    "/retry {r}",
    "/retry {ru}",
    "/done {w}",
    "/done {wt}",
    "/wait {wt} Bob 3d waiting on Bob",
    "/followup {w} sent 3d",
    "/followup {w} received",
    "/approve {p}",
    "/approve {rw}",
]
BUTTONS = [
    "s:show:{s}",
    "s:pause:{s}:c",
    "s:resume:{s}:c",
    "s:run:{s}:c",
    "s:run:{s}",
    "s:edit:{s}",
    "s:del:{s}",
    "s:arch:{s}",
    "s:keep:{s}",
    "s:hist:{s}",
    "s:hist:{s}:1",
    "r:retry:{r}",
    "r:done:{ru}",
    "r:drop:{r}",
    "r:approve:{rw}",
    "r:skip:{rw}",
    "p:approve:{p}",
    "p:reject:{pm}",
    "p:undo:{pl}",
    "m:latest:{s}:1795000000:1795400000",
    "m:skip:{s}:1795000000:1795400000",
    "b:ok:{s}:1795000000:1795400000",
    "w:done:{wt}",
    "w:wait:{w}",
]


def _key(template: str) -> str:
    return template.split("{")[1].split("}")[0]


async def test_no_command_button_or_api_call_reaches_another_chat(
    served: tuple[BotHarness, aiohttp.ClientSession], tmp_path: Path
) -> None:
    bot, http = served
    olga = await olga_data(bot)
    await asyncio.sleep(0.2)  # the proposals' announcements to Olga go out first
    before = db_snapshot(tmp_path / "bot.db")
    alice = bot.alice
    seen: list[str] = []

    for template in COMMANDS:
        key = _key(template)
        theirs, fake = olga[key], new_id()
        tally.add("inputs tried", 2)
        got = [r.text or "" for r in await exchange(alice, template.format(**{key: theirs}))]
        none = [r.text or "" for r in await exchange(alice, template.format(**{key: fake}))]
        assert [t.replace(theirs, "<id>") for t in got] == [t.replace(fake, "<id>") for t in none]
        seen += got

    await exchange(alice, "/start")  # a message to press the forged buttons on
    for template in BUTTONS:
        key = _key(template)
        theirs, fake = olga[key], new_id()
        tally.add("inputs tried", 2)
        got = await press(alice, template.format(**{key: theirs}))
        none = await press(alice, template.format(**{key: fake}))
        assert [t.replace(theirs, "<id>") for t in got] == [t.replace(fake, "<id>") for t in none]
        seen += got

    auth = {"Authorization": f"Bearer {API_TOKEN}"}

    async def call(method: str, path: str, **kwargs: Any) -> tuple[int, str]:
        tally.add("inputs tried")
        async with http.request(method, path, headers=auth, **kwargs) as response:
            return response.status, await response.text()

    theirs, fake = olga["s"], new_id()
    for action in ("pause", "resume", "archive", "run"):
        path = f"/api/v1/chats/{ALICE}/schedules/{{}}/{action}"
        status, body = await call("POST", path.format(theirs))
        status_none, body_none = await call("POST", path.format(fake))
        assert status == status_none == 404
        assert body.replace(theirs, "<id>") == body_none.replace(fake, "<id>")
    status, body = await call("GET", f"/api/v1/chats/{ALICE}/runs", params={"schedule_id": theirs})
    status_none, body_none = await call(
        "GET", f"/api/v1/chats/{ALICE}/runs", params={"schedule_id": fake}
    )
    assert status == status_none == 404
    assert body.replace(theirs, "<id>") == body_none.replace(fake, "<id>")
    status, body = await call("GET", f"/api/v1/chats/{ALICE}/schedules")
    assert status == 200 and theirs not in body
    # A chat off the allow-list is as absent as one that does not exist.
    status, body = await call("GET", "/api/v1/chats/6666/schedules")
    status_none, body_none = await call("GET", "/api/v1/chats/99999/schedules")
    assert status == status_none == 404
    assert body.replace("6666", "<chat>") == body_none.replace("99999", "<chat>")

    assert all(SECRET_NAME not in text for text in seen)
    assert all(SECRET_NAME not in (m.text or "") for m in alice.messages)
    assert db_snapshot(tmp_path / "bot.db") == before, "Alice changed Olga's data"


# --- tokens ---------------------------------------------------------------------------------
def _leaks(text: str, secrets: list[str], where: str) -> list[str]:
    return [f"{where} holds {secret[:12]}…" for secret in secrets if secret in text]


async def test_tokens_never_appear_in_logs_replies_or_exports(
    served: tuple[BotHarness, aiohttp.ClientSession],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    bot, http = served
    secrets = [bot.server.token, API_TOKEN, AGENT_SECRET, AGENT_TOKEN]
    alice, svc = bot.alice, bot.services

    # An operator's session: a schedule, a run, an agent that fails for good.
    await exchange(alice, "/start")
    preview = (await exchange(alice, "/new daily 09:00 Prepare the brief for {date}."))[-1]
    await press(alice, preview.callback_data("Save") or "", preview.message_id)
    schedule = (await svc.store.schedules.list_for_chat(ALICE))[0]
    await exchange(alice, f"/runnow {schedule.id}")
    await bot.agent.wait_for_requests(1)
    bot.agent.respond_with(500)
    await exchange(alice, f"/runnow {schedule.id}")
    for _ in range(6):
        await bot.clock.advance(timedelta(minutes=20))
        await asyncio.sleep(0.05)
    await alice.wait_reply(timeout=10, containing="failed after")
    tally.add("faults injected")

    # A handler that crashes.
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(svc.service, "history", broken)
    await alice.send("/history")
    await alice.send(PROBE)
    await alice.wait_reply(timeout=10, containing=PROBE_ANSWER)
    tally.add("faults injected")
    monkeypatch.undo()

    # The API: a wrong token, the right one, a failure inside.
    async with http.get(
        f"/api/v1/chats/{ALICE}/schedules", headers={"Authorization": "Bearer wrong-token-123456"}
    ) as response:
        assert response.status == 401
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    async with http.get(f"/api/v1/chats/{ALICE}/schedules", headers=auth) as response:
        assert response.status == 200
    monkeypatch.setattr(svc.service, "list_schedules", broken)
    async with http.get(f"/api/v1/chats/{ALICE}/schedules", headers=auth) as response:
        assert response.status == 500
    tally.add("faults injected")
    monkeypatch.undo()

    # /export and `tickler export`.
    exported = next(r for r in await exchange(alice, "/export") if r.document_data)
    assert exported.document_data is not None
    problems: list[str] = []
    with zipfile.ZipFile(io.BytesIO(exported.document_data)) as archive:
        for name in archive.namelist():
            text = archive.read(name).decode("utf-8", errors="replace")
            problems += _leaks(text, secrets, f"/export {name}")
    out = tmp_path / "export"
    env = {
        **os.environ,
        "TELEGRAM_BOT_TOKEN": bot.server.token,
        "API_TOKEN": API_TOKEN,
        "AGENT_SECRET": AGENT_SECRET,
        "AGENT_TOKEN": AGENT_TOKEN,
        "AGENT_URL": bot.agent.url,
        "ADMIN_IDS": str(ALICE),
        "DATABASE_PATH": str(tmp_path / "bot.db"),
    }
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "export",
        str(out),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await cli.communicate()
    assert cli.returncode == 0, stderr.decode()
    problems += _leaks(stdout.decode() + stderr.decode(), secrets, "tickler export's output")
    for file in sorted(out.rglob("*")):
        if file.is_file():
            problems += _leaks(
                file.read_text(errors="replace"), secrets, f"tickler export {file.name}"
            )

    # Everything the bot said, and everything logged.
    for call in bot.server.calls:
        if call.method.lower() != "getupdates":
            shown = " ".join(str(call.params.get(k, "")) for k in ("text", "caption"))
            problems += _leaks(shown, secrets, f"the bot's {call.method}")
    problems += _leaks(caplog.text, secrets, "the log")
    for record in caplog.records:
        problems += _leaks(record.getMessage(), secrets, f"log record {record.name}")
    assert problems == []
    # The logs did see the Bot API URLs and the failures; they were scrubbed, not absent.
    assert any(r.name == "httpx" for r in caplog.records)
    assert "***" in caplog.text
    assert any(r.levelno >= logging.ERROR and r.exc_text for r in caplog.records)
