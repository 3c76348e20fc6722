"""Tickler runs on uvloop (bot/event_loop.py): the engine's bursts are CPU-bound on one
thread, and the loop is a fifth of that (bench/RESULTS.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import uvloop

from bot.event_loop import install


@pytest.fixture
def restore_policy() -> Iterator[None]:
    before = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(before)


def test_loops_made_after_install_are_uvloop(restore_policy: None) -> None:
    assert install() == "uvloop"

    async def which() -> type[asyncio.AbstractEventLoop]:
        return type(asyncio.get_running_loop())

    # asyncio.run (the headless engine, the webhook server) and the policy's new loops
    # (python-telegram-bot's run_polling) both.
    assert issubclass(asyncio.run(which()), uvloop.Loop)
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
