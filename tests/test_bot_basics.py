"""The bot's front door: the allow-list, /start, /help, /tz, the command menu."""

from __future__ import annotations

from bot.access import REFUSAL
from bot.commands import COMMANDS
from bot.demo_kit.harness import BotHarness


async def test_the_command_menu_is_published_with_descriptions(bot: BotHarness) -> None:
    assert [(c["command"], c["description"]) for c in bot.server.commands] == COMMANDS


async def test_start_and_help(bot: BotHarness) -> None:
    await bot.alice.send("/start")
    reply = await bot.alice.wait_reply()
    assert "Europe/Berlin" in (reply.text or "") and "/new" in (reply.text or "")
    await bot.alice.send("/help")
    reply = await bot.alice.wait_reply()
    assert all(f"/{name}" in (reply.text or "") for name, _ in COMMANDS)


async def test_an_unknown_user_gets_one_refusal_and_nothing_else(bot: BotHarness) -> None:
    await bot.mallory.send("/start")
    reply = await bot.mallory.wait_reply()
    assert reply.text == REFUSAL
    await bot.mallory.send("please schedule something")
    assert (await bot.mallory.wait_reply()).text == REFUSAL
    assert len(bot.mallory.messages) == 2
    # Nothing of Mallory's reached the agent: Alice's message, handled after his, is
    # the only one there.
    await bot.alice.send("marker")
    [request] = await bot.agent.wait_for_requests(1)
    assert request.json["message"]["text"] == "marker"


async def test_tz_shows_sets_and_refuses_unknown_zones(bot: BotHarness) -> None:
    await bot.alice.send("/tz")
    assert "Europe/Berlin" in ((await bot.alice.wait_reply()).text or "")
    await bot.alice.send("/tz Europe/Berlinn")
    reply = await bot.alice.wait_reply()
    assert reply.text == "Unknown time zone 'Europe/Berlinn'. Did you mean Europe/Berlin?"
    await bot.alice.send("/tz America/New_York")
    assert "America/New_York" in ((await bot.alice.wait_reply()).text or "")
    await bot.alice.send("/tz")
    assert "America/New_York" in ((await bot.alice.wait_reply()).text or "")
    # Olga's chat is untouched.
    await bot.olga.send("/tz")
    assert "Europe/Berlin" in ((await bot.olga.wait_reply()).text or "")


async def test_an_unknown_command_points_to_help(bot: BotHarness) -> None:
    await bot.alice.send("/frobnicate")
    assert (await bot.alice.wait_reply()).text == "I don't know that command; /help lists them."
    await bot.alice.send("marker")  # handled after the command: the agent's first request
    [request] = await bot.agent.wait_for_requests(1)
    assert request.json["message"]["text"] == "marker"
