"""The `bot` and `openai_bot` fixtures: the real bot on the fake Bot API server and the
agent stub (the harness itself is bot/demo_kit/harness.py, shipped for `tickler demo`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import BotHarness, start_bot, stop_bot
from bot.demo_kit.telegram_server import TelegramServer

__all__ = ["bot", "openai_bot"]


@pytest_asyncio.fixture
async def bot(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> AsyncIterator[BotHarness]:
    harness = await start_bot(telegram_server, agent_stub, tmp_path / "bot.db")
    try:
        yield harness
    finally:
        await stop_bot(harness)


@pytest_asyncio.fixture
async def openai_bot(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> AsyncIterator[BotHarness]:
    """The same bot with AGENT_MODE=openai: the agent's answers come back to the chat."""
    harness = await start_bot(telegram_server, agent_stub, tmp_path / "bot.db", agent_mode="openai")
    try:
        yield harness
    finally:
        await stop_bot(harness)
