"""Database faults against the real bot process (`python -m bot`): another process
holding the write lock for longer than the busy timeout, a database file the bot may
not write, and a disk that fills up under a running bot. Each time the operator gets
a clear sentence, nothing is corrupted, and the bot recovers by itself once the
fault is gone, with every fire run exactly once."""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.clocks import SystemClock
from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.telegram_server import TelegramServer
from scheduler.models import Action, Owner
from scheduler.service import Limits, ScheduleService, TriggerSpec
from storage.database import BUSY_TIMEOUT_MS
from storage.sqlite_store import SqliteStore
from tests.reliability.figures import tally
from tests.reliability.process import fetch_health, free_port, tickler_env

ADMIN = 4401


class Tickler:
    """One `python -m bot` process on a database file; its log lines are collected
    through a pipe (a file could itself hit the disk fault under test)."""

    def __init__(self, db_path: Path, agent: AgentStub, telegram: TelegramServer) -> None:
        self.port = free_port()
        self.env = tickler_env(
            db_path,
            agent_url=agent.url,
            telegram=telegram,
            admin_ids=(ADMIN,),
            http_port=self.port,
        )
        # Not the project folder: a developer's `.env` there must not configure the bot.
        self.cwd = db_path.parent
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self, *, ignore_sigxfsz: bool = False, prefix: Sequence[str] = ()) -> None:
        args = ["-m", "bot"]
        if ignore_sigxfsz:
            # Past RLIMIT_FSIZE the kernel sends SIGXFSZ, which kills by default; ignored,
            # the write fails (EFBIG) as it fails on a full disk (ENOSPC). Set here, not
            # in the parent: subprocess resets SIGXFSZ in the child before exec.
            args = [
                "-c",
                "import runpy, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                "runpy.run_module('bot', run_name='__main__', alter_sys=True)",
            ]
        self.proc = await asyncio.create_subprocess_exec(
            *prefix,
            sys.executable,
            *args,
            cwd=self.cwd,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read(self.proc))

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def exit_code(self, timeout: float = 30.0) -> int:
        assert self.proc is not None and self._reader is not None
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            await self._reader
            return code

    async def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await self.exit_code()

    async def kill(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def health(self) -> tuple[int, dict[str, Any]]:
        """GET /healthz: (status, body); (0, {}) while nothing listens."""
        return await fetch_health(f"http://127.0.0.1:{self.port}")

    async def wait_healthy(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while (await self.health())[0] != 200:
                assert self.running, f"Tickler exited early:\n{self.log}"
                await asyncio.sleep(0.2)


@pytest.fixture
async def tickler(
    agent_stub: AgentStub, telegram_server: TelegramServer
) -> AsyncIterator[Callable[[Path], Tickler]]:
    """`tickler(db_path)` prepares a bot process; all are killed after the test."""
    made: list[Tickler] = []

    def make(db_path: Path) -> Tickler:
        made.append(Tickler(db_path, agent_stub, telegram_server))
        return made[-1]

    yield make
    for t in made:
        await t.kill()


async def seed_once(db_path: Path, first: datetime, count: int, step: timedelta) -> list[str]:
    """`count` one-time schedules firing at `first`, `first + step`, ..."""
    async with await SqliteStore.open(db_path) as store:
        service = ScheduleService(
            store, SystemClock(), limits=Limits(max_schedules_per_chat=count + 10)
        )
        ids = []
        for i in range(count):
            schedule = await service.create_schedule(
                ADMIN,
                Owner(id=ADMIN, first_name="Ada"),
                name=f"fire {i}",
                trigger=TriggerSpec(kind="once", at=first + i * step),
                action=Action(text="Do the thing."),
            )
            ids.append(schedule.id)
        return ids


def ledger(db_path: Path) -> dict[str, list[str]]:
    """Each schedule's runs, by status, read as a separate client would."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT schedule_id, status FROM runs ORDER BY schedule_id")
        out: dict[str, list[str]] = {}
        for schedule_id, status in rows:
            out.setdefault(schedule_id, []).append(status)
        return out


def integrity(db_path: Path) -> str:
    with sqlite3.connect(db_path) as db:
        row = db.execute("PRAGMA integrity_check").fetchone()
        return str(row[0])


async def wait_all_succeeded(db_path: Path, ids: list[str], timeout: float) -> None:
    want = {sid: ["succeeded"] for sid in ids}
    try:
        async with asyncio.timeout(timeout):
            while ledger(db_path) != want:
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"not every fire succeeded once: {ledger(db_path)}") from None


def count_runs(ids: list[str], db_path: Path, agent: AgentStub) -> None:
    """Tally the fires checked, lost (no succeeded run) and doubled (more than one run,
    or more than one delivery to the agent)."""
    runs = ledger(db_path)
    deliveries = agent.count_by_key()
    per_schedule: dict[str, int] = {}
    for key, n in deliveries.items():
        sid = key.split(":", 1)[0]
        per_schedule[sid] = per_schedule.get(sid, 0) + n
    tally.add("runs checked", len(ids))
    tally.add("runs lost", sum(1 for sid in ids if "succeeded" not in runs.get(sid, [])))
    tally.add(
        "runs doubled",
        sum(1 for sid in ids if len(runs.get(sid, [])) > 1 or per_schedule.get(sid, 0) > 1),
    )


async def watch_health(
    bot: Tickler, until: asyncio.Future[Any] | asyncio.Task[Any]
) -> list[tuple[int, dict[str, Any]]]:
    """/healthz every half second until `until` is done."""
    seen = []
    while not until.done():
        seen.append(await bot.health())
        await asyncio.wait({until}, timeout=0.5)
    return seen


@pytest.mark.timeout(120)
async def test_a_write_lock_held_past_the_busy_timeout_delays_runs_but_loses_none(
    tmp_path: Path,
    agent_stub: AgentStub,
    telegram_server: TelegramServer,
    tickler: Callable[[Path], Tickler],
) -> None:
    admin = telegram_server.user(ADMIN, "Ada")
    db_path = tmp_path / "tickler.db"
    # Half a second apart: the thirty fires come due while the lock is held (19 s), none
    # of them long after it, so the test waits for the delayed runs, not for a clock.
    ids = await seed_once(
        db_path, datetime.now(UTC) + timedelta(seconds=4), 30, timedelta(seconds=0.5)
    )
    bot = tickler(db_path)
    await bot.start()
    await bot.wait_healthy()

    # A backup-like client takes the write lock and sits on it past the busy timeout,
    # so the bot's writers first wait, then fail, then must retry.
    hold = BUSY_TIMEOUT_MS / 1000 + 4
    locker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sqlite3, sys, time\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "db.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "time.sleep(float(sys.argv[2]))\n"
        "db.execute('ROLLBACK')\n",
        str(db_path),
        str(hold),
        stdout=asyncio.subprocess.PIPE,
    )
    assert locker.stdout is not None
    assert await locker.stdout.readline() == b"locked\n"
    tally.add("faults injected")
    seen = await watch_health(bot, asyncio.ensure_future(locker.wait()))
    assert locker.returncode == 0
    assert bot.running, f"Tickler died under the lock:\n{bot.log}"

    await wait_all_succeeded(db_path, ids, timeout=60)
    await bot.wait_healthy()
    count_runs(ids, db_path, agent_stub)
    assert set(agent_stub.count_by_key().values()) == {1}
    reasons = [body.get("db_error") or "" for status, body in seen if status == 503]
    assert any("database is locked" in r for r in reasons), f"/healthz said: {seen}"
    assert f"The database {db_path} cannot be written (database is locked)" in bot.log
    assert f"The database {db_path} is writable again" in bot.log
    await admin.wait_reply(containing="(database is locked)", timeout=20)
    await admin.wait_reply(containing="The database takes writes again", timeout=20)
    assert await bot.stop() == 0
    assert integrity(db_path) == "ok"


#: Runs a command as nobody; root writes read-only files, so as root (CI runs as root)
#: only an unprivileged bot meets the file modes an operator gets wrong.
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def unprivileged() -> list[str]:
    """The prefix that makes file modes bind the bot: AS_NOBODY as root, else none."""
    if os.geteuid() != 0:
        return []
    try:
        subprocess.run([*AS_NOBODY, sys.executable, "-c", "import aiosqlite"], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot run this Python as the unprivileged user 65534 here: {exc}")
    return AS_NOBODY


@pytest.mark.timeout(120)
async def test_a_read_only_database_stops_start_up_with_one_clear_line_until_made_writable(
    agent_stub: AgentStub, tickler: Callable[[Path], Tickler]
) -> None:
    prefix = unprivileged()
    # Not under tmp_path: pytest keeps that private to us, and the bot may run as nobody.
    with tempfile.TemporaryDirectory(prefix="tickler-ro-") as tmp:
        os.chmod(tmp, 0o755)
        data = Path(tmp) / "data"
        data.mkdir(mode=0o755)
        db_path = data / "tickler.db"
        ids = await seed_once(
            db_path, datetime.now(UTC) + timedelta(seconds=1), 3, timedelta(seconds=1)
        )
        if not prefix:
            db_path.chmod(0o444)
            data.chmod(0o555)
        refused = tickler(db_path)
        await refused.start(prefix=prefix)
        assert await refused.exit_code() == 2
        tally.add("faults injected")
        [line] = [ln for ln in refused.lines if str(db_path) in ln]
        assert line.startswith(f"The database {db_path} cannot be written (attempt to write")
        assert "writable by the user Tickler runs as" in line
        assert "Traceback" not in refused.log
        assert ledger(db_path) == {}

        # The operator's fix: hand the data directory to the user Tickler runs as.
        for path in (data, *data.iterdir()):
            if prefix:
                os.chown(path, 65534, 65534)
            else:
                path.chmod(0o755 if path.is_dir() else 0o644)
        bot = tickler(db_path)
        await bot.start(prefix=prefix)
        await wait_all_succeeded(db_path, ids, timeout=30)
        count_runs(ids, db_path, agent_stub)
        assert await bot.stop() == 0
        assert integrity(db_path) == "ok"


class Fault:
    """Something that makes the database unwritable under a running bot, and undoes it."""

    name = ""

    def prepare(self, folder: Path) -> None:
        """Make `folder`, where the database will be created."""
        folder.mkdir()

    async def start(self, bot: Tickler) -> None:
        await bot.start()

    def inject(self, bot: Tickler, db_path: Path) -> None:
        raise NotImplementedError

    def lift(self, bot: Tickler, db_path: Path) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        """Undo `prepare`, even after a failed test."""


class FileSizeLimit(Fault):
    """A disk full for this one process, needing no privileges: RLIMIT_FSIZE lowered to
    0 on the running bot, so every write to a file fails; lifted by raising it again."""

    name = "file size limit"

    async def start(self, bot: Tickler) -> None:
        await bot.start(ignore_sigxfsz=True)

    def inject(self, bot: Tickler, db_path: Path) -> None:
        assert bot.proc is not None
        _, hard = resource.prlimit(bot.proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(bot.proc.pid, resource.RLIMIT_FSIZE, (0, hard))

    def lift(self, bot: Tickler, db_path: Path) -> None:
        assert bot.proc is not None
        _, hard = resource.prlimit(bot.proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(bot.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))


class FullTmpfs(Fault):
    """A real full disk (ENOSPC): the database on a small tmpfs, filled to the last
    byte by another file, then freed by deleting it. Needs permission to mount."""

    name = "full tmpfs"

    def __init__(self) -> None:
        self.mounted: Path | None = None
        self.filler: Path | None = None

    def prepare(self, folder: Path) -> None:
        folder.mkdir(exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        self.mounted = folder

    def inject(self, bot: Tickler, db_path: Path) -> None:
        self.filler = db_path.parent / "filler"
        chunk = b"\0" * 4096
        with self.filler.open("wb", buffering=0) as out:
            try:
                while True:
                    out.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc

    def lift(self, bot: Tickler, db_path: Path) -> None:
        assert self.filler is not None
        self.filler.unlink()

    def cleanup(self) -> None:
        if self.mounted is not None:
            subprocess.run(["umount", "-l", str(self.mounted)], check=False)


class Immutable(Fault):
    """A read-only file under a running bot (as after the volume is remounted read-only):
    the immutable attribute on the database and its WAL refuses writes even through
    descriptors opened before. Needs root and a file system with chattr."""

    name = "read-only file"

    def __init__(self) -> None:
        self.files: list[Path] = []

    def prepare(self, folder: Path) -> None:
        folder.mkdir(exist_ok=True)
        probe = folder / "probe"
        probe.touch()
        try:
            done = subprocess.run(
                ["chattr", "+i", str(probe)], capture_output=True, text=True, check=False
            )
        except OSError as exc:
            pytest.skip(f"no chattr here: {exc}")
        subprocess.run(["chattr", "-i", str(probe)], capture_output=True, check=False)
        probe.unlink()
        if done.returncode != 0:
            pytest.skip(f"cannot make a file immutable here: {done.stderr.strip()}")

    def inject(self, bot: Tickler, db_path: Path) -> None:
        self.files = [p for p in (db_path, Path(f"{db_path}-wal")) if p.exists()]
        subprocess.run(["chattr", "+i", *map(str, self.files)], check=True)

    def lift(self, bot: Tickler, db_path: Path) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        if self.files:
            subprocess.run(["chattr", "-i", *map(str, self.files)], check=True)
            self.files = []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", [FileSizeLimit, FullTmpfs, Immutable], ids=lambda f: f.name)
async def test_an_unwritable_database_under_the_running_bot_is_reported_and_recovered(
    tmp_path: Path,
    agent_stub: AgentStub,
    telegram_server: TelegramServer,
    tickler: Callable[[Path], Tickler],
    fault: type[Fault],
) -> None:
    admin = telegram_server.user(ADMIN, "Ada")
    broken = fault()
    folder = tmp_path / "data"
    try:
        broken.prepare(folder)
        db_path = folder / "tickler.db"
        first = datetime.now(UTC) + timedelta(seconds=6)
        # A quarter of a second apart: the twelve fires all come due while the fault
        # lasts, and it is lifted within the engine's first backoffs (2 s, then 4 s)
        # instead of after them, when the next try would be 8 s away.
        step = timedelta(seconds=0.25)
        ids = await seed_once(db_path, first, 12, step)
        bot = tickler(db_path)
        await broken.start(bot)
        await bot.wait_healthy()

        broken.inject(bot, db_path)
        tally.add("faults injected")
        # The first fire's claim cannot be written: /healthz says so, and why.
        async with asyncio.timeout(40):
            while (health := await bot.health())[0] != 503:
                await asyncio.sleep(0.2)
        assert health[1]["db_ok"] is False
        assert f"The database {db_path} cannot be written" in health[1]["db_error"]
        assert f"The database {db_path} cannot be written" in bot.log
        alert = await admin.wait_reply(containing="Tickler cannot write its database", timeout=20)
        assert str(db_path) in (alert.text or "")
        # An operator's change meanwhile is refused in a sentence, and not half-made: if
        # the pause went through, that schedule would not fire below.
        await admin.send(f"/pause {ids[-1]}")
        await admin.wait_reply(containing="nothing was changed", timeout=20)
        # Every fire comes due while the fault lasts; the bot keeps going.
        last = first + len(ids) * step
        await asyncio.sleep(max(0.0, (last - datetime.now(UTC)).total_seconds()) + 1)
        assert bot.running, f"Tickler died:\n{bot.log}"
        assert (await bot.health())[0] == 503

        broken.lift(bot, db_path)
        await wait_all_succeeded(db_path, ids, timeout=60)
        await bot.wait_healthy()
        count_runs(ids, db_path, agent_stub)
        assert set(agent_stub.count_by_key().values()) == {1}
        assert f"The database {db_path} is writable again" in bot.log
        await admin.wait_reply(containing="The database takes writes again", timeout=20)
        assert await bot.stop() == 0
        assert integrity(db_path) == "ok"
    finally:
        broken.cleanup()
