"""The `agent_stub` fixture (the stub itself is bot/demo_kit/agent_stub.py, shipped for
`tickler demo`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from bot.demo_kit.agent_stub import AgentStub

__all__ = ["agent_stub"]


@pytest_asyncio.fixture
async def agent_stub() -> AsyncIterator[AgentStub]:
    """A fresh agent stub per test, stopped (and its hung handlers cancelled) after it."""
    async with AgentStub() as stub:
        yield stub
