"""/agent as the chat meets it: an admin points this chat's runs at an agent of its own
(the secret masked and its message deleted), a bad URL is one sentence, an operator who
is not an admin cannot see or change it, and the chat's runs then reach that agent only."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, START, BotHarness
from scheduler.models import Action, Owner
from scheduler.service import TriggerSpec

HOURLY = TriggerSpec(kind="interval", every_seconds=3600, start_at=START + timedelta(hours=1))
SECRET = "alice-own-secret-7788"


async def test_an_admin_sets_the_chats_own_agent_and_its_runs_go_there(
    bot: BotHarness,
) -> None:
    await bot.alice.send("/agent")
    shown = await bot.alice.wait_reply()
    assert "default agent" in (shown.text or "")

    await bot.alice.send("/agent url ftp://agent.example/hook")
    refused = await bot.alice.wait_reply()
    assert refused.text == "The agent URL must be an absolute http:// or https:// URL."
    assert await bot.services.agents.get(ALICE) is None

    async with AgentStub() as own:
        await bot.alice.send(f"/agent url {own.url}")
        screen = await bot.alice.wait_reply(containing="This chat's agent")
        assert own.url in (screen.text or "")

        sent = await bot.alice.send(f"/agent secret {SECRET}")
        screen = await bot.alice.wait_reply(containing="Secret:")
        assert "••••7788" in (screen.text or "")
        assert sent["message_id"] in bot.alice.deleted_message_ids
        assert all(SECRET not in (m.text or "") for m in bot.alice.messages)

        schedule = await bot.services.service.create_schedule(
            ALICE,
            Owner(id=ALICE, first_name="Alice"),
            name="Feed check",
            trigger=HOURLY,
            action=Action(text="Check the feed."),
        )
        await bot.clock.set(START + timedelta(hours=1))
        [request] = await own.wait_for_requests(1)
        assert request.headers["idempotency-key"].startswith(schedule.id)
        assert request.headers["x-telegram-bot-api-secret-token"] == SECRET
        await asyncio.sleep(0.1)
        assert bot.agent.requests == []  # the default agent saw nothing of it

        await bot.alice.send("/agent reset")
        assert (await bot.alice.wait_reply(containing="default")).text == (
            "Back to the default agent."
        )
        assert await bot.services.agents.get(ALICE) is None


async def test_only_an_admin_sees_or_changes_the_agent(bot: BotHarness) -> None:
    await bot.olga.send("/agent url https://agent.example/hook")
    answer = await bot.olga.wait_reply()
    assert answer.text == "Only an admin can see or change this chat's agent."
    await bot.olga.send("/agent")
    assert (await bot.olga.wait_reply()).text == (
        "Only an admin can see or change this chat's agent."
    )
