"""/stats end to end: the real bot, the Bot API test server, the agent stub and a fake
clock (Mon 2026-11-23 07:00 UTC = 08:00 Berlin). Two good days and one dead run."""

from __future__ import annotations

from datetime import timedelta

from bot.demo_kit.harness import ALICE, BotHarness
from scheduler.models import Action, Owner, Policies, RetryPolicy, RunStatus
from scheduler.service import TriggerSpec
from tests.test_bot_schedules import eventually, runs_of

DAILY_9 = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")


async def test_stats_count_runs_by_outcome_over_a_window(bot: BotHarness) -> None:
    schedule = await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name="Daily brief",
        trigger=DAILY_9,
        action=Action(text="Prepare my daily brief."),
        policies=Policies(retry=RetryPolicy(max_attempts=1)),
    )
    await bot.alice.send("/stats")
    empty = await bot.alice.wait_reply(containing="Stats")
    assert "1 active, 0 paused, 0 tripped" in (empty.text or "")
    assert "No runs in this window." in (empty.text or "")

    monday_fire = bot.clock.now() + timedelta(hours=1)  # 09:00 Berlin
    for day in range(2):  # Mon and Tue succeed

        async def finished(n: int = day + 1) -> bool:
            runs = await runs_of(bot, schedule)
            return sum(r.status is RunStatus.SUCCEEDED for r in runs) == n

        await bot.clock.set(monday_fire + timedelta(days=day, minutes=1))
        await eventually(finished)
    bot.agent.respond_with(500)  # Wed's brief fails for good (one attempt allowed)
    await bot.clock.set(monday_fire + timedelta(days=2, minutes=1))

    async def dead() -> bool:
        return any(r.status is RunStatus.DEAD for r in await runs_of(bot, schedule))

    await eventually(dead)

    await bot.alice.send("/stats")
    week = (await bot.alice.wait_reply(containing="Stats for the last 7 days")).text or ""
    assert "Runs: 3 (2 succeeded, 1 dead)" in week
    assert "Success rate: 67% of runs that ended" in week
    assert "• Daily brief: 3 runs, 2 ok, 1 dead" in week

    await bot.alice.send("/stats 24h")
    last_day = (await bot.alice.wait_reply(containing="Stats for the last 24 hours")).text or ""
    assert "Runs: 1 (1 dead)" in last_day and "Success rate: 0%" in last_day

    # Another chat's stats show none of Alice's runs.
    await bot.olga.send("/stats")
    olga = (await bot.olga.wait_reply(containing="Stats")).text or ""
    assert "0 active" in olga and "No runs in this window." in olga


async def test_stats_with_a_bad_window_answer_one_sentence(bot: BotHarness) -> None:
    for text, expected in [
        ("/stats 0d", "'0d' is not a window; use 24h, 7d or 30d."),
        ("/stats week", "'week' is not a window; use 24h, 7d or 30d."),
        ("/stats 365d", "Stats go back at most 90 days; use 90d or less."),
    ]:
        await bot.alice.send(text)
        assert (await bot.alice.wait_reply()).text == expected
