"""A person's path through Tickler, end to end in chat (openai mode): set up, create a
daily brief with the guided /new, let the fake clock pass its fire, read the agent's
answer in the chat, check /history, pause and resume from the card."""

from __future__ import annotations

from bot.demo_kit.harness import ALICE, BotHarness
from scheduler.timeutil import format_utc


async def test_from_start_to_answer_history_and_pause(openai_bot: BotHarness) -> None:
    bot = openai_bot
    alice = bot.alice
    await alice.send("/start")
    await alice.wait_reply(containing="/new")
    await alice.send("/tz Europe/Berlin")
    await alice.wait_reply(containing="Time zone set to Europe/Berlin")

    await alice.send("/new")
    await alice.wait_reply(containing="What should it do?")
    await alice.press("Ask the agent")
    await alice.wait_reply(containing="Write the prompt")
    await alice.send("Prepare my daily brief for {weekday} {date}.")
    await alice.wait_reply(containing="When?")
    await alice.press("Daily at…")
    await alice.wait_reply(containing="At what time?")
    await alice.send("09:00")
    await alice.wait_reply(containing="What should it be called?")
    await alice.send("Daily brief")
    preview = await alice.wait_reply(containing="Next:")
    assert "• Mon 23 Nov 09:00 (+01:00)" in (preview.text or "")
    await alice.press("Save")
    await alice.wait_reply(containing="Saved")
    [schedule] = await bot.services.store.schedules.list_for_chat(ALICE)
    assert schedule.next_run_at is not None
    assert format_utc(schedule.next_run_at) == "2026-11-23T08:00:00Z"

    # The fire passes: the agent gets the prompt, and its answer lands in the chat.
    bot.agent.openai_answer("Three meetings; the invoice is due today.", usage={"total_tokens": 42})
    await bot.clock.set(schedule.next_run_at)
    [request] = await bot.agent.wait_for_requests(1)
    assert (
        request.json["messages"][-1]["content"] == "Prepare my daily brief for Monday 23 November."
    )
    answer = await alice.wait_reply(containing="invoice")
    assert answer.text == "Daily brief\nThree meetings; the invoice is due today."

    await alice.send(f"/history {schedule.id}")
    history = await alice.wait_reply()
    assert "Mon 23 Nov 09:00 (+01:00) succeeded" in (history.text or "")

    # Pause and resume from the card's buttons.
    await alice.send(f"/show {schedule.id}")
    card = await alice.wait_reply(containing="Daily brief")
    await alice.press("Pause", card)
    paused = await alice.wait_edit(card.message_id)
    assert "paused" in (paused.text or "").lower()
    assert "Resume" in paused.button_labels()
    assert not (await bot.services.store.schedules.get(ALICE, schedule.id)).enabled  # type: ignore[union-attr]
    await alice.press("Resume", paused)
    resumed = await alice.wait_edit(card.message_id)
    assert "Pause" in resumed.button_labels()
    after = await bot.services.store.schedules.get(ALICE, schedule.id)
    assert after is not None and after.enabled
    assert after.next_run_at is not None
    assert format_utc(after.next_run_at) == "2026-11-24T08:00:00Z"

    # Another operator's chat neither sees nor touches it.
    await bot.olga.send(f"/show {schedule.id}")
    assert (await bot.olga.wait_reply()).text == (
        f"There is no schedule '{schedule.id}' here; /schedules lists them."
    )
