"""`tickler migrate-store` on a sizeable installation: a SQLite database with 10,000
schedules and 100,000 runs (each with an attempt, every tenth with a chat message) moves
to PostgreSQL and back; prints the counts, whether each copy exported byte-identical,
and the time of each leg (the command's own figures: export, import, export of the
copy).

    ./dev python -m bench.migrate_store                 # starts a throwaway PostgreSQL
    ./dev python -m bench.migrate_store --url postgresql://tickler:pw@db/empty_db

The database is written with bulk SQL (executemany), not through the service: seeding
is not what is measured. The commands run as the operator runs them, one process each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.boot import install_core_sources
from scheduler.models import Action, Owner, RunStatus, Schedule
from scheduler.triggers import CronTrigger
from storage.codec import SCHEDULE_COLUMNS, schedule_params
from storage.database import open_database

__all__ = ["main", "seed"]

ROOT = Path(__file__).resolve().parents[1]
_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
_RUN_COLUMNS = (
    "id, schedule_id, chat_id, scheduled_for, trigger, status, attempt, started_at, "
    "finished_at, duration_ms, output, error, token_usage_json, owner, created_at, "
    "updated_at, skip_reason, interruptions"
)
_ATTEMPT_COLUMNS = "run_id, attempt, owner, started_at, finished_at, status, error"
_NOTE_COLUMNS = (
    "id, chat_id, kind, text, parse_mode, run_id, schedule_id, status, attempts, "
    "created_at, sent_at, message_id"
)


def _places(columns: str) -> str:
    return ", ".join("?" * len(columns.split(",")))


def seed(path: Path, schedules: int, runs: int) -> None:
    """`schedules` schedules over 50 chats and `runs` runs spread over them (every
    status), each run with one attempt, every tenth with a sent chat message."""
    asyncio.run(_migrate(path))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    template = schedule_params(
        Schedule(
            id="template",
            chat_id=1,
            name="bench",
            trigger=CronTrigger(expr="0 9 * * *", timezone="Europe/Berlin"),
            action=Action(text="Prepare the brief for {date}."),
            owner=Owner(id=1, first_name="Ada"),
            next_run_at=start + timedelta(days=400),
            created_at=start,
            updated_at=start,
        )
    )
    columns = [c.strip() for c in SCHEDULE_COLUMNS.split(",")]
    rows = []
    for i in range(schedules):
        chat = 1000 + i % 50
        row = dict(template, id=f"S{i:07d}", chat_id=chat, name=f"Brief {i}", number=i // 50 + 1)
        rows.append(tuple(row[c] for c in columns))
    statuses = [s.value for s in RunStatus]
    run_rows, attempt_rows, note_rows = [], [], []
    for n in range(runs):
        i = n % schedules
        sid, chat = f"S{i:07d}", 1000 + i % 50
        fired = start + timedelta(hours=n // schedules)
        at, done = fired.strftime(_TIME), (fired + timedelta(seconds=3)).strftime(_TIME)
        status = statuses[n % len(statuses)]
        usage = json.dumps({"prompt_tokens": 120 + n % 50, "total_tokens": 300 + n % 90})
        rid = f"R{n:08d}"
        run_rows.append(
            (
                rid,
                sid,
                chat,
                at,
                "schedule",
                status,
                1,
                at,
                done,
                3000,
                f"Good morning! Brief {n}: stand-up at 10:00, the sponsor call at 15:00.",
                None if status != "dead" else "HTTP 503 from the agent",
                usage,
                # A first attempt that succeeded is read from its run, which keeps the
                # attempt's owner (storage/runs.py DERIVED_ATTEMPT); others have none.
                "engine-1" if status in ("running", "succeeded") else None,
                at,
                done,
                "missed" if status == "skipped" else None,
                0,
            )
        )
        if status != "succeeded":
            attempt_rows.append((rid, 1, "engine-1", at, done, status, None))
        if n % 10 == 0:
            note_rows.append(
                (
                    f"N{n:08d}",
                    chat,
                    "run_answer",
                    f"<b>Brief {i}</b>\nGood morning!",
                    "HTML",
                    rid,
                    sid,
                    "sent",
                    1,
                    done,
                    done,
                    n + 1,
                )
            )
    with sqlite3.connect(path) as db:
        db.executemany(
            f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES ({_places(SCHEDULE_COLUMNS)})",
            rows,
        )
        db.executemany(
            f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({_places(_RUN_COLUMNS)})", run_rows
        )
        db.executemany(
            f"INSERT INTO run_attempts ({_ATTEMPT_COLUMNS}) VALUES ({_places(_ATTEMPT_COLUMNS)})",
            attempt_rows,
        )
        db.executemany(
            f"INSERT INTO notifications ({_NOTE_COLUMNS}) VALUES ({_places(_NOTE_COLUMNS)})",
            note_rows,
        )


async def _migrate(path: Path) -> None:
    await (await open_database(path)).close()


def migrate(source: str, target: str) -> tuple[float, str]:
    """`tickler migrate-store` as a process of its own: its wall time and summary."""
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "migrate-store", "--from", source, "--to", target],
        cwd=ROOT,
        env={**os.environ, "TICKLER_ENV_FILE": "", "AGENT_URL": "http://127.0.0.1:9/"},
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"migrate-store failed ({done.returncode}): {done.stderr.strip()}")
    return took, done.stdout.splitlines()[0]


def report(leg: str, took: float, summary: str) -> None:
    counts = re.search(r" s \((.*?)\); ", summary)
    phases = re.search(r"Time: (.*)\.$", summary)
    identical = "byte-identical" in summary
    print(f"{leg}: {took:.1f} s wall (process start included)")
    print(f"  counts: {counts.group(1) if counts else '?'}")
    print(f"  both exports byte-identical: {'yes' if identical else 'NO'}")
    print(f"  phases: {phases.group(1) if phases else '?'}")
    print(f"  the command said: {summary}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.migrate_store")
    parser.add_argument("--url", help="an empty PostgreSQL database (default: a throwaway one)")
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=100_000)
    args = parser.parse_args(argv)
    install_core_sources()
    with tempfile.TemporaryDirectory(prefix="tickler-bench-") as folder:
        source = Path(folder, "tickler.db")
        began = time.perf_counter()
        seed(source, args.schedules, args.runs)
        print(
            f"seeded {source.stat().st_size / 1e6:.1f} MB of SQLite ({args.schedules} schedules, "
            f"{args.runs} runs) in {time.perf_counter() - began:.1f} s"
        )
        if args.url:
            _legs(source, args.url, Path(folder))
            return
        from tests.postgres import Cluster

        with Cluster.start(Path(folder)) as cluster:
            _legs(source, cluster.create_database("bench_migrate"), Path(folder))


def _legs(source: Path, url: str, folder: Path) -> None:
    took, summary = migrate(f"sqlite:///{source}", url)
    report("SQLite -> PostgreSQL", took, summary)
    took, summary = migrate(url, str(folder / "back.db"))
    report("PostgreSQL -> SQLite", took, summary)


if __name__ == "__main__":
    main()
