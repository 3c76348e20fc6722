"""Fairness across chats (issue 21): chat A has 10,000 fires due at one instant, chat B
one fire due at the same instant. How late does B's fire go out, and in which dispatch
round (the engine's claim that took it; each claim takes at most `claim_batch` fires)?

    python -m bench.fairness [--n 10000] [--concurrency 64] [--url AGENT_URL] [--unfair]
    python -m bench --only fairness

The engine runs as in production (`run_forever` on the system clock over a SQLite
file); the dispatcher posts to `--url` when given, else returns at once (claim-only).
B's schedule is seeded last, so in plain due order (`--unfair`: the claim's fair query
replaced by the plain one, what the engine did before) it comes after all of A's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import SystemClock
from adapters.ids import install_system_ids
from bench import seed
from scheduler.dispatching import DispatchRequest, DispatchResult
from scheduler.engine import Engine, EngineConfig
from scheduler.engine_store import ClaimedFires, EngineStore
from storage import schedules
from storage.codec import SCHEDULE_COLUMNS
from storage.sqlite_store import SqliteStore

__all__ = ["measure"]

CHAT_B = 2
_ACCEPTED = DispatchResult(status_code=200)


class _Rounds:
    """The engine store, counting claims (dispatch rounds)."""

    def __init__(self, inner: EngineStore) -> None:
        self._inner = inner
        self.rounds = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def claim(self, *args: Any, **kwargs: Any) -> ClaimedFires:
        self.rounds += 1
        return await self._inner.claim(*args, **kwargs)


class _Recorder:
    limits_own_time = True

    def __init__(self, rounds: _Rounds, inner: HttpAgentDispatcher | None, n: int) -> None:
        self._rounds = rounds
        self._inner = inner
        self._n = n
        self.seen = 0
        self.b_at: float | None = None
        self.b_round: int | None = None
        self.b_position: int | None = None
        self.last_a_at: float | None = None
        self.done = asyncio.Event()

    async def dispatch(self, request: DispatchRequest, *, timeout: float) -> DispatchResult:
        now = time.time()
        self.seen += 1
        if request.chat_id == CHAT_B:
            self.b_at, self.b_round, self.b_position = now, self._rounds.rounds, self.seen
        else:
            self.last_a_at = now
        if self.seen >= self._n + 1:
            self.done.set()
        if self._inner is None:
            return _ACCEPTED
        return await self._inner.dispatch(request, timeout=timeout)


def _seed(db: Path, n: int, due: datetime) -> None:
    seed.seed_tickler(db, n, due)
    columns = [c.strip() for c in SCHEDULE_COLUMNS.split(",")]
    [row] = seed.tickler_rows(1, due)
    values = dict(zip(columns, row, strict=True))
    values.update(id="zzzz-chat-b", chat_id=CHAT_B, name="chat B", number=1)
    with sqlite3.connect(db) as raw:
        raw.execute(
            f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES ({','.join('?' * len(columns))})",
            [values[c] for c in columns],
        )


def measure(
    db: Path, n: int, *, concurrency: int = 64, url: str | None = None, fair: bool = True
) -> dict[str, Any]:
    """Seed `db` and run the engine until all n + 1 fires went out; the figures."""
    # Whole seconds, as cron and interval fires are; a moment to seed and open the store.
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    _seed(db, n, due)
    return asyncio.run(_run(db, n, due, concurrency=concurrency, url=url, fair=fair))


async def _run(
    db: Path, n: int, due: datetime, *, concurrency: int, url: str | None, fair: bool
) -> dict[str, Any]:
    saved = schedules.FAIR_DUE_SQL
    if not fair:
        schedules.FAIR_DUE_SQL = schedules.DUE_SQL
    store = await SqliteStore.open(db)
    rounds = _Rounds(store.engine)
    agent = HttpAgentDispatcher(url=url, max_connections=concurrency) if url else None
    recorder = _Recorder(rounds, agent, n)
    config = EngineConfig(max_concurrency=concurrency)
    engine = Engine(rounds, SystemClock(), recorder, config=config)
    try:
        loop = asyncio.create_task(engine.run_forever())
        await asyncio.wait_for(recorder.done.wait(), 600)
        engine.request_stop()
        await loop
    finally:
        schedules.FAIR_DUE_SQL = saved
        if agent is not None:
            await agent.aclose()
        await store.close()
    assert recorder.b_at is not None and recorder.last_a_at is not None
    start = due.timestamp()
    return {
        "fair": fair,
        "n": n,
        "claim_batch": config.claim_batch,
        "concurrency": concurrency,
        "dispatched": recorder.seen,
        "b_lag_s": round(recorder.b_at - start, 4),
        "b_round": recorder.b_round,
        "b_position": recorder.b_position,
        "rounds": rounds.rounds,
        "a_all_out_s": round(recorder.last_a_at - start, 3),
    }


def line(result: dict[str, Any]) -> str:
    kind = "fair claims" if result["fair"] else "plain due order"
    return (
        f"{kind}: chat B's fire went out {result['b_lag_s'] * 1000:,.1f} ms after its instant, "
        f"in dispatch round {result['b_round']} of {result['rounds']} "
        f"(number {result['b_position']:,} of {result['dispatched']:,} fires); all of chat A's "
        f"{result['n']:,} out after {result['a_all_out_s']:.2f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness", description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--url", help="the agent to post to (default: none, claim-only)")
    parser.add_argument("--unfair", action="store_true", help="also run in plain due order")
    parser.add_argument("--plain-only", action="store_true", help="only in plain due order")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    install_system_ids()
    results = []
    modes = (False,) if args.plain_only else (True, False) if args.unfair else (True,)
    for fair in modes:
        with tempfile.TemporaryDirectory() as folder:
            result = measure(
                Path(folder) / "fairness.db",
                args.n,
                concurrency=args.concurrency,
                url=args.url,
                fair=fair,
            )
        print(line(result))
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
