"""The `telegram_server` fixture (the server itself is bot/demo_kit/telegram_server.py,
shipped for `tickler demo`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from bot.demo_kit.telegram_server import TelegramServer

__all__ = ["telegram_server"]


@pytest_asyncio.fixture
async def telegram_server() -> AsyncIterator[TelegramServer]:
    """A fresh Bot API server per test; pending long polls are cancelled when it stops."""
    async with TelegramServer() as server:
        yield server
