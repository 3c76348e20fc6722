"""The bundle risk card (issue 20, item 2) end to end: the real bot against the strict
Bot API test server, a fake clock (Mon 2026-11-23 07:00 UTC = 08:00 Berlin) and the
agent stub. /today's "Active bundles" group, the `/bundle ID` card and its buttons:
open, add proof, mark waiting, follow-up sent, complete (refused while proof is
missing, with exactly what is missing), and the bundle done once every step is."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, START, BotHarness, start_bot, stop_bot
from bot.demo_kit.telegram_server import BotMessage, TelegramServer
from scheduler.bundle_model import Bundle, BundleStatus
from scheduler.bundles import BundleService, step_schedule_id
from scheduler.models import Owner, RunStatus
from scheduler.service import ScheduleService, TriggerSpec
from scheduler.work_item_model import WorkItemStatus
from scheduler.work_items import WorkItemService
from storage.sqlite_store import SqliteStore
from tests.test_bot_schedules import eventually, toast
from tests.test_bundles import NEWSLETTER


def text(message: BotMessage) -> str:
    return message.text or ""


async def made(bot: BotHarness, chat: int = ALICE) -> Bundle:
    """The one active bundle of `chat`, once the template's fire has made it."""
    store = bot.services.store

    async def one() -> bool:
        return len(await store.bundles.list_bundles(chat, [BundleStatus.ACTIVE])) == 1

    await eventually(one, timeout=5)
    [bundle] = await store.bundles.list_bundles(chat, [BundleStatus.ACTIVE])
    return bundle


async def test_today_and_the_bundle_card_show_the_risk_and_the_buttons_work(
    bot: BotHarness,
) -> None:
    template = await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name="Weekly newsletter",
        trigger=TriggerSpec(kind="cron", cron="0 9 * * 1", timezone="Europe/Berlin"),
        action=NEWSLETTER,
    )
    await bot.alice.send(f"/show {template.id}")
    shown = text(await bot.alice.wait_reply(containing="Weekly newsletter"))
    assert "Lead days: 7 (each bundle is made 7 days before its anchor date)" in shown
    assert "2. Task “Send draft to sponsor” — 2 days before; proof: link" in shown
    await bot.alice.send("/today")
    assert "No active bundles" in text(await bot.alice.wait_reply(containing="Today"))

    await bot.clock.advance(timedelta(hours=1))  # Monday 09:00 Berlin: the template fires
    bundle = await made(bot)
    told = await bot.alice.wait_reply(containing="New bundle")
    assert f"New bundle 'Weekly newsletter' for 2026-11-30: 3 steps (/bundle {bundle.id})" in text(
        told
    )

    # Two days on, step 1 (due Tuesday) is overdue; both task steps lack their proof.
    await bot.clock.advance(timedelta(days=2))
    await bot.alice.send("/today")
    home = text(await bot.alice.wait_reply(containing="Today"))
    group = home.split("Active bundles")[1].split("Pending approvals")[0]
    assert f"Weekly newsletter for Mon 30 Nov ({bundle.id}): 0/3 done" in group
    assert "1 overdue step · 0 waiting · 0 follow-ups due · 2 missing proof" in group
    assert "next: step 1 Collect links, due Tue 24 Nov 09:00 (+01:00)" in group

    await bot.alice.send(f"/bundle {bundle.id}")
    card = await bot.alice.wait_reply(containing="📦")
    assert "⚠️ 1. Collect links — due Tue 24 Nov 09:00 (+01:00) · todo · needs a note" in text(card)
    assert "🤖 3. Intro" in text(card) and "agent prompt, not sent yet" in text(card)
    assert "Next: step 1 Collect links, due Tue 24 Nov 09:00 (+01:00)." in text(card)
    items = {i.bundle_step: i for i in await bot.services.store.bundles.bundle_items(bundle.id)}
    sponsor = items[2]

    # Complete without the link: refused, saying exactly what is missing.
    query = await bot.alice.press(f"k:done:{bundle.id}:2", card)
    assert await toast(bot, query) == (
        f"Step 2 'Send draft to sponsor' needs a link as proof; send /done {sponsor.id} https://…"
    )
    # Open the step: its detail in place, with its instructions and how to add proof.
    await bot.alice.press(f"k:open:{bundle.id}:2", card)
    detail = await bot.alice.wait_edit(card.message_id)
    assert "Step 2: Send draft to sponsor" in text(detail)
    assert "The sponsor block goes first." in text(detail)
    assert f"/proof {sponsor.id} https://…" in text(detail)
    query = await bot.alice.press(f"k:proof:{bundle.id}:2", detail)
    assert await toast(bot, query) == f"Add the link: /proof {sponsor.id} https://…"
    await bot.alice.press(f"k:card:{bundle.id}", detail)
    card = await bot.alice.wait_edit(card.message_id)

    # Mark waiting, then a follow-up sent: the step keeps waiting.
    query = await bot.alice.press(f"k:wait:{bundle.id}:2", card)
    assert await toast(bot, query) == "Step 2 is waiting; follow up in 3 days."
    card = await bot.alice.wait_edit(card.message_id)
    assert "⏳ 2. Send draft to sponsor" in text(card) and "waiting for Ada" in text(card)
    await bot.clock.advance(timedelta(days=1))  # a day later the follow-up goes out
    query = await bot.alice.press(f"k:fu:{bundle.id}:2", card)
    assert await toast(bot, query) == "Follow-up noted for step 2; the next one in 3 days."
    card = await bot.alice.wait_edit(card.message_id)
    history = await bot.services.work_items.history(sponsor)
    assert [h.action for h in history] == ["created", "waiting for Ada", "follow-up sent"]

    # The link added, completion goes through.
    await bot.alice.send(f"/proof {sponsor.id} not-a-link")
    refused = text(await bot.alice.wait_reply(containing="needs a link"))
    assert refused == (
        f"Step 2 'Send draft to sponsor' needs a link as proof; send /done {sponsor.id} https://…"
    )
    await bot.alice.send(f"/proof {sponsor.id} https://docs.example/draft")
    await bot.alice.wait_reply(containing="Proof added to Send draft to sponsor")
    query = await bot.alice.press(f"k:done:{bundle.id}:2", card)
    assert await toast(bot, query) == "Step 2 done."
    card = await bot.alice.wait_edit(card.message_id)
    assert "✅ 2. Send draft to sponsor" in text(card) and "link proof ✓" in text(card)
    assert (await bot.services.work_items.get(ALICE, sponsor.id)).status is WorkItemStatus.DONE

    # Step 1 by command with its note; the prompt step fires on Sunday; then it is done.
    await bot.alice.send(f"/done {items[1].id} twelve links in the doc")
    await bot.alice.wait_reply(containing="Done: Collect links")
    await bot.clock.set(datetime(2026, 11, 29, 8, 0, tzinfo=UTC))
    prompt = step_schedule_id(bundle.id, 3)

    async def prompted() -> bool:
        # Archived once its run ended (it leaves /schedules); its run stays in the ledger.
        runs = await bot.services.store.runs.list_for_chat(ALICE, schedule_id=prompt)
        return [r.status for r in runs] == [RunStatus.SUCCEEDED]

    await eventually(prompted, timeout=5)
    await bot.alice.send(f"/bundle {bundle.id}")
    final = text(await bot.alice.wait_reply(containing="📦"))
    assert "(done)" in final and "3/3 steps done" in final
    await bot.alice.send("/today")
    assert "No active bundles" in text(await bot.alice.wait_reply(containing="Today"))


