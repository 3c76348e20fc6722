"""Launch Tickler as a real process (`python -m bot`, or the headless engine) for the
reliability suite, against the test Bot API server and the agent stub.

    async with Launcher(tmp_path) as launch:
        proc = launch(db_path, telegram=server, agent_url=stub.url, clock=fast_clock(600))
        await proc.start()
        await proc.wait_engine()          # its engine registered in the database
        await proc.kill()                 # SIGKILL, as a crash
        code, took = await proc.terminate()   # SIGTERM, as `docker stop`

Every process started through a `Launcher` is killed when the block ends, whatever
happened. Each process writes its log (stdout and stderr) to a file, appended across
restarts, so a failing test can show what the bot said (`proc.log_tail()`).

`fast_clock(speed)` is the accelerated test clock: the bot reads it through
`TICKLER_TEST_CLOCK`, the test through the same object, so both agree on the fake
instant, across restarts too (its origin is fixed when the test makes it). Processes
given the same clock agree with each other too: replicas on one database.

The database is a SQLite file's path, or a PostgreSQL URL (`DATABASE_URL`), which
several processes may share.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import asyncpg

from adapters.clocks import AcceleratedClock
from bot.demo_kit.telegram_server import TelegramServer
from storage.locations import Location, is_postgres
from tests.reliability.ledger import query

__all__ = [
    "START",
    "FinalStop",
    "Launcher",
    "TicklerProcess",
    "fast_clock",
    "fetch_health",
    "free_port",
    "tickler_env",
]

#: Monday 23 November 2026, 07:00 UTC: where the suite's fake time begins.
START = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)

#: Settings a developer's shell might carry that must not leak into a test process.
_SCRUBBED = (
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_API_BASE_URL",
    "ADMIN_IDS",
    "OPERATOR_IDS",
    "AGENT_URL",
    "AGENT_MODE",
    "AGENT_SECRET",
    "AGENT_TOKEN",
    "DATABASE_PATH",
    "DATABASE_URL",
    "SCHEDULES_FILE",
    "API_TOKEN",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "TICKLER_TEST_CLOCK",
)


async def fetch_health(base_url: str) -> tuple[int, dict[str, Any]]:
    """GET {base_url}/healthz: (status, body); (0, {}) while nothing listens."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.get(f"{base_url}/healthz") as answer,
        ):
            body: dict[str, Any] = await answer.json()
            return answer.status, body
    except (aiohttp.ClientError, TimeoutError):
        return 0, {}


