"""The real bot (unchanged PTB Application from `bot.app.build_application`) running
against the strict Bot API test server, the agent stub and a fake clock.

    async def test_x(bot: BotHarness) -> None:
        await bot.alice.send("/start")
        reply = await bot.alice.wait_reply()

`alice` is an admin, `olga` an operator (each in their own private chat), `mallory`
is not on the allow-list. `bot.clock` drives the engine; `bot.agent` is the agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapters.clocks import FakeClock
from bot.app import (
    build_application,
    close_services,
    connect_telegram,
    open_services,
    poll_telegram,
    start_services,
    stop_services,
    stop_telegram,
)
from bot.context import Services, TicklerApp
from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.telegram_server import TelegramServer, TgUser
from bot.settings import Settings
from scheduler.engine import EngineConfig

__all__ = ["ALICE", "MALLORY", "OLGA", "BotHarness"]

ALICE, OLGA, MALLORY = 1001, 1002, 6666
#: Monday 23 November 2026, 07:00 UTC = 08:00 in Berlin.
START = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


@dataclass
class BotHarness:
    app: TicklerApp
    server: TelegramServer
    agent: AgentStub
    clock: FakeClock
    alice: TgUser
    olga: TgUser
    mallory: TgUser

    @property
    def services(self) -> Services:
        return self.app.services


async def start_bot(
    server: TelegramServer,
    agent: AgentStub,
    db_path: Path,
    *,
    agent_mode: str = "telegram",
    clock: FakeClock | None = None,
    **settings: Any,
) -> BotHarness:
    clock = clock or FakeClock(START)
    config = Settings.model_validate(
        {
            "telegram_bot_token": server.token,
            "telegram_api_base_url": server.url,
            "admin_ids": [ALICE],
            "operator_ids": [OLGA],
            "agent_url": agent.openai_url if agent_mode == "openai" else agent.url,
            "agent_mode": agent_mode,
            "agent_secret": "stub-secret",
            "database_path": db_path,
            "default_timezone": "Europe/Berlin",
            # No HTTP server unless a test asks for one (http_port=<a free port>).
            "http_port": 0,
            **settings,
        }
    )
    services = await open_services(config, clock=clock, engine=EngineConfig(shutdown_grace=2.0))
    app = build_application(services)
    await start_services(app)
    await connect_telegram(app)
    await app.start()
    await poll_telegram(app, poll_interval=0, timeout=1)
    return BotHarness(
        app,
        server,
        agent,
        clock,
        server.user(ALICE, "Alice"),
        server.user(OLGA, "Olga"),
        server.user(MALLORY, "Mallory"),
    )


async def stop_bot(harness: BotHarness) -> None:
    app = harness.app
    await stop_telegram(app)
    if app.running:
        await app.stop()
    await stop_services(app)
    await app.shutdown()
    await close_services(app)
