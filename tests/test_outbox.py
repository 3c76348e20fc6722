"""The outbox: chat messages are written before they are sent, so a Telegram outage and
a restart in the middle of it delay them instead of losing them; 400 gives a message up
(logged), 403 marks it and the chat blocked; each sent row keeps Telegram's message id."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, OLGA, BotHarness, start_bot, stop_bot
from bot.demo_kit.telegram_server import TelegramServer
from bot.notifier import TelegramNotifier
from scheduler.dispatching import DispatchError
from scheduler.models import Action, Owner
from scheduler.repositories import Notification, NotificationStatus
from scheduler.service import TriggerSpec
from tests.engine_calls import list_notifications

NINE_BERLIN = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
#: Telegram answering 502 to every message for the chat: down, as far as it can tell.
FOREVER = 100_000


def notifier_of(bot: BotHarness) -> TelegramNotifier:
    return bot.services.notifier


async def rows(bot: BotHarness, chat_id: int = ALICE) -> list[Notification]:
    return await list_notifications(bot.services.store, chat_id)


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def test_messages_queued_while_telegram_is_down_arrive_once_in_order_after_a_restart(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> None:
    db = tmp_path / "bot.db"
    first = await start_bot(telegram_server, agent_stub, db, agent_mode="openai")
    try:
        telegram_server.fail_next("sendMessage", 502, count=FOREVER, chat_id=ALICE)
        agent_stub.openai_answer("Two meetings and a deadline.")
        await first.services.service.create_schedule(
            ALICE,
            Owner(id=ALICE, first_name="Alice"),
            name="Brief",
            trigger=TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin"),
            action=Action(text="Prepare my brief."),
        )
        await first.clock.set(NINE_BERLIN)  # the run's answer is the first message
        await until(lambda: _count(first, 1))
        for i in range(1, 5):
            await notifier_of(first).notify(ALICE, f"note {i}", kind="notice")

        async def all_tried() -> bool:
            queued = await rows(first)
            return len(queued) == 5 and queued[0].attempts >= 2

        await until(all_tried)
    finally:
        began = time.monotonic()
        await stop_bot(first)
        print(f"stopped in {time.monotonic() - began:.2f} s with Telegram down")
    queued = await _read_rows(db)
    assert [n.status for n in queued] == [NotificationStatus.PENDING] * 5
    assert queued[0].kind == "run_answer" and queued[0].run_id is not None
    assert queued[0].last_error == "Bad Gateway"
    assert first.alice.messages == []  # nothing got through

    telegram_server.reset_faults()  # Telegram is back
    second = await start_bot(telegram_server, agent_stub, db, clock=first.clock)
    try:
        await until(lambda: _all_sent(second))
        texts = [m.text for m in second.alice.messages]
        assert texts == [
            "Brief\nTwo meetings and a deadline.",
            "note 1",
            "note 2",
            "note 3",
            "note 4",
        ]
        sent = await rows(second)
        assert [n.message_id for n in sent] == [m.message_id for m in second.alice.messages]
        assert all(n.sent_at is not None for n in sent)
    finally:
        await stop_bot(second)


async def _count(bot: BotHarness, n: int) -> bool:
    return len(await rows(bot)) == n


async def _all_settled(bot: BotHarness) -> bool:
    return all(n.status is not NotificationStatus.PENDING for n in await rows(bot))


async def _all_sent(bot: BotHarness) -> bool:
    return all(n.status is NotificationStatus.SENT for n in await rows(bot))


async def _read_rows(db: Path) -> list[Notification]:
    from storage.sqlite_store import SqliteStore

    async with await SqliteStore.open(db) as store:
        return await list_notifications(store, ALICE)


async def test_a_message_queued_a_day_before_it_goes_out_says_when_it_was_queued(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> None:
    db = tmp_path / "bot.db"
    first = await start_bot(telegram_server, agent_stub, db)
    try:
        telegram_server.fail_next("sendMessage", 502, count=FOREVER, chat_id=ALICE)
        await notifier_of(first).notify(ALICE, "The <b>backup</b> failed.", kind="alert")
        await until(lambda: _tried(first))
    finally:
        await stop_bot(first)
    telegram_server.reset_faults()
    later = FakeClock(first.clock.now() + timedelta(hours=30))
    second = await start_bot(telegram_server, agent_stub, db, clock=later)
    try:
        message = await second.alice.wait_reply(containing="backup")
        assert message.text == "(delayed: queued at Mon 23 Nov 07:00 (+00:00))\nThe backup failed."
    finally:
        await stop_bot(second)


async def _tried(bot: BotHarness) -> bool:
    return any(n.attempts for n in await rows(bot))


async def test_a_message_telegram_refuses_is_given_up_logged_and_the_next_one_goes_out(
    bot: BotHarness, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = notifier_of(bot)
    with caplog.at_level(logging.ERROR, logger="tickler.notify"):
        await notifier.notify(ALICE, "<b>never closed", kind="notice")
        await notifier.notify(ALICE, "the next one", kind="notice")
        after = await bot.alice.wait_reply()
    assert after.text == "the next one"
    await until(lambda: _all_settled(bot))
    refused, sent = await rows(bot)
    assert refused.status is NotificationStatus.GIVEN_UP
    assert "Can't parse entities" in (refused.last_error or "")
    assert refused.message_id is None
    assert (sent.status, sent.message_id) == (NotificationStatus.SENT, after.message_id)
    [record] = [r for r in caplog.records if r.getMessage() == "Telegram refused a message"]
    assert record.levelno == logging.ERROR and record.__dict__["notification_id"] == refused.id


async def test_a_chat_that_blocked_the_bot_gets_its_messages_marked_blocked(
    bot: BotHarness,
) -> None:
    notifier = notifier_of(bot)
    bot.server.block(ALICE)
    await notifier.notify(ALICE, "one", kind="notice")
    await notifier.notify(ALICE, "two", kind="notice")
    await notifier.notify(OLGA, "for Olga", kind="notice")
    await bot.olga.wait_reply(containing="for Olga")

    async def settled() -> bool:
        return all(n.status is NotificationStatus.BLOCKED for n in await rows(bot))

    await until(settled)
    assert (await bot.services.store.chats.get(ALICE)).blocked_at is not None
    tried = [c for c in bot.server.calls_to("sendMessage") if c["chat_id"] == ALICE]
    assert len(tried) == 1  # "two" was never tried: the chat had refused "one"

    await notifier.notify(ALICE, "three", kind="notice")
    assert [n.status for n in await rows(bot)] == [NotificationStatus.BLOCKED] * 3
    # Alice unblocks the bot and writes: a message queued now reaches her, behind any
    # of hers still waiting, and none of the blocked ones was tried since "one".
    bot.server.unblock(ALICE)
    await bot.alice.send("/start")
    await bot.alice.wait_reply()
    await notifier.notify(ALICE, "four", kind="notice")
    await bot.alice.wait_reply(containing="four")
    texts = [c["text"] for c in bot.server.calls_to("sendMessage") if c["chat_id"] == ALICE]
    assert texts[0] == "one" and texts[-1] == "four"
    assert not {"two", "three"} & set(texts)
    [olga] = await rows(bot, OLGA)
    assert olga.status is NotificationStatus.SENT


async def test_a_reminder_telegram_cannot_take_fails_its_run_and_is_not_sent_later(
    bot: BotHarness,
) -> None:
    notifier = notifier_of(bot)
    bot.server.fail_next("sendMessage", 502, count=FOREVER, chat_id=ALICE)
    began = time.monotonic()
    with pytest.raises(DispatchError, match="could not be delivered"):
        await notifier.send_reminder(ALICE, "Water the plants")
    print(f"the reminder gave up after {time.monotonic() - began:.1f} s")
    [reminder] = await rows(bot)
    assert (reminder.kind, reminder.status) == ("reminder", NotificationStatus.GIVEN_UP)

    bot.server.reset_faults()  # Telegram is back: the run's retry is the only copy
    await notifier.send_reminder(ALICE, "Water the plants")
    assert [m.text for m in bot.alice.messages] == ["🔔 Water the plants"]
    assert [n.status for n in await rows(bot)] == [
        NotificationStatus.GIVEN_UP,
        NotificationStatus.SENT,
    ]
