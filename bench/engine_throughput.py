"""How many due fires per second does the engine turn into recorded, dispatched runs?

    python bench/engine_throughput.py [--schedules 5000] [--concurrency 64]

Seeds a fresh SQLite file with N schedules all due at the same instant, starts a
minimal agent on 127.0.0.1 in a child process, and times `Engine.run_until_idle()`
(claim in batches, acquire, dispatch over HTTP, record each outcome) with one engine
and with two engines sharing the file. For scale it also times the dispatcher alone
posting N updates at the same concurrency, so the ratio shows what the durable
ledger costs on top of the HTTP work. Numbers are from this one run; no pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bench.dispatch_transport import serve
from bot.boot import install_core_sources
from scheduler.dispatching import DispatchRequest, Operator
from scheduler.engine import Engine, EngineConfig
from scheduler.models import Action, Owner
from scheduler.service import Limits, ScheduleService, TriggerSpec
from storage.sqlite_store import SqliteStore

DUE = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)


async def seed(path: Path, n: int) -> None:
    async with await SqliteStore.open(path) as store:
        service = ScheduleService(
            store, FakeClock(DUE - timedelta(hours=1)), limits=Limits(max_schedules_per_chat=n)
        )
        for i in range(n):
            await service.create_schedule(
                1,
                Owner(id=1),
                name=f"s{i}",
                trigger=TriggerSpec(kind="cron", cron="0 7 * * *", timezone="UTC"),
                action=Action(text="Brief for {date}."),
            )


async def run_engines(path: Path, url: str, engines: int, concurrency: int) -> float:
    clock = FakeClock(DUE)
    stores = [await SqliteStore.open(path) for _ in range(engines)]
    dispatchers = [HttpAgentDispatcher(url=url, max_connections=concurrency) for _ in stores]
    workers = [
        Engine(s.engine, clock, d, config=EngineConfig(max_concurrency=concurrency))
        for s, d in zip(stores, dispatchers, strict=True)
    ]
    started = time.perf_counter()
    await asyncio.gather(*(w.run_until_idle() for w in workers))
    await asyncio.gather(*(w.run_until_idle() for w in workers))
    elapsed = time.perf_counter() - started
    for w in workers:
        await w.shutdown()
    for d in dispatchers:
        await d.aclose()
    for s in stores:
        await s.close()
    return elapsed


async def dispatch_only(url: str, n: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)
    async with HttpAgentDispatcher(url=url, max_connections=concurrency) as d:

        async def one(i: int) -> None:
            async with gate:
                await d.dispatch(
                    DispatchRequest(
                        schedule_id=f"s{i}",
                        run_id=f"r{i}",
                        scheduled_for=DUE,
                        chat_id=1,
                        operator=Operator(id=1),
                        schedule_name="s",
                        prompt="Brief.",
                        timezone="UTC",
                    ),
                    timeout=30,
                )

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    install_core_sources()
    n = args.schedules

    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(child,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{parent.recv()}/webhook"
    workdir = Path(tempfile.mkdtemp(prefix="tickler-bench-"))
    try:
        template = workdir / "seed.db"
        asyncio.run(seed(template, n))
        rows = [("dispatcher alone", asyncio.run(dispatch_only(url, n, args.concurrency)))]
        for engines in (1, 2):
            db = workdir / f"run{engines}.db"
            shutil.copyfile(template, db)
            label = f"engine x{engines}"
            rows.append((label, asyncio.run(run_engines(db, url, engines, args.concurrency))))
    finally:
        parent.send("stop")
        server.join(5)
        shutil.rmtree(workdir, ignore_errors=True)

    base = n / rows[0][1]
    print(f"{n} schedules due at one instant, concurrency {args.concurrency}, loopback agent")
    print(f"{'':18}{'fires/s':>10}{'vs dispatcher alone':>22}")
    for label, seconds in rows:
        rate = n / seconds
        print(f"{label:18}{rate:>10,.0f}{rate / base:>21.2f}x")


if __name__ == "__main__":
    main()
