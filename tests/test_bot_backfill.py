"""/backfill from the chat: preview, confirm, and a second confirm creating nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.demo_kit.harness import ALICE, BotHarness
from scheduler.models import Action, Owner, RunTrigger, Schedule
from scheduler.service import TriggerSpec

DAILY_9 = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")


async def seed(bot: BotHarness) -> Schedule:
    return await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name="Daily brief",
        trigger=DAILY_9,
        action=Action(text="Prepare the brief."),
    )


async def test_backfill_previews_then_confirms_once(bot: BotHarness) -> None:
    schedule = await seed(bot)
    await bot.alice.send(f"/backfill {schedule.id} 2026-11-16 2026-11-20")
    preview = await bot.alice.wait_reply()
    text = preview.text or ""
    assert "5 fires would be created (0 already exist)" in text
    assert "Mon 16 Nov 09:00 (+01:00)" in text
    assert preview.button_labels() == ["Confirm", "Cancel"]
    data = preview.callback_data("Confirm")
    assert data is not None

    query = await bot.alice.press("Confirm", preview)
    answer = await bot.server.wait_answered(query)
    assert answer.get("text") == "Created 5 runs."
    done = await bot.alice.wait_reply(containing="Created 5 backfill runs")
    assert "Daily brief" in (done.text or "")

    # The same button again (an old copy, a double tap): nothing new.
    query = await bot.alice.press_data(data, preview.message_id)
    answer = await bot.server.wait_answered(query)
    assert "Nothing created" in str(answer.get("text"))
    runs = await bot.services.store.runs.list_for_chat(ALICE, schedule_id=schedule.id, limit=100)
    backfilled = [r for r in runs if r.trigger is RunTrigger.BACKFILL]
    assert sorted(r.scheduled_for for r in backfilled) == [
        datetime(2026, 11, d, 8, 0, tzinfo=UTC) for d in range(16, 21)
    ]

    # A second preview of the same range counts them as existing.
    await bot.alice.send(f"/backfill {schedule.id} 2026-11-16 2026-11-20")
    again = await bot.alice.wait_reply(containing="Backfill")
    assert "0 fires would be created (5 already exist)" in (again.text or "")
    assert again.button_labels() == []


async def test_backfill_cancel_and_bad_input(bot: BotHarness) -> None:
    schedule = await seed(bot)
    await bot.alice.send(f"/backfill {schedule.id} 2026-11-20T00:00 2026-11-21T23:00")
    preview = await bot.alice.wait_reply()
    assert "2 fires would be created" in (preview.text or "")
    await bot.alice.press("Cancel", preview)
    cancelled = await bot.alice.wait_reply(containing="cancelled")
    assert "nothing created" in (cancelled.text or "")

    await bot.alice.send("/backfill")
    assert (await bot.alice.wait_reply()).text == (
        "Use /backfill ID FROM TO with dates like 2026-11-01 2026-11-07 (TO is included) "
        "or ISO instants; /schedules lists the ids."
    )
    await bot.alice.send(f"/backfill {schedule.id} 2026-11-20 yesterday")
    assert (await bot.alice.wait_reply()).text == (
        "'yesterday' is neither a date like 2026-11-01 nor an ISO instant."
    )
    await bot.alice.send(f"/backfill {schedule.id} 2026-11-30 2026-12-02")
    assert (await bot.alice.wait_reply()).text == (
        "Backfill covers past windows only; end the range at now."
    )
    await bot.alice.send("/backfill NOPE 2026-11-01 2026-11-02")
    assert (await bot.alice.wait_reply()).text == (
        "There is no schedule 'NOPE' here; /schedules lists them."
    )
