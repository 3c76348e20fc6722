"""One measurement in a fresh process, so its RSS and CPU figures are its own.

    python -m bench.child '{"kind": "tickler", "scenario": "burst", ...}'

The harness (bench/__main__.py) builds the spec; the last line printed is the result
as JSON (bench.measure.Result). With `"handshake": true` in the spec, the child imports
its side, prints `ready` and reads the due instant (epoch seconds) from its standard
input before it opens the database: the caller seeds the fires due relative to that
moment, so a slow start (a loaded machine) cannot eat into the lead before the instant.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.measure import Result, cpu_seconds, emit
from bot.boot import install_core_sources


async def _run(spec: dict[str, Any]) -> Result:
    kind, scenario = spec["kind"], spec["scenario"]
    db = Path(spec.get("db", ""))
    url: str | None = spec.get("url")
    target = url or ""  # scenarios that always post get the agent's URL
    n, due, concurrency = spec.get("n", 0), spec.get("due", 0.0), spec.get("concurrency", 64)
    _import_side(kind)
    late = max(0.0, time.time() - due) if due else 0.0
    # CPU of the whole process (every thread: the loop and the database's), from here to
    # the end. Unlike fires/s it barely moves when other jobs share the cores, so it
    # compares systems (and versions of one) more steadily on a busy machine.
    cpu_before = cpu_seconds()
    result: Result
    if kind == "probe":
        from bench.clients import CLIENT_KINDS, probe

        result = Result("clients", "probe", n)
        for client in CLIENT_KINDS:
            result.extra[client] = await probe(target, client, n, concurrency)
        result.extra["tickler dispatcher"] = await _probe_dispatcher(target, n, concurrency)
        return result
    if kind == "tickler":
        from bench import tickler_side

        if scenario == "idle":
            return await tickler_side.idle(db, n, spec["seconds"])
        if scenario == "startup":
            return await tickler_side.startup(
                db, target, n, spec["missed"], spec["process_start"], concurrency
            )
        if scenario == "steady":
            result = await tickler_side.steady(
                db, target, n, spec["expected"], due, concurrency, spec["timeout"]
            )
        else:
            # A PostgreSQL URL instead of the file (a Path would fold its `//`).
            where = spec.get("postgres") or db
            result = await tickler_side.burst(
                where, url, n, due, concurrency, spec["timeout"], replica=spec.get("replica", False)
            )
    elif kind == "aps":
        from bench import aps_side

        if scenario == "idle":
            return await aps_side.idle(db, n, spec["seconds"])
        result = await aps_side.burst(
            db,
            url,
            spec["client"],
            n,
            due,
            concurrency,
            spec["grace"],
            spec["timeout"],
            limit=spec.get("limit"),
            watch=spec.get("watch"),
        )
    elif kind == "limit":
        from bench import limit_side

        result = await limit_side.burst(db, url, spec["client"], n, due, concurrency)
    elif kind == "floor":
        from bench import ledger_floor

        if url:
            result = await ledger_floor.burst_posting(db, url, n, due, concurrency)
        else:
            # Synchronous on purpose, as the engine runs its transactions in place.
            result = ledger_floor.claim_only(db, n, due, concurrency)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    if late > 0:
        result.notes.append(f"the process was ready {late:.2f} s after the due instant")
    if scenario == "slow-agent":
        result.scenario = scenario
    if scenario in ("burst", "claim-only", "slow-agent") and result.fires:
        used = cpu_seconds() - cpu_before
        result.cpu_s = used
        result.extra["cpu_us_per_fire"] = round(1e6 * used / result.fires, 1)
    return result


def _import_side(kind: str) -> None:
    # Import what the measured side needs first: a process that is not ready by the due
    # instant would count its own start-up as fire lag, and the result says so.
    if kind == "tickler":
        import bench.tickler_side
    elif kind == "aps":
        import bench.aps_side
    elif kind == "limit":
        import bench.limit_side
    elif kind == "floor":
        import bench.ledger_floor  # noqa: F401


async def _probe_dispatcher(url: str, n: int, concurrency: int) -> float:
    """POSTs per second through Tickler's own dispatcher, as the engine calls it."""
    from datetime import UTC, datetime

    from adapters.agent_dispatch import HttpAgentDispatcher
    from scheduler.dispatching import DispatchRequest, Operator

    async with HttpAgentDispatcher(url=url, max_connections=concurrency) as dispatcher:
        due = datetime(2026, 11, 24, 7, tzinfo=UTC)
        numbers = iter(range(n))

        async def worker() -> None:
            for i in numbers:
                await dispatcher.dispatch(
                    DispatchRequest(
                        schedule_id=f"probe{i}",
                        run_id=f"run{i}",
                        scheduled_for=due,
                        chat_id=1,
                        operator=Operator(id=1, first_name="Ada"),
                        schedule_name="probe",
                        prompt="Prepare the brief.",
                        timezone="UTC",
                    ),
                    timeout=30,
                )

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - started)


def main() -> None:
    spec = json.loads(sys.argv[1])
    install_core_sources()
    # Every system on the loop Tickler ships with (uvloop where installed), so the
    # ratios compare schedulers, not event loops.
    from bot.event_loop import install

    loop = install()
    if spec.get("handshake"):
        _import_side(spec["kind"])
        print("ready", flush=True)
        spec["due"] = float(sys.stdin.readline())
    result = asyncio.run(_run(spec))
    if spec["kind"] != "probe":  # the probe's extras are its clients' rates
        result.extra["event_loop"] = loop
    emit(result)


if __name__ == "__main__":
    main()
