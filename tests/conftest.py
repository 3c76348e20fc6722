"""Shared fixtures: a real SQLite file per test, a fake clock, the agent stub on loopback."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aiosqlite.core
import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bot.boot import install_core_sources
from bot.settings import ENV_FILE_VARIABLE, Settings
from scheduler.service import ScheduleService
from storage.sqlite_store import SqliteStore

if TYPE_CHECKING:
    from bot.demo_kit.agent_stub import AgentStub

pytest_plugins = ["tests.agent_stub", "tests.telegram_server", "tests.bot_harness"]

#: Variables outside Settings that still change what a run does: the proxies would send
#: the tests' loopback traffic elsewhere.
_FOREIGN_SETTINGS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE")


def pytest_configure(config: pytest.Config) -> None:
    """The suite sees no setting of the developer's: neither their `.env` (read by every
    `python -m bot` a test starts, whatever its working folder) nor their environment.
    Each test sets what it needs."""
    os.environ[ENV_FILE_VARIABLE] = ""
    # What every entry point gives the core first: the id source and the prompt files.
    install_core_sources()
    # A test that fails before closing a database must still let pytest exit: aiosqlite's
    # worker threads are not daemons, and one left waiting keeps the interpreter alive.
    vars(aiosqlite.core)["Thread"] = functools.partial(threading.Thread, daemon=True)
    for name in [*(field.upper() for field in Settings.model_fields), *_FOREIGN_SETTINGS]:
        os.environ.pop(name, None)
        os.environ.pop(name.lower(), None)


#: Monday 23 November 2026, 08:00 UTC = 09:00 in Berlin.
START = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "tickler.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(db_path)
    yield s
    await s.close()


@pytest.fixture
def service(store: SqliteStore, clock: FakeClock) -> ScheduleService:
    return ScheduleService(store, clock, default_timezone="Europe/Berlin")


@pytest.fixture
async def dispatcher(agent_stub: AgentStub) -> AsyncIterator[HttpAgentDispatcher]:
    d = HttpAgentDispatcher(url=agent_stub.url, secret="stub-secret")
    yield d
    await d.aclose()
