"""The bot on PostgreSQL (DATABASE_URL), and one Telegram side across replicas: two
real bots (bot/demo_kit/harness.py) share one throwaway PostgreSQL database and the
strict test Bot API server; one polls and sends the outbox, the other takes over when
it stops or loses its lock's connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from bot import redact
from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, BotHarness, start_bot, stop_bot
from bot.demo_kit.telegram_server import TelegramServer
from bot.runtime import log_started, open_database
from bot.settings import load_settings
from bot.telegram_side import TelegramSide
from storage.postgres.leadership import Leadership
from tests import postgres

#: Short, so that a takeover takes a fraction of a second here.
RETRY_S = 0.2


def side(bot: BotHarness) -> TelegramSide:
    found = bot.app.started.telegram
    assert found is not None
    return found


def polls(bot: BotHarness) -> bool:
    return bot.app.updater is not None and bot.app.updater.running


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def answered(bot: BotHarness) -> None:
    bot.alice.mark_read()
    await bot.alice.send("/start")
    await bot.alice.wait_reply(containing="/new")


def conflicts(server: TelegramServer) -> list[str]:
    """getUpdates calls answered 409: two pollers at once."""
    return [e.description for e in server.errors if e.method.lower() == "getupdates"]


def sent(server: TelegramServer, text: str) -> int:
    return sum(1 for call in server.calls_to("sendMessage") if call.get("text") == text)


async def started(
    server: TelegramServer, agent: AgentStub, folder: Path, url: str, retry: float = RETRY_S
) -> BotHarness:
    return await start_bot(
        server, agent, folder / "unused.db", database_url=url, leader_retry_seconds=retry
    )


async def test_the_bot_on_postgresql_answers_and_keeps_what_the_chat_made_there(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path, postgres_url: str
) -> None:
    bot = await started(telegram_server, agent_stub, tmp_path, postgres_url)
    try:
        assert side(bot).leading and polls(bot)
        await answered(bot)
        await bot.alice.send("/new daily 09:00 Prepare my brief")
        await bot.alice.wait_reply(containing="Next:")
        await bot.alice.press("Save")
        await bot.alice.wait_reply(containing="Saved")
    finally:
        await stop_bot(bot)
    assert not (tmp_path / "unused.db").exists()
    conn = await asyncpg.connect(postgres_url)
    try:
        rows = await conn.fetch("SELECT chat_id, name, trigger_json FROM schedules")
    finally:
        await conn.close()
    assert [(r["chat_id"], r["name"]) for r in rows] == [(ALICE, "Prepare my brief")]
    assert '"0 9 * * *"' in rows[0]["trigger_json"]


async def test_one_replica_polls_and_sends_and_the_other_takes_over_when_it_stops(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path, postgres_url: str
) -> None:
    first = await started(telegram_server, agent_stub, tmp_path / "a", postgres_url)
    second = await started(telegram_server, agent_stub, tmp_path / "b", postgres_url)
    try:
        assert side(first).leading and polls(first)
        assert not side(second).leading and not polls(second)
        assert not second.services.notifier.outbox.sending
        await answered(first)

        # A message the follower's engine queues goes out once, through the leader.
        text = "Queued by the replica that does not send"
        await second.services.notifier.notify(ALICE, text, kind="notice")
        await first.alice.wait_reply(containing=text)
        await asyncio.sleep(5 * RETRY_S)  # a few confirmations: nobody sends it again
        assert sent(telegram_server, text) == 1

        await stop_bot(first)
        await eventually(lambda: side(second).leading and polls(second))
        assert second.services.notifier.outbox.sending
        await answered(second)
        text = "Sent by the replica that took over"
        await second.services.notifier.notify(ALICE, text, kind="notice")
        await second.alice.wait_reply(containing=text)
        assert sent(telegram_server, text) == 1
        assert conflicts(telegram_server) == []
    finally:
        for bot in (first, second):
            if bot.app.started.engine is not None:
                await stop_bot(bot)


async def test_a_leader_that_loses_its_lock_connection_stops_and_the_other_takes_over(
    telegram_server: TelegramServer,
    agent_stub: AgentStub,
    tmp_path: Path,
    postgres_url: str,
    pg_cluster: postgres.Cluster,
) -> None:
    # The first retries slowly: once it lost the lock, the second is the one to take it.
    first = await started(telegram_server, agent_stub, tmp_path / "a", postgres_url, retry=60)
    second = await started(telegram_server, agent_stub, tmp_path / "b", postgres_url)
    try:
        assert side(first).leading and not side(second).leading
        lease = side(first).lease
        assert isinstance(lease, Leadership)
        # As when the leader's network fails: the server ends its lock's session.
        database = postgres_url.rsplit("/", 1)[1]
        high, low = (lease.key >> 32) & 0xFFFFFFFF, lease.key & 0xFFFFFFFF
        ended = await asyncio.to_thread(
            pg_cluster.psql,
            "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l JOIN pg_database d "
            f"ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = '{database}' "
            f"AND l.granted AND l.classid = {high} AND l.objid = {low} AND l.objsubid = 1",
        )
        assert ended.strip() == "1"
        await eventually(lambda: not side(first).leading and not polls(first))
        assert not first.services.notifier.outbox.sending
        await eventually(lambda: side(second).leading and polls(second))
        await answered(second)
        text = "After the takeover"
        await first.services.notifier.notify(ALICE, text, kind="notice")
        await second.alice.wait_reply(containing=text)
        await asyncio.sleep(5 * RETRY_S)
        assert sent(telegram_server, text) == 1
        assert conflicts(telegram_server) == []
    finally:
        await stop_bot(second)
        await stop_bot(first)


async def test_a_reminder_queued_by_a_replica_that_does_not_send_is_confirmed_by_the_row(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path, postgres_url: str
) -> None:
    first = await started(telegram_server, agent_stub, tmp_path / "a", postgres_url)
    second = await started(telegram_server, agent_stub, tmp_path / "b", postgres_url)
    try:
        send: Callable[[int, str], Awaitable[None]] = second.services.notifier.send_reminder
        await send(ALICE, "Stretch")  # returns once the leader's courier took it
        assert sent(telegram_server, "🔔 Stretch") == 1
    finally:
        await stop_bot(second)
        await stop_bot(first)


async def test_the_started_line_names_the_postgresql_database_without_its_password(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    password = "started-line-password"
    url = postgres_url.replace("postgres@", f"postgres:{password}@")
    settings = load_settings({"AGENT_URL": "http://127.0.0.1:9/", "DATABASE_URL": url})
    redact.install(redact.secrets_of(settings))
    store = await open_database(settings)
    try:
        with caplog.at_level(logging.INFO, logger="tickler"):
            await log_started(settings, store, "engine")
    finally:
        await store.close()
    [record] = [r for r in caplog.records if r.getMessage() == "started"]
    assert record.__dict__["database"] == postgres_url.replace("postgres@", "postgres:***@")
    assert password not in caplog.text
