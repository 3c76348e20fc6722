"""`tickler backup FILE`: a consistent copy while the database is in use."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from adapters.clocks import FakeClock
from scheduler.models import Action, Owner
from scheduler.service import ScheduleService, TriggerSpec
from storage.sqlite_store import SqliteStore

ROOT = Path(__file__).resolve().parents[1]


def cli_env(db: Path, **settings: str) -> dict[str, str]:
    """The least a `tickler` command needs: its database (and `settings`)."""
    return {
        "PATH": "/usr/bin:/bin",
        "DATABASE_PATH": str(db),
        "AGENT_URL": "http://127.0.0.1:9/",
        **settings,
    }


async def tickler(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        cwd=ROOT,
        # Its own settings only: never the developer's .env beside the clone.
        env={**env, "PYTHONPATH": str(ROOT), "TICKLER_ENV_FILE": ""},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_backup_while_open_copies_everything(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    store = await SqliteStore.open(db)  # stays open: the bot is running
    service = ScheduleService(store, FakeClock(datetime(2026, 11, 24, 7, 0, tzinfo=UTC)))
    made = await service.create_schedule(
        1,
        Owner(id=1),
        name="brief",
        trigger=TriggerSpec(kind="cron", cron="0 9 * * *", timezone="UTC"),
        action=Action(text="hi"),
    )
    copy = tmp_path / "backups" / "copy.db"  # the folder is created
    env = cli_env(db)
    code, out, err = await tickler("backup", str(copy), env=env)
    assert code == 0, err
    assert out.startswith(f"Backed up {db} to {copy}")
    async with await SqliteStore.open(copy) as restored:
        assert [s.id for s in await restored.schedules.list_for_chat(1)] == [made.id]
    await store.close()

    code, _, err = await tickler("backup", str(copy), env=env)
    assert code == 2
    assert err == f"{copy} exists already; choose a new file name.\n"
