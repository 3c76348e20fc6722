"""Tickler as a separate process (`python -m bot`: the bot polling the test Bot API
server, and its engine) on a real SQLite file, killed with SIGKILL or stopped with
SIGTERM in the middle of work, then started again: the run ledger loses nothing and
doubles nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from adapters.clocks import SystemClock
from bot.demo_kit.agent_stub import HANG, AgentStub, RecordedRequest
from bot.demo_kit.telegram_server import TelegramServer
from scheduler.models import Action, ActionKind, Owner, RunStatus, Step
from scheduler.service import ScheduleService, TriggerSpec
from storage.sqlite_store import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
CHAT = 77


class BotProcess:
    def __init__(
        self, db_path: Path, agent_url: str, grace: float, telegram: TelegramServer
    ) -> None:
        self.env = {
            **os.environ,
            "TELEGRAM_BOT_TOKEN": telegram.token,
            "TELEGRAM_API_BASE_URL": telegram.url,
            "ADMIN_IDS": str(CHAT),
            "DATABASE_PATH": str(db_path),
            "AGENT_URL": agent_url,
            "AGENT_SECRET": "proc-secret",
            "SHUTDOWN_GRACE_SECONDS": str(grace),
            "HTTP_PORT": "0",
            "PYTHONUNBUFFERED": "1",
        }
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            cwd=ROOT,
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=None,
        )

    async def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        async with asyncio.timeout(30):
            return await self.proc.wait()

    async def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


Launch = Callable[[float], BotProcess]


@pytest.fixture
async def launch(
    db_path: Path, agent_stub: AgentStub, telegram_server: TelegramServer
) -> AsyncIterator[Launch]:
    """`launch(grace)` prepares a Tickler process on this test's database, agent and
    Bot API server; every one is killed at the end if still running."""
    started: list[BotProcess] = []

    def make(grace: float) -> BotProcess:
        process = BotProcess(db_path, agent_stub.url, grace, telegram_server)
        started.append(process)
        return process

    yield make
    for p in started:
        await p.ensure_stopped()


async def seed(db_path: Path, count: int) -> list[str]:
    async with await SqliteStore.open(db_path) as store:
        service = ScheduleService(store, SystemClock())
        ids = []
        for i in range(count):
            schedule = await service.create_schedule(
                CHAT,
                Owner(id=CHAT, first_name="Ada"),
                name=f"job {i}",
                # Due right away: the first fire of an interval is its start instant.
                trigger=TriggerSpec(kind="interval", every_seconds=86400),
                action=Action(text="Do the thing."),
            )
            ids.append(schedule.id)
        return ids


def ledger(db_path: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(db_path) as db:
        return list(
            db.execute("SELECT schedule_id, status, attempt FROM runs ORDER BY schedule_id")
        )


async def wait_for(predicate: object, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
async def test_killed_mid_dispatch_the_next_start_retries_with_the_same_key(
    db_path: Path, agent_stub: AgentStub, launch: Launch
) -> None:
    [sid] = await seed(db_path, 1)
    agent_stub.hang()
    first = launch(20)
    await first.start()
    await agent_stub.wait_for_requests(1, timeout=30)
    assert await first.signal(signal.SIGKILL) == -signal.SIGKILL
    assert ledger(db_path) == [(sid, "running", 1)]

    agent_stub.respond_with(200)
    second = launch(20)
    await second.start()
    # The killed attempt was Tickler's fault, not the agent's: it is not counted.
    await wait_for(lambda: ledger(db_path) == [(sid, "succeeded", 1)])
    assert await second.signal(signal.SIGTERM) == 0

    keys = [r.headers["idempotency-key"] for r in agent_stub.requests]
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0].startswith(f"{sid}:")
    ids = [r.json["update_id"] for r in agent_stub.requests]
    assert ids[0] == ids[1]  # the synthetic update is the same delivery, so it dedups
    async with await SqliteStore.open(db_path) as store:
        [run] = await store.runs.list_for_chat(CHAT)
        attempts = await store.runs.attempts(CHAT, run.id)
    assert [a.status for a in attempts] == [RunStatus.PENDING, RunStatus.SUCCEEDED]
    assert (attempts[0].error or "").startswith("interrupted")


@pytest.mark.timeout(120)
async def test_killed_mid_plan_the_step_is_redelivered_with_its_key_and_the_next_runs_once(
    db_path: Path, agent_stub: AgentStub, launch: Launch
) -> None:
    """A plan of three steps, killed (SIGKILL) while its second step is at the agent:
    the next start redelivers that step under the key it had, then runs the third once
    under its own; no step is lost or doubled."""
    async with await SqliteStore.open(db_path) as store:
        schedule = await ScheduleService(store, SystemClock()).create_schedule(
            CHAT,
            Owner(id=CHAT, first_name="Ada"),
            name="nightly plan",
            trigger=TriggerSpec(kind="interval", every_seconds=86400),
            action=Action(
                kind=ActionKind.PLAN,
                steps=(
                    Step(title="Collect", text="Collect."),
                    Step(title="Summarise", text="Summarise."),
                    Step(title="Publish", text="Publish."),
                ),
            ),
        )

    def hold_step_2(request: RecordedRequest) -> object:
        return HANG if request.headers["idempotency-key"].endswith("#step-2") else 200

    def steps() -> list[tuple[int, str, str]]:
        with sqlite3.connect(db_path) as db:
            return list(
                db.execute(
                    "SELECT step, status, plan_run_id FROM runs WHERE schedule_id = ? "
                    "ORDER BY scheduled_for",
                    (schedule.id,),
                )
            )

    agent_stub.respond_with(hold_step_2)  # type: ignore[arg-type]
    first = launch(20)
    await first.start()
    await agent_stub.wait_for_requests(2, timeout=30)
    assert await first.signal(signal.SIGKILL) == -signal.SIGKILL
    [(_, _, plan_run)] = steps()[:1]
    assert steps() == [(0, "succeeded", plan_run), (1, "running", plan_run)]

    agent_stub.respond_with(200)
    second = launch(20)
    await second.start()
    await wait_for(lambda: [s[1] for s in steps()] == ["succeeded"] * 3)
    assert await second.signal(signal.SIGTERM) == 0
    assert steps() == [(n, "succeeded", plan_run) for n in range(3)]

    base = agent_stub.requests[0].headers["idempotency-key"].removesuffix("#step-1")
    keys = [r.headers["idempotency-key"] for r in agent_stub.requests]
    assert keys == [f"{base}#step-1", f"{base}#step-2", f"{base}#step-2", f"{base}#step-3"]
    ids = [r.json["update_id"] for r in agent_stub.requests]
    assert ids[1] == ids[2] and len(set(ids)) == 3


@pytest.mark.timeout(120)
async def test_sigterm_lets_in_flight_runs_finish_within_the_grace_period(
    db_path: Path, agent_stub: AgentStub, launch: Launch, telegram_server: TelegramServer
) -> None:
    ids = await seed(db_path, 5)
    agent_stub.delay(1.0)
    proc = launch(10)
    await proc.start()
    await agent_stub.wait_for_requests(5, timeout=30)
    # The engine starts before Telegram is reached; stop the whole bot, polling too.
    await telegram_server.wait_polling(timeout=30)
    assert await proc.signal(signal.SIGTERM) == 0
    assert ledger(db_path) == [(sid, "succeeded", 1) for sid in sorted(ids)]
    # It was the whole bot: it published its menu and polled for updates.
    assert telegram_server.calls_to("setMyCommands")
    assert telegram_server.calls_to("getUpdates")

    # A schedule due now, claimed by the fresh process with anything it would double;
    # a stop lets what it started reach the agent.
    [marker] = await seed(db_path, 1)
    again = launch(10)
    polls = len(telegram_server.calls_to("getUpdates"))
    await again.start()
    # The fresh process sends the marker once it has recovered (with its chance to double
    # anything) and polls once Telegram is connected; then a stop must be clean.
    await wait_for(lambda: any(key.startswith(marker) for key in agent_stub.count_by_key()))
    await wait_for(lambda: len(telegram_server.calls_to("getUpdates")) > polls)
    assert await again.signal(signal.SIGTERM) == 0
    assert len(agent_stub.requests) == 6
    assert set(agent_stub.count_by_key().values()) == {1}


@pytest.mark.timeout(120)
async def test_sigterm_past_the_grace_period_puts_runs_back_for_the_next_start(
    db_path: Path, agent_stub: AgentStub, launch: Launch
) -> None:
    ids = await seed(db_path, 5)
    agent_stub.hang()
    proc = launch(0.5)
    await proc.start()
    await agent_stub.wait_for_requests(5, timeout=30)
    assert await proc.signal(signal.SIGTERM) == 0
    assert ledger(db_path) == [(sid, "pending", 0) for sid in sorted(ids)]

    agent_stub.respond_with(200)
    again = launch(10)
    await again.start()
    await wait_for(lambda: ledger(db_path) == [(sid, "succeeded", 1) for sid in sorted(ids)])
    assert await again.signal(signal.SIGTERM) == 0
    # Each fire was delivered twice under one key (the first delivery was cut off),
    # and the ledger holds exactly one run per fire.
    assert sorted(agent_stub.count_by_key().values()) == [2] * 5


@pytest.mark.timeout(60)
async def test_webhook_mode_serves_pushed_updates(
    db_path: Path, agent_stub: AgentStub, telegram_server: TelegramServer, launch: Launch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = launch(5)
    proc.env.update(
        WEBHOOK_URL="https://tickler.example.org/tg-hook",
        WEBHOOK_SECRET="hook-secret",
        # The webhook is served by Tickler's one HTTP server, on WEBHOOK_URL's path.
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
    )
    await proc.start()
    await telegram_server.wait_for_call("setWebhook", timeout=30)
    assert telegram_server.webhook_url == "https://tickler.example.org/tg-hook"
    alice = telegram_server.user(CHAT, "Ada")
    update = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": 1795503600,
            "chat": {"id": CHAT, "type": "private", "first_name": "Ada"},
            "from": {"id": CHAT, "is_bot": False, "first_name": "Ada"},
            "text": "/start",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }
    url = f"http://127.0.0.1:{port}/tg-hook"
    async with aiohttp.ClientSession() as http:
        for _ in range(100):  # until the process listens
            try:
                async with http.post(url, json=update) as forged:
                    # Without Telegram's secret header the update is refused.
                    assert forged.status == 403
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
        headers = {"X-Telegram-Bot-Api-Secret-Token": "hook-secret"}
        async with http.post(url, json=update, headers=headers) as pushed:
            assert pushed.status == 200
    # A secret header that is not UTF-8 (the byte 0xf6) is a wrong secret, not a crash.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /tg-hook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n"
        b"X-Telegram-Bot-Api-Secret-Token: hook-secr\xf6t\r\n\r\n{}"
    )
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 403 "), answer[:200]
    reply = await alice.wait_reply(timeout=10)
    assert "keep your agent's recurring work on time" in (reply.text or "")
    assert await proc.signal(signal.SIGTERM) == 0
