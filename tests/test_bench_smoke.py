"""The benchmark harness runs: its help, and one tiny burst measured end to end.

No timings are asserted (TESTING.md "Speed"); what a user of `python -m bench` would
notice is checked: the command answers, and a burst loses and doubles no fire, on SQLite
and on PostgreSQL with one engine and with three.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench import ledger_floor, seed
from bench import retention as retention_bench
from bench.__main__ import SCENARIOS
from bench.report import postgres_table
from bot.demo_kit.agent_stub import AgentStub
from storage.codec import to_db_time
from storage.runs import ALL_ATTEMPTS

ROOT = Path(__file__).resolve().parent.parent


def test_help_names_every_scenario() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for scenario in (*SCENARIOS, "--quick", "--agent-delay"):
        assert scenario in done.stdout


async def measure(
    spec: Mapping[str, object], *, when_ready: Callable[[], Awaitable[float]] | None = None
) -> dict[str, Any]:
    """What `python -m bench.child` reports for `spec` (its last line). With `when_ready`,
    the child takes the handshake: once it says it is ready, `when_ready` seeds the
    fires and gives their due instant (epoch seconds), which the child then reads."""
    if when_ready is not None:
        spec = {**spec, "handshake": True}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.child",
        json.dumps(spec),
        cwd=ROOT,
        stdin=None if when_ready is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    due: bytes | None = None
    if when_ready is not None:
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 60) == b"ready\n"
        due = f"{await when_ready()}\n".encode()
    out, _ = await asyncio.wait_for(child.communicate(due), 60)
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_a_tiny_burst_fires_every_schedule_once(
    tmp_path: Path, agent_stub: AgentStub
) -> None:
    n = 30
    db = tmp_path / "burst.db"
    spec = {
        "kind": "tickler",
        "scenario": "burst",
        "db": str(db),
        "url": agent_stub.url,
        "n": n,
        "timeout": 30,
        "concurrency": 8,
    }

    async def seeded() -> float:
        # Seeded once the child is ready: the fires come due after its start, however
        # slow. Seeding migrates the file with its own event loop; this test runs one.
        due = datetime.fromtimestamp(time.time() + 0.5, UTC)
        await asyncio.to_thread(seed.seed_tickler, db, n, due)
        return due.timestamp()

    result = await measure(spec, when_ready=seeded)
    print(result)
    assert (result["fires"], result["dropped"]) == (n, 0)
    assert result["extra"]["succeeded_in_db"] == n
    keys = [r.headers["idempotency-key"] for r in agent_stub.requests]
    assert len(keys) == len(set(keys)) == n


@pytest.mark.parametrize("posting", [False, True], ids=["claim-only", "burst"])
async def test_the_ledger_floor_writes_what_the_engine_writes(
    tmp_path: Path, agent_stub: AgentStub, posting: bool
) -> None:
    """The floor is only a ceiling if it does the engine's work per fire: each fire a
    succeeded run whose one attempt is read from it (no attempt row, as the engine
    writes a first attempt's success), each schedule moved to its next instant, and in a
    burst each fire posted to the agent once."""
    n = 30
    db = tmp_path / "floor.db"
    due = datetime.fromtimestamp(time.time() + 0.5, UTC)
    await asyncio.to_thread(seed.seed_tickler, db, n, due)
    spec = {
        "kind": "floor",
        "scenario": "burst" if posting else "claim-only",
        "db": str(db),
        "n": n,
        "due": due.timestamp(),
        "url": agent_stub.url if posting else None,
        "concurrency": 8,
    }
    result = await measure(spec)
    assert (result["fires"], result["dropped"]) == (n, 0), result.get("notes")
    with sqlite3.connect(db) as conn:
        runs = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT schedule_id) FROM runs WHERE status = 'succeeded' "
            "AND attempt = 1 AND owner = ?",
            (ledger_floor.OWNER,),
        ).fetchone()
        written = conn.execute("SELECT COUNT(*) FROM run_attempts").fetchone()[0]
        attempts = conn.execute(f"SELECT COUNT(*) FROM {ALL_ATTEMPTS} AS a").fetchone()[0]
        moved = conn.execute(
            "SELECT COUNT(*) FROM schedules WHERE next_run_at > ? AND last_run_at IS NOT NULL",
            (to_db_time(due),),
        ).fetchone()[0]
    assert runs == (n, n)
    assert (written, attempts) == (0, n)
    assert moved == n
    keys = [r.headers["idempotency-key"] for r in agent_stub.requests]
    assert len(keys) == len(set(keys)) == (n if posting else 0)


def test_the_retention_run_keeps_the_ledger_at_the_retention_window(tmp_path: Path) -> None:
    """bench/retention.py writes every fire as the engine does and prunes with the real
    pass: after the window fills, each day's pass deletes a day of runs."""
    db = tmp_path / "retention.db"
    every, n = timedelta(hours=1), 5
    retention_bench.prepare(db, n, every, auto_vacuum=False)
    days = asyncio.run(
        retention_bench.simulate(
            db,
            schedules=n,
            every=every,
            days=5,
            retention=timedelta(days=2),
            output="answer",
            auto_vacuum=False,
            report=False,
        )
    )
    assert [d.fires for d in days] == [n * 24] * 5
    assert [d.runs for d in days] == [n * 24, n * 48, n * 48, n * 48, n * 48]
    with sqlite3.connect(db) as conn:
        runs, attempts = conn.execute(
            "SELECT (SELECT COUNT(*) FROM runs WHERE status = 'succeeded' AND output = 'answer'), "
            f"(SELECT COUNT(*) FROM {ALL_ATTEMPTS} AS a)"
        ).fetchone()
    assert runs == attempts == n * 48


def bench(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m bench --quick ARGS` (Tickler's engine only, so it takes seconds)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--systems", "tickler", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_the_bursts_on_postgresql_fire_every_schedule_once(
    tmp_path: Path, postgres_url: str
) -> None:
    """The PostgreSQL rows of `python -m bench --quick`: claim-only and burst on one
    engine and on three sharing the database, each fire once in the ledger (and at the
    agent), beside SQLite's row of the same run and its ratio to it."""
    n = 200
    out = tmp_path / "bench.json"
    done = bench(
        "--only", "claim-only", "burst", "--schedules", str(n),
        "--postgres-url", postgres_url, "--json", str(out),
    )  # fmt: skip
    report = json.loads(out.read_text())
    rows = postgres_table(report["results"])
    stores = ("SQLite", "PostgreSQL x1", "PostgreSQL x3")
    assert [(r["scenario"], r["store"]) for r in rows] == [
        (scenario, store) for scenario in ("claim-only", "burst") for store in stores
    ]
    for row in rows:
        assert (row["dropped"], row["doubled"]) == (0, 0), row
        assert row["rate"] and row["vs_sqlite"], row
    on_postgres = [r for r in report["results"] if r["extra"].get("store") == "postgresql"]
    assert len(on_postgres) == 4
    for result in on_postgres:
        ledger = result["extra"]["ledger"]
        assert ledger["runs"] == ledger["succeeded"] == ledger["distinct_fires"] == n, result
        assert ledger["attempt_rows"] == sum(ledger["attempts_per_engine"]) == n, result
        assert len(ledger["attempts_per_engine"]) <= result["extra"]["replicas"]
        assert result["fires"] == n, result
        if result["scenario"] == "burst":
            assert result["extra"]["agent_posts"] == result["extra"]["agent_distinct"] == n
    assert "PostgreSQL x3 / SQLite" in done.stdout


def test_without_postgresql_the_bench_says_so_in_one_line(tmp_path: Path) -> None:
    done = bench(
        "--only", "claim-only", "--schedules", "50",
        env={"TICKLER_PG_BIN": str(tmp_path / "no-postgres-here")},
    )  # fmt: skip
    skipped = [line for line in done.stdout.splitlines() if "PostgreSQL" in line]
    assert skipped[0].startswith("PostgreSQL rows skipped: PostgreSQL not found"), skipped
    assert "tickler, PostgreSQL" not in done.stdout


def test_the_new_scenarios_fire_every_fire_once_and_print_their_targets(tmp_path: Path) -> None:
    """slow-agent, fairness (fast and slow stub) and million at tiny sizes, Tickler and
    APScheduler: every fire once at the agent and in the report, nothing dropped or
    doubled, each scenario's lines and target verdicts printed."""
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-postgres", "--systems", "tickler", "aps",
         "--only", "slow-agent", "fairness", "million", "--schedules", "120",
         "--agent-delay", "0.01", "0.05", "--slow-concurrency", "32", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    slow = [r for r in report["results"] if r["scenario"] == "slow-agent"]
    assert [r["system"] for r in slow] == ["tickler", "apscheduler, grace 3600 s"]
    for r in slow:
        assert (r["fires"], r["dropped"], r["extra"]["doubled"]) == (120, 0, 0), r
        assert r["extra"]["agent_posts"] == r["extra"]["agent_distinct"] == 120, r
    fairness = [r for r in report["results"] if r["scenario"] == "fairness"]
    assert sorted(r["system"] for r in fairness) == [
        "apscheduler, fast agent",
        "apscheduler, slow agent",
        "tickler, fair claims, fast agent",
        "tickler, fair claims, slow agent",
        "tickler, plain due order, fast agent",
    ]
    for r in fairness:
        assert r["extra"]["b_lag_s"] is not None and r["dropped"] == 0, r
        assert r["extra"]["dispatched"] == 121, r
    million = {r["extra"]["part"]: r for r in report["results"] if r["scenario"] == "million"}
    assert million["startup"]["fires"] == 1 and million["startup"]["dropped"] == 0
    assert million["startup"]["extra"]["agent_posts"] == 1
    claim_plan = million["plans"]["extra"]["plans"]["due (claim)"]
    assert any(line.startswith("SEARCH schedules USING INDEX") for line in claim_plan)
    checks = {t["name"] for t in report["targets"]}
    for name in (
        "slow agent 120: time vs bound",
        "slow agent 120: dropped / doubled",
        "fairness 120 (tickler, fair claims, slow agent): B's lag",
        "fairness 120 (apscheduler, fast agent): B's lag",
        "million (120): start-up to first fire",
        "million (120): due query plan",
    ):
        assert name in checks
    for line in ("slow-agent, 120 schedules", "EXPLAIN QUERY PLAN", "chat B's lag", "Targets"):
        assert line in done.stdout
