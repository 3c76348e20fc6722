"""An interval and a one-time schedule made in a Berlin chat stay in Berlin time: the
preview, /show, the prompt the agent receives and /history all say Europe/Berlin.

The fake clock starts Monday 2026-11-23 07:00 UTC = 08:00 in Berlin.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.demo_kit.harness import ALICE, BotHarness
from bot.demo_kit.telegram_server import TgUser
from scheduler.models import Action, ActionKind, Owner, Schedule
from scheduler.service import TriggerSpec

PROMPT = "Check the inbox at {time} ({timezone})"


async def _berlin(user: TgUser) -> None:
    await user.send("/tz Europe/Berlin")
    await user.wait_reply(containing="Time zone set to Europe/Berlin")


async def _guided(user: TgUser, preset: str, name: str) -> str:
    """The guided /new up to the preview, whose text it returns, then Save."""
    await user.send("/new")
    await user.wait_reply(containing="What should it do?")
    await user.press("Ask the agent")
    await user.wait_reply(containing="Write the prompt")
    await user.send(PROMPT)
    await user.wait_reply(containing="When? (times are Europe/Berlin)")
    await user.press(preset)
    if preset == "Every N hours":
        await user.wait_reply(containing="Every how many hours?")
        await user.press("2")
    else:
        await user.wait_reply(containing="When exactly?")
        await user.send("tomorrow 09:00")
    await user.wait_reply(containing="What should it be called?")
    await user.send(name)
    preview = (await user.wait_reply(containing="Next:")).text or ""
    await user.press("Save")
    await user.wait_reply(containing="Saved")
    return preview


async def _saved(bot: BotHarness, name: str) -> Schedule:
    [schedule] = [
        s for s in await bot.services.store.schedules.list_for_chat(ALICE) if s.name == name
    ]
    return schedule


async def _card(user: TgUser, schedule: Schedule) -> list[str]:
    await user.send(f"/show {schedule.id}")
    return ((await user.wait_reply(containing="Zone:")).text or "").splitlines()


async def test_every_n_hours_and_once_keep_berlin_on_the_card_and_in_the_prompt(
    bot: BotHarness,
) -> None:
    alice = bot.alice
    await _berlin(alice)
    preview = await _guided(alice, "Every N hours", "Inbox")
    assert "Zone: Europe/Berlin" in preview
    every = await _saved(bot, "Inbox")
    once_preview = await _guided(alice, "Once at/in…", "Once")
    assert "Zone: Europe/Berlin" in once_preview
    once = await _saved(bot, "Once")

    card = await _card(alice, every)
    assert "When: every 2 hours from 2026-11-23T09:00:00+01:00 (Europe/Berlin)" in card
    assert "Zone: Europe/Berlin" in card
    assert card[card.index("Next fires:") + 1 :][:3] == [
        "  • Mon 23 Nov 09:00 (+01:00)",
        "  • Mon 23 Nov 11:00 (+01:00)",
        "  • Mon 23 Nov 13:00 (+01:00)",
    ]
    card = await _card(alice, once)
    assert "When: once at 2026-11-24T09:00:00+01:00 (Europe/Berlin)" in card
    assert "Zone: Europe/Berlin" in card
    assert "  • Tue 24 Nov 09:00 (+01:00)" in card

    await bot.clock.set(datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
    [request] = await bot.agent.wait_for_requests(1)
    assert request.json["message"]["text"] == "Check the inbox at 09:00 (Europe/Berlin)"
    await bot.clock.set(datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
    # The once, and the interval's latest missed fire (caught up once).
    requests = await bot.agent.wait_for_requests(3)
    [once_request] = [r for r in requests if r.headers["x-tickler-schedule-id"] == once.id]
    assert once_request.json["message"]["text"] == "Check the inbox at 09:00 (Europe/Berlin)"

    await alice.send(f"/history {once.id}")
    history = (await alice.wait_reply(containing="History of Once")).text or ""
    assert "Tue 24 Nov 09:00 (+01:00)" in history


async def test_today_shows_a_task_in_its_schedules_zone_after_the_chat_moves(
    bot: BotHarness,
) -> None:
    alice = bot.alice
    await _berlin(alice)
    await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name="Plants",
        trigger=TriggerSpec(kind="once", at=datetime(2026, 11, 23, 8, 0, tzinfo=UTC)),
        action=Action(kind=ActionKind.TASK, text="Water the plants"),
    )
    await bot.clock.set(datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
    await alice.wait_reply(containing="Water the plants")
    await alice.send("/tz America/New_York")
    await alice.wait_reply(containing="Time zone set to America/New_York")

    await alice.send("/today")
    today = (await alice.wait_reply(containing="Due today")).text or ""
    assert "Water the plants — due Mon 23 Nov 09:00 (+01:00)" in today
