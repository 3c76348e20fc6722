"""/today, /followup, /wait and /done end to end: the real bot, the Bot API test
server and a fake clock (Mon 2026-11-23 07:00 UTC = 08:00 Berlin)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, BotHarness, start_bot, stop_bot
from bot.demo_kit.telegram_server import TelegramServer
from scheduler.models import Action, ActionKind, Owner
from scheduler.service import TriggerSpec
from scheduler.work_item_model import WorkItem, WorkItemStatus
from tests.engine_calls import list_notifications
from tests.test_bot_schedules import eventually, toast

DAILY_9 = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")


async def all_items(bot: BotHarness) -> list[WorkItem]:
    return await bot.services.store.work_items.list_work_items(ALICE, list(WorkItemStatus))


async def test_a_task_fire_shows_in_today_and_done_needs_its_link(bot: BotHarness) -> None:
    await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name="Backup",
        trigger=DAILY_9,
        action=Action(kind=ActionKind.TASK, text="Back up the mailing list", proof="link"),
    )
    await bot.alice.send("/today")
    empty = await bot.alice.wait_reply()
    assert "Nothing due today" in (empty.text or "")
    assert "No follow-ups due" in (empty.text or "")
    assert "No pending approvals" in (empty.text or "")

    await bot.clock.advance(timedelta(hours=1))  # 09:00 Berlin: the task fires

    async def made() -> bool:
        return len(await all_items(bot)) == 1

    await eventually(made)
    (item,) = await all_items(bot)
    await bot.alice.send("/today")
    home = await bot.alice.wait_reply(containing="Today")
    due_today = (home.text or "").split("Overdue")[0]
    assert "Back up the mailing list" in due_today and "needs a link" in due_today

    query = await bot.alice.press(f"w:done:{item.id}", home)
    assert "needs a link" in await toast(bot, query)
    await bot.alice.send(f"/done {item.id}")
    refused = await bot.alice.wait_reply(containing="link")
    assert "needs a link" in (refused.text or "")
    await bot.alice.send(f"/done {item.id} https://lists.example.org/backup")
    await bot.alice.wait_reply(containing="Done: Back up the mailing list")
    (after,) = await all_items(bot)
    assert after.status is WorkItemStatus.DONE
    assert after.proof_value == "https://lists.example.org/backup"


async def followup_pings(bot: BotHarness, chat_id: int) -> int:
    """Follow-up pings queued for the chat in the outbox, whether delivered yet or not."""
    return len(
        [n for n in await list_notifications(bot.services.store, chat_id) if n.kind == "followup"]
    )


async def test_a_sponsor_follow_up_pings_once_then_sent_then_received(bot: BotHarness) -> None:
    await bot.alice.send("/followup 3d Sponsor X about the invoice")
    created = await bot.alice.wait_reply()
    assert "Sponsor X about the invoice" in (created.text or "")
    (item,) = await all_items(bot)
    assert item.status is WorkItemStatus.WAITING

    await bot.alice.send("/today")
    before = await bot.alice.wait_reply()
    assert "No follow-ups due" in (before.text or "")
    assert "Sponsor X" in (before.text or "").split("Waiting")[1]

    await bot.clock.advance(timedelta(days=3))  # the follow-up date
    ping = await bot.alice.wait_reply(containing="Follow-up due")
    assert "Sponsor X about the invoice" in (ping.text or "")
    await bot.alice.send("/today")
    home = await bot.alice.wait_reply(containing="Today")
    followups = (home.text or "").split("Follow-ups due")[1].split("Waiting")[0]
    assert "Sponsor X" in followups

    # Later, no second ping: Olga's follow-up, due after Alice's, is pinged by a later
    # sweep, which would have queued a second ping of Alice's before it.
    await bot.olga.send("/followup 1h Marker")
    await bot.olga.wait_reply()
    await bot.clock.advance(timedelta(hours=2))
    await bot.olga.wait_reply(containing="Follow-up due: Marker")
    assert await followup_pings(bot, ALICE) == 1
    pings = [m for m in bot.alice.messages if "Follow-up due" in (m.text or "")]
    assert len(pings) == 1

    await bot.alice.send(f"/followup {item.id} sent 2d")
    assert "stays waiting" in ((await bot.alice.wait_reply()).text or "")
    sent = await bot.services.store.work_items.get_work_item(ALICE, item.id)
    assert sent is not None and sent.status is WorkItemStatus.WAITING
    assert sent.follow_up_at == bot.clock.now() + timedelta(days=2)
    await bot.alice.send("/today")
    home = await bot.alice.wait_reply(containing="Today")
    assert "No follow-ups due" in (home.text or "")

    await bot.alice.send(f"/followup {item.id} received")
    assert "back on your list" in ((await bot.alice.wait_reply()).text or "")
    back = await bot.services.store.work_items.get_work_item(ALICE, item.id)
    assert back is not None and back.status is WorkItemStatus.TODO
    history = await bot.services.store.work_items.work_item_history(item.id)
    assert [h.action for h in history] == [
        "follow-up created",
        "follow-up sent",
        "response received",
    ]


async def test_wait_needs_who_date_and_note(bot: BotHarness) -> None:
    await bot.alice.send("/followup 1d Ping the printer")
    await bot.alice.wait_reply()
    (item,) = await all_items(bot)
    await bot.alice.send(f"/followup {item.id} received")
    await bot.alice.wait_reply()
    await bot.alice.send(f"/wait {item.id} Printer")
    assert "Use /wait ITEM WHO DATE NOTE" in ((await bot.alice.wait_reply()).text or "")
    await bot.alice.send(f"/wait {item.id} Printer 2026-12-01 asked for a quote")
    assert "waits for Printer" in ((await bot.alice.wait_reply()).text or "")
    waiting = await bot.services.store.work_items.get_work_item(ALICE, item.id)
    assert waiting is not None and waiting.status is WorkItemStatus.WAITING


async def test_new_one_line_task(bot: BotHarness) -> None:
    await bot.alice.send("/new task weekly mon 09:00 Back up the mailing list")
    preview = await bot.alice.wait_reply()
    assert "Adds a task" in (preview.text or "")


async def test_a_restart_does_not_ping_a_follow_up_twice(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> None:
    db = tmp_path / "bot.db"
    first = await start_bot(telegram_server, agent_stub, db)
    try:
        await first.alice.send("/followup 1d Sponsor Y about the logo")
        await first.alice.wait_reply()
        await first.clock.advance(timedelta(days=1))
        await first.alice.wait_reply(containing="Follow-up due")
    finally:
        await stop_bot(first)
    clock = FakeClock(first.clock.now() + timedelta(minutes=5))
    second = await start_bot(telegram_server, agent_stub, db, clock=clock)
    try:
        await second.alice.send("/today")
        home = await second.alice.wait_reply(containing="Today")
        assert "Sponsor Y" in (home.text or "").split("Follow-ups due")[1]
        # The restarted sweep's passes: the one at start, then the one that pings Olga's
        # later follow-up; neither pings Alice's again.
        await second.olga.send("/followup 1h Marker")
        await second.olga.wait_reply()
        await second.clock.advance(timedelta(hours=1))
        await second.olga.wait_reply(containing="Follow-up due: Marker")
        assert await followup_pings(second, ALICE) == 1
        pings = [m for m in second.alice.messages if "Follow-up due" in (m.text or "")]
        assert len(pings) == 1
    finally:
        await stop_bot(second)


async def test_a_file_proof_is_a_file_sent_with_done_as_its_caption(bot: BotHarness) -> None:
    items = bot.services.work_items
    assert items is not None
    schedule = await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name="Tax report",
        trigger=TriggerSpec(kind="cron", cron="0 9 1 * *", timezone="Europe/Berlin"),
        action=Action(kind=ActionKind.TASK, text="Send the tax report", proof="file"),
    )
    assert schedule.next_run_at is not None
    await bot.clock.set(schedule.next_run_at)
    await bot.alice.wait_reply(containing="New task")
    [item] = await all_items(bot)
    await bot.alice.send(f"/done {item.id} report.pdf")
    refused = await bot.alice.wait_reply()
    assert refused.text == (
        f"Item {item.id} needs a file as proof; send the file to this chat with "
        f"/done {item.id} as its caption."
    )
    chat = bot.server.user(ALICE)
    bot.server.enqueue_update(
        "message",
        {
            "message_id": 9001,
            "from": chat.user_json,
            "chat": {"id": ALICE, "type": "private", "first_name": "Alice"},
            "date": 1795503600,
            "document": {
                "file_id": "DOC-1",
                "file_unique_id": "U-DOC-1",
                "file_name": "tax-report.pdf",
            },
            "caption": f"/done {item.id}",
        },
    )
    accepted = await bot.alice.wait_reply(containing="Done")
    assert accepted.text == "Done: Send the tax report (proof: tax-report.pdf)."
    [done] = await all_items(bot)
    assert done.status is WorkItemStatus.DONE
    assert done.proof_value == "file:DOC-1 tax-report.pdf"
