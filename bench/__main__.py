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
              fire (and in a burst its dispatcher) with no engine, the ceiling for it.
  idle        100,000 schedules, none due for an hour: CPU and RSS over 60 s.
  startup     100,000 schedules and 1,000 missed fires: process start to first fire.
  steady      10,000 schedules on `*/1 * * * *` for 3 minutes: every fire once, lag.

--quick shrinks every scenario (1,000-schedule bursts, 5 s idle, ...) to finish in under
a minute on 2 cores; its numbers are labelled as such. --full adds 100,000 bursts.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import seed
from bench.report import Check, render, targets

SCENARIOS = ("burst", "claim-only", "idle", "startup", "steady")
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


PLANS = {
    "quick": Plan("quick", (1_000,), 10_000, 4.0, 10_000, 100, 1_000, 0, 5.0),
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
    results: list[dict[str, Any]] = field(default_factory=list)
    log: Callable[[str], None] = print

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

    def agent(self, path: str) -> dict[str, int]:
        method = "POST" if path == "reset" else "GET"
        base = self.url.rsplit("/", 1)[0]
        request = urllib.request.Request(f"{base}/{path}", method=method)
        with urllib.request.urlopen(request, timeout=10) as answer:
            data: dict[str, int] = json.loads(answer.read())
            return data

    def fresh(self, name: str) -> Path:
        path = self.workdir / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return path

    def with_agent_check(self, spec: dict[str, Any], expected: int) -> dict[str, Any]:
        """Run a child that posts to the agent; add what the agent saw."""
        self.agent("reset")
        result = self.child(spec)
        seen = self.agent("stats")
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

    def idle(self) -> None:
        n, seconds = self.plan.idle_schedules, self.plan.idle_seconds
        later = datetime.now(UTC) + timedelta(hours=1)
        db = self.fresh("tickler-idle")
        seed.seed_tickler(db, n, later)
        spec = {"kind": "tickler", "scenario": "idle", "db": str(db), "n": n, "seconds": seconds}
        self.log(f"  idle tickler: {_line(self.child(spec))}")
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


APS_FUNC = "bench.aps_side:fire"


def _seed_aps(db: Path, due: datetime, *, n: int, grace: float) -> None:
    seed.seed_aps(db, n, due, grace=grace, func=APS_FUNC)


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
    parts += result["notes"]
    return ", ".join(parts)


def machine() -> dict[str, Any]:
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
    for package in ("aiohttp", "httpx", "httpx-aiohttp", "aiosqlite", "APScheduler", "SQLAlchemy"):
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
        "load_average_at_start": os.getloadavg(),
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
    args = parser.parse_args(argv)
    plan = PLANS["quick" if args.quick else "full" if args.full else "default"]
    chosen = args.only or list(SCENARIOS)
    out: Path | None = args.json
    workdir = Path(tempfile.mkdtemp(prefix="tickler-bench-"))
    started = time.monotonic()
    agent = subprocess.Popen(
        [sys.executable, "-m", "bench.agent"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert agent.stdout is not None
        port = int(agent.stdout.readline())
        harness = Harness(plan, args.concurrency, workdir, url=f"http://127.0.0.1:{port}/webhook")
        print(f"mode {plan.mode}, concurrency {args.concurrency}, agent stub on port {port}")
        harness.probe()
        for scenario in chosen:
            if scenario in ("burst", "claim-only"):
                for n in plan.bursts:
                    harness.burst(n, dispatch=scenario == "burst")
            else:
                getattr(harness, scenario)()
    finally:
        if agent.stdin is not None:
            agent.stdin.close()
        agent.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    checks: list[Check] = targets(harness.results, plan.bursts)
    report = {
        "mode": plan.mode,
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(elapsed, 1),
        "machine": machine(),
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