def fast_clock(speed: float, origin: datetime = START) -> AcceleratedClock:
    """An accelerated clock that starts at `origin` now and runs `speed` times fast."""
    return AcceleratedClock(origin, time.time(), speed)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def tickler_env(
    db_path: Location,
    *,
    agent_url: str,
    telegram: TelegramServer | None = None,
    telegram_url: str | None = None,
    admin_ids: tuple[int, ...] = (77,),
    clock: AcceleratedClock | None = None,
    grace: float = 10.0,
    agent_mode: str = "telegram",
    http_port: int = 0,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one Tickler process on `db_path` (a SQLite file, or a
    PostgreSQL URL). `telegram_url` overrides the server's own address (to put a
    `TcpGate` in between)."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env["DATABASE_URL" if is_postgres(db_path) else "DATABASE_PATH"] = str(db_path)
    env.update(
        ADMIN_IDS=",".join(str(i) for i in admin_ids),
        AGENT_URL=agent_url,
        AGENT_MODE=agent_mode,
        AGENT_SECRET="reliability-secret",
        SHUTDOWN_GRACE_SECONDS=str(grace),
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(http_port),
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    if telegram is not None:
        env["TELEGRAM_BOT_TOKEN"] = telegram.token
        env["TELEGRAM_API_BASE_URL"] = telegram_url or telegram.url
    if clock is not None:
        env["TICKLER_TEST_CLOCK"] = clock.spec()
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class FinalStop:
    """How a test's last SIGTERM went, on the fake clock, for `ledger.account`."""

    code: int
    seconds: float
    #: When the stop was asked for: fires due by then must have been claimed.
    asked_at: datetime
    #: When the process had stopped: it claims fires until then, so the ledger is
    #: checked up to here.
    stopped_at: datetime


@dataclass
class TicklerProcess:
    """One Tickler process on a database (a file, or a PostgreSQL URL); `start` may be
    called again after it ended (a restart on the same database)."""

    db_path: Location
    env: dict[str, str]
    log_path: Path
    cwd: Path
    #: True: `tickler engine` (the scheduler alone); False: `python -m bot`.
    headless: bool = False
    #: A command that runs the process (it must exec it, keeping the pid): `unshare …`.
    prefix: tuple[str, ...] = ()
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    _pids: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.env['HTTP_PORT']}"

    async def start(self) -> None:
        assert not self.running, "already running"
        if self.headless:
            # The documented command, the console script beside this interpreter.
            argv = [str(Path(sys.executable).with_name("tickler")), "engine"]
        else:
            argv = [sys.executable, "-m", "bot"]
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {self.starts + 1} =====\n".encode())
            log.flush()
            # The working directory is the test's own: a developer's `.env` in the
            # project folder must not configure the process under test.
            self.proc = await asyncio.create_subprocess_exec(
                *self.prefix, *argv, cwd=self.cwd, env=self.env, stdout=log, stderr=log
            )
        self.starts += 1
        self._pids.append(self.proc.pid)

    async def wait_engine(self, timeout: float = 30.0) -> None:
        """Until this process's engine registered itself in the database (start-up done:
        the store is open and reconciliation is under way)."""
        pid = self.pid
        async with asyncio.timeout(timeout):
            while not await _engine_registered(self.db_path, pid):
                if not self.running:
                    raise AssertionError(f"Tickler exited early:\n{self.log_tail()}")
                # A look at PostgreSQL is a new connection (a server process) each time.
                await asyncio.sleep(0.1 if is_postgres(self.db_path) else 0.02)

    async def kill(self) -> int:
        """SIGKILL: a crash, with no chance to clean up."""
        return await self._signal(signal.SIGKILL, 10.0)

    async def terminate(self, timeout: float = 60.0) -> tuple[int, float]:
        """SIGTERM, as `docker stop` sends; returns (exit code, seconds it took)."""
        started = time.monotonic()
        code = await self._signal(signal.SIGTERM, timeout)
        return code, time.monotonic() - started

    async def final_stop(self, clock: AcceleratedClock) -> FinalStop:
        """`terminate`, noting the fake instants around it (see `FinalStop`)."""
        asked_at = clock.now()
        code, seconds = await self.terminate()
        return FinalStop(code, seconds, asked_at, clock.now())

    async def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    async def ensure_stopped(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            await self.proc.wait()

    async def _signal(self, sig: int, timeout: float) -> int:
        assert self.proc is not None, "not started"
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            return await self.wait_exit(timeout)
        except TimeoutError:
            raise AssertionError(
                f"Tickler did not exit within {timeout:g} s of signal {sig}:\n{self.log_tail()}"
            ) from None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def health(self) -> tuple[int, dict[str, Any]]:
        """GET /healthz (needs an HTTP port): (status, body); (0, {}) while nothing listens."""
        return await fetch_health(self.http_url)


async def _engine_registered(db_path: Location, pid: int) -> bool:
    # Read-only and short: the process under test owns the database.
    try:
        rows = await query(
            db_path, "SELECT 1 FROM engine_instances WHERE pid = ? AND stopped_at IS NULL", (pid,)
        )
    except (sqlite3.OperationalError, asyncpg.PostgresError):
        return False  # not created yet, or busy: look again
    return bool(rows)


class Launcher:
    """Makes `TicklerProcess`es whose logs go under `workdir`; kills them all on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.made: list[TicklerProcess] = []

    def __call__(
        self,
        db_path: Location,
        *,
        headless: bool = False,
        name: str = "tickler",
        prefix: Sequence[str] = (),
        **env: Any,
    ) -> TicklerProcess:
        """A process on `db_path` (a file or a PostgreSQL URL), run through `prefix` if
        given; `env` are `tickler_env`'s keyword arguments."""
        process = TicklerProcess(
            db_path=db_path,
            env=tickler_env(db_path, **env),
            log_path=self.workdir / f"{name}-{len(self.made) + 1}.log",
            cwd=self.workdir,
            headless=headless,
            prefix=tuple(prefix),
        )
        self.made.append(process)
        return process

    async def __aenter__(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for process in self.made:
            await process.ensure_stopped()
