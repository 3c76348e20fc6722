"""Shared fixtures: a real SQLite file per test, a throwaway PostgreSQL database per test
(tests/postgres.py), a fake clock, the agent stub on loopback."""

from __future__ import annotations

import functools
import itertools
import os
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator
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
from tests import postgres

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


# --- PostgreSQL: one throwaway server per session, a new empty database per test ---------------
#: The fixtures that need a server: a test using one is marked `postgres`.
_POSTGRES_FIXTURES = {"pg_cluster", "postgres_url", "make_postgres_url"}
_database_numbers = itertools.count(1)
#: The node ids of the PostgreSQL tests skipped this session (CI refuses any).
_skipped_postgres_tests: list[str] = []


def _in_ci() -> bool:
    return bool(os.environ.get("CI"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[postgres.Cluster]:
    """One PostgreSQL server for the whole session, started by the first test that asks
    (a session that uses none pays nothing). Without PostgreSQL here the test is skipped
    with one line saying how to get it, and under CI it fails instead."""
    reason = postgres.available()
    if reason is not None:
        if _in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    cluster = postgres.Cluster.start(tmp_path_factory.mktemp("pg_cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
def make_postgres_url(
    pg_cluster: postgres.Cluster, request: pytest.FixtureRequest
) -> Iterator[Callable[[], str]]:
    """Makes a new empty database at each call, and gives its URL
    (postgresql://postgres@127.0.0.1:PORT/NAME); each is dropped after the test, whatever
    connections are still open to it. For a test that needs more than `postgres_url`."""
    words = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")
    made: list[str] = []

    def make() -> str:
        name = f"t{next(_database_numbers)}_{words}"[:63]
        url = pg_cluster.create_database(name)
        made.append(name)
        return url

    yield make
    for name in made:
        pg_cluster.drop_database(name)


@pytest.fixture
def postgres_url(make_postgres_url: Callable[[], str]) -> str:
    """The URL of a new empty database made for this test alone (dropped afterwards)."""
    return make_postgres_url()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):  # an xfail is reported as a skip
        return
    if "postgres" in report.nodeid or "postgres" in report.keywords:
        _skipped_postgres_tests.append(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _in_ci() and _skipped_postgres_tests:
        terminalreporter.section("PostgreSQL tests skipped under CI", red=True)
        for nodeid in _skipped_postgres_tests:
            terminalreporter.write_line(nodeid)
        terminalreporter.write_line(
            f"PostgreSQL tests skipped: {len(_skipped_postgres_tests)}; CI runs every one. "
            + (postgres.available() or "Their reasons are in the summary."),
            red=True,
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Belt and braces: under CI a skipped PostgreSQL test fails the run."""
    if _in_ci() and _skipped_postgres_tests and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
