"""Start-up as an operator meets it, with Tickler as a real process (`python -m bot`):
Telegram down at start is waited for while the engine works; a start-up that cannot go
on ends in one line and a non-zero status, never in a process that serves nothing and
ignores SIGTERM, and that includes a schedules.yaml that cannot be applied as a whole."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from adapters.clocks import SystemClock
from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.telegram_server import TelegramServer
from scheduler.models import Action, Owner
from scheduler.service import ScheduleService, TriggerSpec
from storage.sqlite_store import SqliteStore
from tests.reliability.process import Launcher, free_port, tickler_env
from tests.reliability.tcp_gate import TcpGate

CHAT = 77
ANSWER = "Here is your morning brief."


async def seed_due(db_path: Path) -> str:
    """A schedule due at once: an interval's first fire is its start instant."""
    async with await SqliteStore.open(db_path) as store:
        schedule = await ScheduleService(store, SystemClock()).create_schedule(
            CHAT,
            Owner(id=CHAT, first_name="Ada"),
            name="Morning brief",
            trigger=TriggerSpec(kind="interval", every_seconds=86400),
            action=Action(text="Write the morning brief."),
        )
    return schedule.id


def pending_messages(db_path: Path) -> int:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
        row = db.execute(
            "SELECT COUNT(*) FROM notifications WHERE chat_id = ? AND status = 'pending'", (CHAT,)
        ).fetchone()
    return int(row[0])


@pytest.mark.timeout(120)
async def test_telegram_down_at_start_the_engine_fires_and_the_chat_gets_it_once_back(
    tmp_path: Path, agent_stub: AgentStub, telegram_server: TelegramServer
) -> None:
    db_path = tmp_path / "tickler.db"
    await seed_due(db_path)
    agent_stub.openai_answer(ANSWER)
    ada = telegram_server.user(CHAT, "Ada")
    gate = TcpGate.in_front_of(telegram_server.url)
    # Open and shut: a fixed port with nothing listening, as a Bot API that is down.
    await gate.open()
    await gate.shut()
    try:
        async with Launcher(tmp_path / "logs") as launch:
            proc = launch(
                db_path,
                telegram=telegram_server,
                telegram_url=gate.url,
                agent_url=agent_stub.openai_url,
                agent_mode="openai",
                admin_ids=(CHAT,),
                http_port=free_port(),
            )
            await proc.start()
            # The due schedule fires although Telegram never answered.
            await agent_stub.wait_for_requests(1, timeout=30)
            async with asyncio.timeout(30):
                while await asyncio.to_thread(pending_messages, db_path) == 0:
                    assert proc.running, proc.log_tail()
                    await asyncio.sleep(0.05)
            status, health = await proc.health()
            assert status == 200, health
            assert health["telegram_connected"] is False
            assert "Telegram is not reachable yet" in proc.log_text()
            assert ada.messages == []

            await gate.open()
            answer = await ada.wait_reply(timeout=60, containing=ANSWER)
            assert "Morning brief" in (answer.text or "")
            _, health = await proc.health()
            assert health["telegram_connected"] is True
            code, _ = await proc.terminate()
            assert code == 0
            assert [m.text for m in ada.messages if ANSWER in (m.text or "")] == [answer.text]
    finally:
        await gate.shut()


async def run_to_exit(env: dict[str, str], cwd: Path, seconds: float = 5.0) -> tuple[int, str]:
    """Start `python -m bot` and wait for it to end by itself within `seconds`: (status,
    what it wrote). A process still alive then is killed and the test fails."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    started = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        pytest.fail(f"still running after {time.monotonic() - started:.0f} s:\n{out.decode()}")
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"SQLite format 3\x00" + b"\xff" * 4096, "cannot be read"),
        (b"this is not a database, just a text file\n" * 200, "not a SQLite database"),
    ],
    ids=["corrupt", "not-sqlite"],
)
async def test_an_unreadable_database_ends_start_up_in_one_line(
    tmp_path: Path,
    telegram_server: TelegramServer,
    agent_stub: AgentStub,
    content: bytes,
    words: str,
) -> None:
    db_path = tmp_path / "tickler.db"
    db_path.write_bytes(content)
    env = tickler_env(db_path, agent_url=agent_stub.url, telegram=telegram_server)
    code, out = await run_to_exit(env, tmp_path)
    lines = out.splitlines()
    assert code != 0
    assert len(lines) == 1, out
    assert words in lines[0] and str(db_path) in lines[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("yaml", "error"),
    [
        (
            b"schedules:\n"
            b"  - {id: s1, chat_id: 1001, name: One, every: 1d, remind: Hi.}\n"
            b"  - {id: s1, chat_id: 2002, name: Two, every: 1d, remind: Hi.}\n",
            "schedules.yaml line 3: the id 's1' is already used on line 2",
        ),
        (
            b"schedules:\n  - {id: s1, chat_id: 1001, name: Caf\xe9, every: 1d, remind: Hi.}\n",
            "schedules.yaml line 2: byte 0xe9 is not UTF-8 text",
        ),
    ],
    ids=["same-id-in-two-chats", "not-utf8"],
)
async def test_a_schedules_file_that_cannot_be_applied_ends_start_up_in_one_line(
    tmp_path: Path,
    telegram_server: TelegramServer,
    agent_stub: AgentStub,
    yaml: bytes,
    error: str,
) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_bytes(yaml)
    db_path = tmp_path / "tickler.db"
    env = tickler_env(
        db_path,
        agent_url=agent_stub.url,
        telegram=telegram_server,
        admin_ids=(1001, 2002),
        extra={"SCHEDULES_FILE": str(path), "LOG_LEVEL": "WARNING"},
    )
    code, out = await run_to_exit(env, tmp_path)
    lines = out.splitlines()
    assert code == 2
    assert len(lines) == 1, out
    assert error in lines[0] and str(path) in lines[0]
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM schedules").fetchone() == (0,)


@pytest.mark.timeout(120)
async def test_the_headless_engine_applies_the_schedules_file_and_fires_it(
    tmp_path: Path, agent_stub: AgentStub
) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text(
        "schedules:\n"
        "  - {id: nightly, chat_id: 1001, name: Nightly, every: 1d, prompt: Tidy up.}\n",
        encoding="utf-8",
    )
    async with Launcher(tmp_path / "logs") as launch:
        proc = launch(
            tmp_path / "tickler.db",
            headless=True,
            agent_url=agent_stub.url,
            admin_ids=(1001,),
            extra={"SCHEDULES_FILE": str(path)},
        )
        await proc.start()
        [request] = await agent_stub.wait_for_requests(1, timeout=30)
        assert request.headers["idempotency-key"].startswith("nightly:")
        code, _ = await proc.terminate()
        assert code == 0
        assert "applied" in proc.log_text() and "1 created" in proc.log_text()


@pytest.mark.timeout(60)
async def test_a_token_telegram_rejects_ends_start_up_in_one_line(
    tmp_path: Path, telegram_server: TelegramServer, agent_stub: AgentStub
) -> None:
    env = tickler_env(tmp_path / "tickler.db", agent_url=agent_stub.url, telegram=telegram_server)
    env["TELEGRAM_BOT_TOKEN"] = "7000000002:AAE-a-token-this-server-does-not-know"
    code, out = await run_to_exit(env, tmp_path, seconds=15)
    lines = out.splitlines()
    assert code == 2
    assert lines[-1] == (
        "Telegram rejected TELEGRAM_BOT_TOKEN (getMe answered Unauthorized): copy the token "
        "again from @BotFather."
    )
    assert "AAE-a-token" not in out