async def test_a_stranger_cannot_press_a_bundle_button(bot: BotHarness) -> None:
    await bot.mallory.send("/today")
    await bot.mallory.wait_reply()
    mid = bot.mallory.last_reply().message_id
    query = await bot.mallory.press_data("k:done:01JDABCDEFGHJKMNPQRSTVWXYZ:2", mid)
    answer = await bot.server.wait_answered(query)
    assert "private" in str(answer.get("text"))


async def test_bundle_without_an_id_lists_the_active_bundles(bot: BotHarness) -> None:
    await bot.alice.send("/bundle")
    assert text(await bot.alice.wait_reply()) == (
        "No active bundles. A workflow template makes one at each of its fires."
    )
    await bot.alice.send("/bundle 01JDNOSUCHBUNDLE")
    assert text(await bot.alice.wait_reply()) == (
        "No bundle '01JDNOSUCHBUNDLE' here; /bundle lists the active ones."
    )


async def test_backfill_of_a_template_previews_then_reports_created_and_skipped(
    bot: BotHarness,
) -> None:
    template = await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name="Daily checklist",
        trigger=TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin"),
        action=NEWSLETTER,
    )
    # Down for three days: the missed-run policy catches up once, with Wednesday's.
    await bot.clock.advance(timedelta(days=3))
    await made(bot)
    await bot.alice.send(f"/backfill {template.id} 2026-11-23 2026-11-25")
    preview = await bot.alice.wait_reply(containing="Backfill")
    assert text(preview).startswith(
        "Backfill Daily checklist: 2 bundles would be created (1 already exist), for the dates:"
    )
    assert "Mon 30 Nov 2026" in text(preview) and "Wed 02 Dec 2026" in text(preview)
    query = await bot.alice.press("Confirm", preview)
    assert await toast(bot, query) == "Created 2, skipped 1."
    done = await bot.alice.wait_edit(preview.message_id)
    assert (
        text(done) == "⏪ Backfill of Daily checklist: 2 bundles created, 1 skipped (they existed)."
    )
    await bot.alice.send(f"/backfill {template.id} 2026-11-23 2026-11-25")
    again = text(await bot.alice.wait_reply(containing="Backfill"))
    assert "0 bundles would be created (3 already exist)" in again
    assert "nothing to do" in again
    bundles = await bot.services.store.bundles.list_bundles(ALICE, [BundleStatus.ACTIVE])
    assert len(bundles) == 3


async def test_a_start_tells_the_chat_of_a_half_made_bundle_it_cannot_finish(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> None:
    db = tmp_path / "bot.db"
    clock = FakeClock(START)
    async with await SqliteStore.open(db) as store:
        service = ScheduleService(store, clock, default_timezone="Europe/Berlin")
        template = await service.create_schedule(
            ALICE,
            Owner(id=ALICE, first_name="Alice"),
            name="Weekly newsletter",
            trigger=TriggerSpec(kind="cron", cron="0 9 * * 1", timezone="Europe/Berlin"),
            action=NEWSLETTER,
        )

        async def crash(_: object) -> None:
            raise RuntimeError("killed")

        work_items = WorkItemService(store.work_items, clock)
        with pytest.raises(RuntimeError):
            await BundleService(store, clock, work_items, between_phases=crash).create_from_fire(
                template, START
            )
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE bundles SET snapshot_json = '{}'")
    harness = await start_bot(telegram_server, agent_stub, db, clock=clock)
    try:
        notice = await harness.alice.wait_reply(containing="Automation failure")
        assert text(notice).startswith(
            "⚠️ Automation failure: the bundle of template 'Weekly newsletter' for 2026-11-30 "
            "could not be made ("
        )
        [failed] = await harness.services.store.bundles.list_bundles(ALICE, list(BundleStatus))
        assert failed.status is BundleStatus.FAILED
    finally:
        await stop_bot(harness)
