"""Tickler's engine against APScheduler 3 and against the machine's limit, in one run.

    python -m bench [--quick | --full] [--json PATH] [--only SCENARIO ...]

Scenarios (each measured system runs in a child process of its own; the agent stub is
an aiohttp server in another; all traffic stays on 127.0.0.1):

  burst       N schedules due at one instant, each dispatched as an HTTP POST: fires/s,
              fire lag (start of dispatch - scheduled instant), peak RSS, dropped fires.
              Tickler's engine; APScheduler 3 (AsyncIOScheduler + SQLAlchemyJobStore
              on SQLite) with its default 1 s misfire grace and with the grace raised;
              and the limit loop (batch claims, the fastest HTTP client found).
  claim-only  the same burst with a dispatcher that does nothing.
              Both also run the ledger floor (bench/ledger_floor.py): Tickler's SQL per
              fire (and in a burst its dispatcher) with no engine, the ceiling for it;
              and Tickler's engine on PostgreSQL (bench/pg.py), one replica and three
              (three processes on one database sharing the burst), with its ratio to
              SQLite in the same run.
  idle        100,000 schedules, none due for an hour: CPU and RSS over 60 s.
  startup     100,000 schedules and 1,000 missed fires: process start to first fire.
  steady      10,000 schedules on `*/1 * * * *` for 3 minutes: every fire once, lag.
  slow-agent  10,000 fires due at one instant (--quick: 1,000), the agent stub answering
              each POST after a uniform 1-3 s (--agent-delay), Tickler at
              max_concurrency 1,024 (--slow-concurrency) and APScheduler with the same
              number of POSTs in flight: total time against the bound N x mean latency
              / concurrency, peak RSS, dropped and doubled fires.
  fairness    chat A with 10,000 fires due at one instant, chat B with one due at the
              same instant: B's lag and dispatch round, with fair claims and in plain
              due order (bench/fairness.py), to the fast stub and to the slow one;
              APScheduler's lag for the one job seeded after 10,000 others beside it.
  million     (--full, or --only million) 1,000,000 schedules seeded with bulk SQL: idle
              CPU and RSS, start-up to the first fire (one schedule due at start), and
              the query plans of the engine's due queries. --schedules shrinks it.

--schedules N replaces the mode's sizes: the bursts' (every N given), slow-agent's,
fairness's and million's (the first N).

--quick shrinks every scenario (1,000-schedule bursts, 5 s idle, ...) to finish in about
a minute on 2 cores; its numbers are labelled as such. --full adds 100,000 bursts.

PostgreSQL: the server given by --postgres-url (its database is emptied before each
run), or else a throwaway one the harness starts with PostgreSQL's own binaries
(tests/postgres.py); without them the PostgreSQL rows are skipped, with one line saying
why. --no-postgres skips them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import pg, seed
from bench.measure import Result, percentile
from bench.report import Check, fairness_place, render, targets
from storage.codec import to_db_time
from storage.due import NEXT_FIRE_SQL

SCENARIOS = (
    "burst",
    "claim-only",
    "idle",
    "startup",
    "steady",
    "slow-agent",
    "fairness",
    "million",
)
#: Only with --full (or named in --only): seeding a million schedules takes a while.
FULL_ONLY = ("million",)
#: The measured systems of the bursts (`--systems`): Tickler's engine (on SQLite, and on
#: PostgreSQL when there is one), the limit loop, the ledger floor, APScheduler.
SYSTEMS = ("tickler", "limit", "floor", "aps")
#: Engines on one PostgreSQL database, for its rows of the bursts.
POSTGRES_REPLICAS = (1, 3)
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Plan:
    mode: str
    bursts: tuple[int, ...]
    idle_schedules: int
    idle_seconds: float
    startup_schedules: int
    startup_missed: int
    steady_schedules: int
    #: Minute boundaries of `*/1 * * * *` to run through; 0 means the quick variant
    #: (fires spread over `steady_spread` seconds on an hourly interval).
    steady_minutes: int
    steady_spread: float = 0.0
    #: Fires of the slow-agent scenario, chat A's of fairness, and the million's schedules.
    slow_fires: int = 10_000
    fairness_fires: int = 10_000
    million: int = 1_000_000


PLANS = {
    "quick": Plan("quick", (1_000,), 10_000, 4.0, 10_000, 100, 1_000, 0, 5.0, 1_000, 1_000),
    "default": Plan("default", (1_000, 10_000), 100_000, 60.0, 100_000, 1_000, 10_000, 3),
    "full": Plan("full", (1_000, 10_000, 100_000), 100_000, 60.0, 100_000, 1_000, 10_000, 3),
}


@dataclass
class Harness:
    plan: Plan
    concurrency: int
    workdir: Path
    url: str = ""
    client: str = "aiohttp"
    #: Seconds from seeding to the due instant: a child process needs about one to
    #: import its side and open its database (it notes it in its result if it was late).
    lead: float = 1.5
    systems: tuple[str, ...] = SYSTEMS
    #: Where the PostgreSQL rows run; None: no PostgreSQL rows.
    postgres: pg.PgServer | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    log: Callable[[str], None] = print
    #: The slow agent: each POST answered after a uniform delay in this range (seconds).
    agent_delay: tuple[float, float] = (1.0, 3.0)
    slow_concurrency: int = 1024
    _slow: subprocess.Popen[str] | None = None
    slow_url: str = ""

    def slow_agent_url(self) -> str:
        """The slow agent stub's URL, started on first use (stopped by `close`)."""
        if self._slow is None:
            low, high = self.agent_delay
            self._slow, self.slow_url = start_agent("--delay", str(low), str(high))
        return self.slow_url

    def close(self) -> None:
        if self._slow is not None:
            stop_agent(self._slow)
            self._slow = None

    # --- plumbing ----------------------------------------------------------------
    def child(self, spec: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
        spec = {"concurrency": self.concurrency, "url": self.url, **spec}
        stderr = self.workdir / f"child-{len(self.results)}.log"
        with stderr.open("w") as errors:
            done = subprocess.run(
                [sys.executable, "-m", "bench.child", json.dumps(spec)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                timeout=timeout,
                check=False,
            )
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            tail = stderr.read_text()[-2000:]
            raise RuntimeError(f"child {spec['kind']}/{spec['scenario']} failed:\n{tail}")
        result: dict[str, Any] = json.loads(lines[-1])
        result["mode"] = self.plan.mode
        self.results.append(result)
        return result

    def agent(self, path: str, url: str | None = None) -> dict[str, int]:
        method = "POST" if path == "reset" else "GET"
        base = (url or self.url).rsplit("/", 1)[0]
        request = urllib.request.Request(f"{base}/{path}", method=method)
        with urllib.request.urlopen(request, timeout=10) as answer:
            data: dict[str, int] = json.loads(answer.read())
            return data

    def fresh(self, name: str) -> Path:
        path = self.workdir / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return path

    def with_agent_check(
        self, spec: dict[str, Any], expected: int, agent: str | None = None
    ) -> dict[str, Any]:
        """Run a child that posts to the agent (`agent`'s URL, else the fast stub's); add
        what the agent saw."""
        self.agent("reset", agent)
        result = self.child(spec)
        seen = self.agent("stats", agent)
        result["extra"]["agent_peak_in_flight"] = seen["peak_in_flight"]
        result["extra"]["agent_posts"] = seen["posts"]
        result["extra"]["agent_distinct"] = seen["keys"]
        lost, doubled = expected - seen["keys"], seen["posts"] - seen["keys"]
        result["dropped"] = max(result["dropped"], lost)
        result["extra"]["doubled"] = doubled
        if doubled:
            result["notes"].append(f"{doubled} fires delivered twice")
        return result

    # --- scenarios -------------------------------------------------------------------
    def probe(self) -> None:
        n = 2_000 if self.plan.mode == "quick" else 5_000
        result = self.child({"kind": "probe", "scenario": "probe", "n": n})
        raw = {k: v for k, v in result["extra"].items() if k != "tickler dispatcher"}
        self.client = max(raw, key=lambda k: raw[k])
        self.log(
            "  clients (POST/s): "
            + ", ".join(f"{k} {v:,.0f}" for k, v in result["extra"].items())
            + f"; fastest: {self.client}"
        )

    def burst(self, n: int, dispatch: bool) -> None:
        scenario = "burst" if dispatch else "claim-only"
        url = self.url if dispatch else None
        timeout = 60.0 + n / 100

        def seed_tickler(db: Path, due: datetime) -> None:
            seed.seed_tickler(db, n, due)

        runs: list[tuple[str, Callable[[Path, datetime], None], dict[str, Any], float]] = [
            ("tickler", seed_tickler, {}, 15e-6),
            (
                "limit",
                lambda db, due: seed.seed_limit(db, n, due),
                {"client": self.client},
                3e-6,
            ),
        ]
        # What this ledger allows at all: the engine's SQL per fire (and, in a burst, its
        # dispatcher), with no engine around it.
        runs.append(("floor", seed_tickler, {}, 15e-6))
        graces: tuple[float, ...] = (1.0, 3600.0) if dispatch else (3600.0,)
        for grace in graces:
            runs.append(
                (
                    "aps",
                    functools.partial(_seed_aps, n=n, grace=grace),
                    {"client": self.client, "grace": grace},
                    60e-6,
                )
            )
        runs = [run for run in runs if run[0] in self.systems]
        for kind, seeder, extra, per_row in runs:
            db = self.fresh(f"{kind}-{scenario}-{n}")
            due = datetime.fromtimestamp(time.time() + self.lead + n * per_row, UTC)
            seeder(db, due)
            spec = {
                "kind": kind,
                "scenario": scenario,
                "db": str(db),
                "n": n,
                "due": due.timestamp(),
                "timeout": timeout,
                "url": url,
                **extra,
            }
            result = self.with_agent_check(spec, n) if dispatch else self.child(spec)
            self.log(f"  {scenario} {n:,}: {_line(result)}")
            db.unlink(missing_ok=True)
            if kind == "tickler" and self.postgres is not None:
                # Right after SQLite's, so the ratios compare runs of the same minute.
                for replicas in POSTGRES_REPLICAS:
                    merged = self.postgres_burst(n, dispatch, replicas)
                    self.log(f"  {scenario} {n:,}: {_line(merged)}")

    def postgres_burst(self, n: int, dispatch: bool, replicas: int) -> dict[str, Any]:
        """The burst on PostgreSQL: `replicas` engines, each in a process of its own with
        its own instance id, on one database; fires/s over all of them, dropped and
        doubled fires counted from the ledger (and at the agent)."""
        assert self.postgres is not None
        server = self.postgres
        scenario = "burst" if dispatch else "claim-only"
        timeout = 60.0 + n / 100
        # Connecting takes a moment more than opening a file, and several processes
        # starting at once on few cores take longer still to be ready.
        lead = self.lead + 0.5 + 1.0 * (replicas - 1) + n * 20e-6
        due = datetime.fromtimestamp(time.time() + lead, UTC)
        seed.seed_tickler_postgres(server.url, n, due)
        spec: dict[str, Any] = {
            "kind": "tickler",
            "scenario": scenario,
            "postgres": server.url,
            "n": n,
            "due": due.timestamp(),
            "timeout": timeout,
            "url": self.url if dispatch else None,
            "concurrency": self.concurrency,
            # One engine stops at its n-th fire as on SQLite; several cannot know when
            # the burst is over: the harness watches the ledger and tells them.
            "replica": replicas > 1,
        }
        if dispatch:
            self.agent("reset")
        server_before = server.cpu_seconds()
        label = f"{scenario}-pg{replicas}-{n}"
        children = [self._start_child(spec, f"{label}-{i}") for i in range(replicas)]
        finished = True
        if replicas > 1:
            finished = asyncio.run(
                pg.succeeded(
                    server.url, n, timeout, lambda: all(c.poll() is None for c, _ in children)
                )
            )
        # Each communicate() closes its child's standard input first: for a replica, the
        # word to stop; all at once, so no replica idles while another is read.
        with ThreadPoolExecutor(replicas) as pool:
            parts = list(
                pool.map(lambda c: self._child_result(c[0], c[1], spec, timeout), children)
            )
        server_after = server.cpu_seconds()
        ledger = pg.ledger(server.url)
        result = parts[0] if replicas == 1 else _merge(parts, n, due.timestamp())
        result["system"] = f"tickler, PostgreSQL x{replicas}"
        result["mode"] = self.plan.mode
        extra = result["extra"]
        extra.update(store="postgresql", replicas=replicas, ledger=ledger.as_dict())
        if server_before is not None and server_after is not None and result["fires"]:
            used = server_after - server_before
            extra["server_cpu_s"] = round(used, 3)
            extra["server_cpu_us_per_fire"] = round(1e6 * used / result["fires"], 1)
        # Fires started more than once: in the ledger, or dispatched twice by the engines.
        doubled = max(ledger.doubled(), extra["started"] - n)
        dropped = ledger.dropped(n)
        if dispatch:
            seen = self.agent("stats")
            extra["agent_posts"], extra["agent_distinct"] = seen["posts"], seen["keys"]
            dropped = max(dropped, n - seen["keys"])
            doubled = max(doubled, seen["posts"] - seen["keys"])
        result["dropped"] = max(dropped, 0)
        extra["doubled"] = doubled
        if doubled:
            result["notes"].append(f"{doubled} fires started twice")
        if not finished:
            result["notes"].append(f"the ledger did not reach {n:,} successes in {timeout:g} s")
        sqlite = next(
            (
                r
                for r in reversed(self.results)
                if r["scenario"] == scenario and r["n"] == n and r["system"] == "tickler"
            ),
            None,
        )
        if sqlite and sqlite["rate"] and result["rate"]:
            extra["vs_sqlite"] = round(result["rate"] / sqlite["rate"], 3)
        self.results.append(result)
        return result

    def _start_child(self, spec: dict[str, Any], name: str) -> tuple[subprocess.Popen[str], Path]:
        stderr = self.workdir / f"child-{name}.log"
        with stderr.open("w") as errors:
            child = subprocess.Popen(
                [sys.executable, "-m", "bench.child", json.dumps(spec)],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
        return child, stderr

    @staticmethod
    def _child_result(
        child: subprocess.Popen[str], stderr: Path, spec: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        try:
            out, _ = child.communicate(timeout=timeout + 60)
        except subprocess.TimeoutExpired:
            child.kill()
            out, _ = child.communicate()
        lines = out.strip().splitlines()
        if child.returncode != 0 or not lines:
            tail = stderr.read_text()[-2000:]
            raise RuntimeError(f"child {spec['kind']}/{spec['scenario']} failed:\n{tail}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result

    def idle(self) -> None:
        n, seconds = self.plan.idle_schedules, self.plan.idle_seconds
        later = datetime.now(UTC) + timedelta(hours=1)
        db = self.fresh("tickler-idle")
        seed.seed_tickler(db, n, later)
        spec = {"kind": "tickler", "scenario": "idle", "db": str(db), "n": n, "seconds": seconds}
        self.log(f"  idle tickler: {_line(self.child(spec))}")
        if "aps" not in self.systems:
            return
        db = self.fresh("aps-idle")
        seed.seed_aps(db, n, later, grace=1.0, func=APS_FUNC)
        spec = {"kind": "aps", "scenario": "idle", "db": str(db), "n": n, "seconds": seconds}
        self.log(f"  idle apscheduler: {_line(self.child(spec))}")

    def startup(self) -> None:
        n, missed = self.plan.startup_schedules, self.plan.startup_missed
        now = datetime.now(UTC)
        db = self.fresh("tickler-startup")
        # Missed 10 minutes ago, beyond the 5-minute grace: each is a catch-up run; the
        # rest are due in an hour.
        seed.seed_tickler(
            db, n, now + timedelta(hours=1), missed=missed, missed_at=now - timedelta(minutes=10)
        )
        spec = {
            "kind": "tickler",
            "scenario": "startup",
            "db": str(db),
            "n": n,
            "missed": missed,
            "process_start": time.time(),
        }
        self.log(f"  startup: {_line(self.with_agent_check(spec, missed))}")

    def steady(self) -> None:
        n, minutes = self.plan.steady_schedules, self.plan.steady_minutes
        db = self.fresh("tickler-steady")
        if minutes:
            soon = datetime.now(UTC) + timedelta(seconds=3 + n * 15e-6)
            first = soon.replace(second=0, microsecond=0) + timedelta(minutes=1)
            seed.seed_tickler(db, n, first, cron="*/1 * * * *")
            expected, timeout = n * minutes, 60.0 * minutes + 120
        else:
            first = datetime.now(UTC) + timedelta(seconds=self.lead)
            seed.seed_tickler(db, n, first, spread=self.plan.steady_spread)
            expected, timeout = n, self.plan.steady_spread + 60
        spec = {
            "kind": "tickler",
            "scenario": "steady",
            "db": str(db),
            "n": n,
            "due": first.timestamp(),
            "expected": expected,
            "timeout": timeout,
        }
        result = self.with_agent_check(spec, expected)
        result["extra"]["minutes"] = minutes
        result["extra"]["spread_s"] = self.plan.steady_spread
        self.log(f"  steady: {_line(result)}")

    def slow_agent(self) -> None:
        """N fires due at once, each POST answered after a uniform delay, at
        `slow_concurrency`: the total time against N x mean latency / concurrency."""
        n, concurrency = self.plan.slow_fires, self.slow_concurrency
        low, high = self.agent_delay
        url = self.slow_agent_url()
        bound = slow_bound(n, self.agent_delay, concurrency)
        timeout = 120.0 + 4 * bound
        for kind in ("tickler", "aps"):
            if kind not in self.systems:
                continue
            db = self.fresh(f"{kind}-slow-agent-{n}")
            due = datetime.fromtimestamp(time.time() + self.lead + n * 60e-6, UTC)
            if kind == "tickler":
                seed.seed_tickler(db, n, due)
                extra: dict[str, Any] = {}
            else:
                _seed_aps(db, due, n=n, grace=3600.0)
                extra = {"client": self.client, "grace": 3600.0, "limit": concurrency}
            spec = {
                "kind": kind,
                "scenario": "slow-agent",
                "db": str(db),
                "n": n,
                "due": due.timestamp(),
                "timeout": timeout,
                "url": url,
                "concurrency": concurrency,
                **extra,
            }
            result = self.with_agent_check(spec, n, url)
            result["extra"].update(
                bound_s=round(bound, 3),
                vs_bound=None if result["seconds"] is None else result["seconds"] / bound,
                delay_s=[low, high],
                concurrency=concurrency,
            )
            self.log(f"  slow-agent {n:,}: {_line(result)}")
            db.unlink(missing_ok=True)

    def fairness(self) -> None:
        """Chat B's one fire among chat A's N, to the fast stub and to the slow one: with
        fair claims (and, to the fast stub, in plain due order, what the engine did
        before), and APScheduler's figure for its job seeded after the N others."""
        n = self.plan.fairness_fires
        agents = [("fast", self.url, self.concurrency), ("slow", "", self.slow_concurrency)]
        for speed, url, concurrency in agents:
            url = url or self.slow_agent_url()
            orders = (True, False) if speed == "fast" else (True,)
            if "tickler" in self.systems:
                for fair in orders:
                    out = self.workdir / "fairness.json"
                    subprocess.run(
                        [sys.executable, "-m", "bench.fairness", "--n", str(n)]
                        + ["--concurrency", str(concurrency), "--url", url, "--json", str(out)]
                        + ([] if fair else ["--plain-only"]),
                        cwd=ROOT,
                        capture_output=True,
                        text=True,
                        timeout=900,
                        check=True,
                    )
                    [figures] = json.loads(out.read_text())
                    result = _fairness_result(figures, speed, self.plan.mode)
                    self.results.append(result)
                    self.log(f"  fairness ({speed} agent): {_fairness_line(result)}")
            if "aps" in self.systems:
                db = self.fresh("aps-fairness")
                due = datetime.fromtimestamp(time.time() + self.lead + n * 60e-6, UTC)
                # Chat B's job is the last of n + 1, seeded after all of chat A's.
                _seed_aps(db, due, n=n + 1, grace=3600.0)
                spec = {
                    "kind": "aps",
                    "scenario": "fairness",
                    "db": str(db),
                    "n": n + 1,
                    "due": due.timestamp(),
                    "timeout": 120.0 + 4 * slow_bound(n, self.agent_delay, concurrency),
                    "url": url,
                    "concurrency": concurrency,
                    "client": self.client,
                    "grace": 3600.0,
                    "limit": concurrency,
                    "watch": n,
                }
                result = self.with_agent_check(spec, n + 1, url)
                extra = result["extra"]
                result.update(n=n, system=f"apscheduler, {speed} agent", scenario="fairness")
                extra.update(
                    agent=speed,
                    b_lag_s=extra.get("watched_lag"),
                    b_position=extra.get("watched_position"),
                    dispatched=result["fires"],
                )
                self.log(f"  fairness ({speed} agent): {_fairness_line(result)}")
                db.unlink(missing_ok=True)

    def million(self) -> None:
        """A million schedules: seeded with bulk SQL, then idle (CPU, RSS), start-up to
        the first fire with one schedule due at the start, and the due queries' plans."""
        n = self.plan.million
        db = self.fresh("tickler-million")
        started = time.monotonic()
        seed.seed_tickler_bulk(db, n, datetime.now(UTC) + timedelta(hours=1))
        seeded = time.monotonic() - started
        self.log(f"  million: {n:,} schedules seeded in {seeded:.1f} s (bulk SQL)")
        spec = {
            "kind": "tickler",
            "scenario": "idle",
            "db": str(db),
            "n": n,
            "seconds": self.plan.idle_seconds,
        }
        idle = self.child(spec)
        idle["scenario"] = "million"
        idle["extra"].update(part="idle", seeded_s=round(seeded, 1))
        self.log(f"  million idle: {_line(idle)}")
        # One schedule due the instant the process is started: from exec to its POST.
        start = time.time()
        with sqlite3.connect(db) as conn:
            conn.execute(
                "UPDATE schedules SET next_run_at = ? WHERE id = 'sched0000000'",
                (to_db_time(datetime.fromtimestamp(start, UTC)),),
            )
        spec = {
            "kind": "tickler",
            "scenario": "startup",
            "db": str(db),
            "n": n,
            "missed": 1,
            "process_start": time.time(),
        }
        first = self.with_agent_check(spec, 1)
        first["scenario"] = "million"
        first["extra"]["part"] = "startup"
        self.log(f"  million start-up: {_line(first)}")
        with sqlite3.connect(db) as conn:
            plans = due_query_plans(conn, datetime.now(UTC))
        found = Result("tickler", "million", n, extra={"part": "plans", "plans": plans})
        self.results.append(_row(found, self.plan.mode))
        for name, plan in plans.items():
            self.log(f"  million: {name}: " + " | ".join(plan))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)


def slow_bound(n: int, delay: tuple[float, float], concurrency: int) -> float:
    """The least time N answers of a uniform `delay` take at `concurrency` in flight:
    N x mean latency / concurrency (the issue's bound), and never less than the slowest
    answer (a burst no larger than the concurrency takes as long as its slowest POST)."""
    low, high = delay
    return max(n * (low + high) / 2 / concurrency, high)


def due_query_plans(conn: sqlite3.Connection, now: datetime) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN of the engine's due queries (storage/schedules.py, the claim's
    read; storage/due.py's next-due instant), with the parameters the claim passes."""
    from storage import schedules

    at = to_db_time(now)
    queries: dict[str, tuple[str, tuple[object, ...]]] = {
        "due (claim)": (schedules.DUE_SQL, (at, "", 500)),
        "fair due (claim, a backlog of several chats)": (schedules.FAIR_DUE_SQL, (at, "", 500)),
        "another chat due?": (schedules.OTHERS_DUE_SQL, (at, "", 1)),
        "next due instant": (NEXT_FIRE_SQL, ()),
    }
    return {
        name: [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
        for name, (sql, params) in queries.items()
    }


def _row(result: Result, mode: str) -> dict[str, Any]:
    """A result measured here, not by a child, as `Harness.child` returns one."""
    return {**dataclasses.asdict(result), "mode": mode}


def _fairness_result(figures: dict[str, Any], speed: str, mode: str) -> dict[str, Any]:
    order = "fair claims" if figures["fair"] else "plain due order"
    n, dispatched = figures["n"], figures["dispatched"]
    result = Result(f"tickler, {order}, {speed} agent", "fairness", n, fires=dispatched)
    result.dropped = n + 1 - dispatched
    result.extra = {**figures, "agent": speed}
    return _row(result, mode)


def _fairness_line(result: dict[str, Any]) -> str:
    lag = result["extra"].get("b_lag_s")
    return (
        f"{result['system']}: chat B's fire went out "
        f"{'never' if lag is None else format(lag, '.3f') + ' s'} after its instant "
        f"({fairness_place(result['extra'])})"
    )


APS_FUNC = "bench.aps_side:fire"


def start_agent(*args: str) -> tuple[subprocess.Popen[str], str]:
    """The agent stub (bench/agent.py) in a process of its own, and its webhook URL."""
    agent = subprocess.Popen(
        [sys.executable, "-m", "bench.agent", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert agent.stdout is not None
    port = int(agent.stdout.readline())
    return agent, f"http://127.0.0.1:{port}/webhook"


def stop_agent(agent: subprocess.Popen[str]) -> None:
    if agent.stdin is not None:
        agent.stdin.close()
    agent.wait(10)


def _seed_aps(db: Path, due: datetime, *, n: int, grace: float) -> None:
    seed.seed_aps(db, n, due, grace=grace, func=APS_FUNC)


def _merge(parts: list[dict[str, Any]], n: int, due: float) -> dict[str, Any]:
    """One row for several replicas of one burst: their fires added up, fires/s from the
    due instant to the last fire any of them recorded, lags over all their dispatches,
    CPU added up, the largest RSS."""
    lags = [lag for p in parts for lag in p["extra"].pop("lags")]
    fires = sum(p["fires"] for p in parts)
    last = max((p["extra"]["last_done"] for p in parts if p["extra"]["last_done"]), default=None)
    seconds = None if last is None else last - due
    cpu = sum(p["cpu_s"] or 0.0 for p in parts)
    notes = [f"replica {i}: {note}" for i, p in enumerate(parts, 1) for note in p["notes"]]
    return {
        "system": parts[0]["system"],
        "scenario": parts[0]["scenario"],
        "n": n,
        "fires": fires,
        "dropped": 0,
        "seconds": seconds,
        "rate": fires / seconds if seconds else None,
        "lag_p50": percentile(lags, 50),
        "lag_p99": percentile(lags, 99),
        "lag_max": max(lags) if lags else None,
        "peak_rss_mb": max(p["peak_rss_mb"] for p in parts),
        "cpu_s": cpu,
        "notes": notes,
        "extra": {
            "fires_per_replica": [p["fires"] for p in parts],
            "started": sum(p["extra"]["started"] for p in parts),
            "cpu_us_per_fire": round(1e6 * cpu / fires, 1) if fires else None,
            "event_loop": parts[0]["extra"].get("event_loop"),
        },
    }


def _line(result: dict[str, Any]) -> str:
    parts = [f"{result['system']}"]
    if result.get("rate"):
        parts.append(f"{result['rate']:,.0f} fires/s")
    if result.get("lag_p99") is not None:
        parts.append(f"lag p99 {result['lag_p99']:.3f} s")
    if result.get("cpu_s") is not None:
        parts.append(f"cpu {result['cpu_s']:.3f} s")
    if "first_fire_s" in result["extra"]:
        parts.append(f"first fire {result['extra']['first_fire_s']:.2f} s")
    parts.append(f"rss {result['peak_rss_mb']:.0f} MB")
    if result["dropped"]:
        parts.append(f"dropped {result['dropped']}")
    if "vs_sqlite" in result["extra"]:
        parts.append(f"{result['extra']['vs_sqlite']:.2f}x SQLite's")
    if "fires_per_replica" in result["extra"]:
        parts.append(
            "fires per replica " + "/".join(map(str, result["extra"]["fires_per_replica"]))
        )
    parts += result["notes"]
    return ", ".join(parts)


def machine(load_at_start: tuple[float, float, float] | None = None) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import sqlite3

    versions = {}
    for package in (
        "aiohttp",
        "httpx",
        "httpx-aiohttp",
        "aiosqlite",
        "asyncpg",
        "APScheduler",
        "SQLAlchemy",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "packages": versions,
        "load_average_at_start": load_at_start or os.getloadavg(),
        "load_average_at_end": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Scenarios: " + ", ".join(SCENARIOS),
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    size.add_argument("--full", action="store_true", help="add 100,000-schedule bursts")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="run only these")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="also write the results as JSON to PATH (by default, none is written)",
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--systems",
        nargs="+",
        choices=SYSTEMS,
        help="measure only these in the bursts (default: all; tickler includes PostgreSQL)",
    )
    parser.add_argument(
        "--schedules",
        nargs="+",
        type=int,
        metavar="N",
        help="burst sizes instead of the mode's (e.g. --schedules 200 for a smoke run)",
    )
    parser.add_argument(
        "--agent-delay",
        nargs=2,
        type=float,
        default=(1.0, 3.0),
        metavar=("LO", "HI"),
        help="the slow agent's answer delay, uniform in [LO, HI] seconds (default 1 3)",
    )
    parser.add_argument(
        "--slow-concurrency",
        type=int,
        default=1024,
        help="max_concurrency (and APScheduler's POSTs in flight) with the slow agent",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--postgres-url",
        metavar="URL",
        help="run the PostgreSQL rows on this database (emptied before each run) instead "
        "of a throwaway server started from PostgreSQL's binaries",
    )
    where.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL rows")
    args = parser.parse_args(argv)
    plan = PLANS["quick" if args.quick else "full" if args.full else "default"]
    if args.schedules:
        first = args.schedules[0]
        plan = dataclasses.replace(
            plan,
            bursts=tuple(args.schedules),
            slow_fires=first,
            fairness_fires=first,
            million=first,
        )
    chosen = args.only or [s for s in SCENARIOS if args.full or s not in FULL_ONLY]
    systems = tuple(args.systems or SYSTEMS)
    out: Path | None = args.json
    workdir = Path(tempfile.mkdtemp(prefix="tickler-bench-"))
    started = time.monotonic()
    load_at_start = os.getloadavg()
    server: pg.PgServer | None = None
    postgres_note: str | None = None
    agent, url = start_agent()
    port = urllib.parse.urlsplit(url).port
    harness: Harness | None = None
    try:
        if args.no_postgres:
            postgres_note = "skipped (--no-postgres)"
        elif "tickler" in systems and {"burst", "claim-only"} & set(chosen):
            found = pg.start(args.postgres_url, workdir)
            if isinstance(found, str):
                postgres_note = f"skipped: {found}"
                print(f"PostgreSQL rows {postgres_note}")
            else:
                server = found
        harness = Harness(
            plan,
            args.concurrency,
            workdir,
            url=url,
            systems=systems,
            postgres=server,
            agent_delay=tuple(args.agent_delay),
            slow_concurrency=args.slow_concurrency,
        )
        print(
            f"mode {plan.mode}, concurrency {args.concurrency}, agent stub on port {port}, "
            f"load average {load_at_start[0]:.2f}"
        )
        if server is not None:
            info = ", ".join(f"{k} {v}" for k, v in server.info.items())
            started_here = "started by the bench" if server.cluster else "given"
            print(f"PostgreSQL ({started_here}): {info}")
        if {"limit", "aps"} & set(systems) and set(chosen) - {"million"}:
            harness.probe()  # their HTTP client: the fastest it finds
        for scenario in chosen:
            if scenario in ("burst", "claim-only"):
                for n in plan.bursts:
                    harness.burst(n, dispatch=scenario == "burst")
            else:
                getattr(harness, scenario.replace("-", "_"))()
    finally:
        if harness is not None:
            harness.close()
        stop_agent(agent)
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    assert harness is not None
    checks: list[Check] = targets(harness.results, plan.bursts, harness.agent_delay)
    report = {
        "mode": plan.mode,
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(elapsed, 1),
        "machine": machine(load_at_start),
        "postgres": server.info if server is not None else postgres_note,
        "concurrency": args.concurrency,
        "client": harness.client,
        "event_loop": next(
            (r["extra"]["event_loop"] for r in harness.results if "event_loop" in r["extra"]),
            "asyncio",
        ),
        "results": harness.results,
        "targets": [c.as_dict() for c in checks],
    }
    print()
    print(render(report))
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nJSON written to {out}")
    print(f"\n{elapsed:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
