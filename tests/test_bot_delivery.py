"""What the engine reports reaches the chat, and the chat reaches the agent; Telegram's
429 and 403 are survived without losing a run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bot.demo_kit.harness import ALICE, BotHarness
from scheduler.models import Action, MissedRunPolicy, Owner, Policies, RetryPolicy, RunStatus
from scheduler.service import TriggerSpec

NINE_BERLIN = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
DAILY_9 = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")


async def daily(bot: BotHarness, policies: Policies | None = None, name: str = "Brief") -> str:
    schedule = await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name=name,
        trigger=DAILY_9,
        action=Action(text="Prepare my brief for {date}."),
        policies=policies,
    )
    return schedule.id


async def runs_of(bot: BotHarness, sid: str) -> list[RunStatus]:
    return [r.status for r in await bot.services.service.history(ALICE, sid)]


async def until(predicate: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_the_agents_answer_appears_in_the_chat_escaped_and_split(
    openai_bot: BotHarness,
) -> None:
    bot = openai_bot
    answer = "Today: <b>not bold</b> & 3 < 4.\n" + "x" * 5000
    bot.agent.openai_answer(answer, usage={"total_tokens": 9})
    await daily(bot)
    await bot.clock.set(NINE_BERLIN)
    first = await bot.alice.wait_reply(containing="Today:")
    assert "<b>not bold</b> & 3 < 4." in (first.text or "")  # shown literally
    second = await bot.alice.wait_reply()
    assert len(first.text or "") <= 4096 and len(second.text or "") <= 4096
    assert (first.text or "").count("x") + (second.text or "").count("x") == 5000


async def test_a_dead_run_alerts_with_retry_and_a_trip_with_resume(bot: BotHarness) -> None:
    bot.agent.respond_with(500)
    sid = await daily(bot, Policies(retry=RetryPolicy(max_attempts=1)))
    await bot.clock.set(NINE_BERLIN)
    alert = await bot.alice.wait_reply(containing="failed after 1 attempt")
    assert alert.button_labels() == ["Retry", "History"]
    for day in (1, 2):
        await bot.clock.set(NINE_BERLIN + timedelta(days=day))
        await until(lambda n=day + 1: _dead_count(bot, sid, n))
    tripped = await bot.alice.wait_reply(containing="paused itself")
    assert tripped.button_labels() == ["Resume", "Run now", "History"]
    # Rate limit: the second and third failures of the same schedule were not announced.
    alerts = [m for m in bot.alice.messages if "failed after" in (m.text or "")]
    assert len(alerts) == 1
    assert await runs_of(bot, sid) == [RunStatus.DEAD] * 3


async def test_missed_fires_are_summarised_with_choices(bot: BotHarness) -> None:
    await daily(bot, Policies(missed_run=MissedRunPolicy.SKIP))
    # The clock jumps three days at once: to the engine it is an outage.
    await bot.clock.set(NINE_BERLIN + timedelta(days=2, hours=1))
    summary = await bot.alice.wait_reply(containing="missed")
    assert "3 fires missed between Mon 23 Nov 09:00 (+01:00) and Wed 25 Nov 09:00" in (
        summary.text or ""
    )
    assert summary.button_labels() == ["Run latest", "Run all", "Skip"]


async def test_429_is_waited_out_and_the_alert_delivered(bot: BotHarness) -> None:
    bot.agent.respond_with(500)
    bot.server.fail_next("sendMessage", error_code=429, retry_after=1)
    await daily(bot, Policies(retry=RetryPolicy(max_attempts=1)))
    await bot.clock.set(NINE_BERLIN)
    alert = await bot.alice.wait_reply(containing="failed after", timeout=10)
    assert alert.button_labels() == ["Retry", "History"]
    assert any(e.error_code == 429 for e in bot.server.errors)


async def test_403_blocks_delivery_without_losing_the_run_until_the_user_returns(
    bot: BotHarness,
) -> None:
    bot.agent.respond_with(500)
    bot.server.block(ALICE)
    sid = await daily(bot, Policies(retry=RetryPolicy(max_attempts=1)))
    await bot.clock.set(NINE_BERLIN)

    async def blocked() -> bool:
        return (await bot.services.store.chats.get(ALICE)).blocked_at is not None

    await until(blocked)
    assert await runs_of(bot, sid) == [RunStatus.DEAD]  # the ledger has it all the same
    sends = len(bot.server.calls_to("sendMessage"))
    await bot.clock.set(NINE_BERLIN + timedelta(days=1))
    await until(lambda: _dead_count(bot, sid, 2))
    assert len(bot.server.calls_to("sendMessage")) == sends  # no more attempts to send

    bot.server.unblock(ALICE)
    await bot.alice.send("/start")  # the user is back
    await bot.alice.wait_reply(containing="keep your agent")
    assert not await blocked()


async def _dead_count(bot: BotHarness, sid: str, n: int) -> bool:
    return (await runs_of(bot, sid)).count(RunStatus.DEAD) == n


async def test_plain_messages_go_to_the_agent_as_telegram_updates(bot: BotHarness) -> None:
    sent = await bot.alice.send("What is on my plate today?")
    [request] = await bot.agent.wait_for_requests(1)
    assert request.json["message"]["text"] == "What is on my plate today?"
    assert request.json["message"]["chat"]["id"] == ALICE
    assert request.headers["x-telegram-bot-api-secret-token"] == "stub-secret"
    assert request.headers["idempotency-key"].startswith(f"chat:{ALICE}:")
    # The agent answers through its own bot; a reaction says it took the message.
    [mark] = await bot.server.wait_for_call("setMessageReaction")
    assert mark["message_id"] == sent["message_id"]
    assert bot.server.reactions[(ALICE, sent["message_id"])] == ["👍"]
    assert bot.alice.messages == []


async def test_in_openai_mode_the_conversation_keeps_recent_turns(openai_bot: BotHarness) -> None:
    bot = openai_bot
    bot.agent.openai_answer("Two meetings and a deadline.")
    first = await bot.alice.send("What is on my plate today?")
    assert (await bot.alice.wait_reply()).text == "Two meetings and a deadline."
    # The answer itself says it arrived: no reaction in openai mode.
    assert (ALICE, first["message_id"]) not in bot.server.reactions
    bot.agent.openai_answer("The deadline is the invoice.")
    await bot.alice.send("Which deadline?")
    assert (await bot.alice.wait_reply()).text == "The deadline is the invoice."
    turns = bot.agent.requests[-1].json["messages"]
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user"]
    assert turns[-1]["content"] == "Which deadline?"


async def test_in_openai_mode_the_agent_is_told_the_chats_date_time_and_zone(
    openai_bot: BotHarness,
) -> None:
    """So that "remind me tomorrow at 9" can become an instant."""
    bot = openai_bot
    bot.agent.openai_answer("Noted.")
    await bot.alice.send("Remind me tomorrow at 9 to call the bank.")
    await bot.alice.wait_reply()
    system = bot.agent.requests[-1].json["messages"][0]
    assert system == {
        "role": "system",
        "content": "You are the operator's assistant, reached through their Telegram chat "
        "(Tickler). Reply to their latest message. Their time zone is Europe/Berlin; it is "
        "now Monday 2026-11-23T08:00:00+01:00 there.",
    }
    # The chat's own zone, once set, and the clock as it moves.
    await bot.alice.send("/tz America/New_York")
    await bot.alice.wait_reply()
    await bot.clock.advance(timedelta(hours=18))
    await bot.alice.send("And the day after?")
    await bot.alice.wait_reply()
    content = bot.agent.requests[-1].json["messages"][0]["content"]
    assert content.endswith(
        "Their time zone is America/New_York; it is now Monday 2026-11-23T20:00:00-05:00 there."
    )


async def test_an_agent_that_fails_a_chat_message_gets_one_sentence(bot: BotHarness) -> None:
    bot.agent.respond_with(503)
    sent = await bot.alice.send("hello?")
    reply = await bot.alice.wait_reply()
    assert reply.text == (
        "Your agent did not take that message (The agent answered HTTP 503); try again in a moment."
    )
    assert bot.server.reactions[(ALICE, sent["message_id"])] == ["👎"]
