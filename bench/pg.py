"""The PostgreSQL side of the harness: the server, and what the ledger says after a run.

The bench's PostgreSQL rows run Tickler's engine on `storage.postgres` (one replica, or
several processes on one database sharing the work). The server is the one given with
`--postgres-url`, or a throwaway one started here with tests/postgres.py's `Cluster`
(PostgreSQL's own binaries on a fresh data folder, on 127.0.0.1). Either way the
database is emptied before each run: give the bench a database of its own.

A throwaway cluster starts with durability off (tests/postgres.py); the bench turns
`fsync` and `full_page_writes` back on and leaves `synchronous_commit` off, which is
what SQLite in WAL mode with `synchronous = NORMAL` (storage/database.py) does: a
commit does not wait for the disk, a crash of the machine may lose the last commits but
never corrupts the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests import postgres as clusters

__all__ = ["Ledger", "PgServer", "ledger", "start", "succeeded"]

#: The bench's database in a cluster it started.
DATABASE = "tickler_bench"
#: SQLite's durability class (see the module's docstring), set on a cluster we start.
_SETTINGS = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "off"}


@dataclass
class PgServer:
    """Where the PostgreSQL rows run, and the cluster when the bench started it."""

    url: str
    cluster: clusters.Cluster | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()

    def cpu_seconds(self) -> float | None:
        """CPU the server's processes used so far (the postmaster, its live children,
        and the children it has reaped: every connection's backend), or None when the
        server is not ours to see."""
        if self.cluster is None:
            return None
        try:
            pid = int((self.cluster.data_dir / "postmaster.pid").read_text().split()[0])
            postmaster = psutil.Process(pid)
            own = postmaster.cpu_times()
            total = own.user + own.system + own.children_user + own.children_system
            for child in postmaster.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = child.cpu_times()
                    total += times.user + times.system
            return total
        except (OSError, ValueError, IndexError, psutil.Error):
            return None


def start(url: str | None, workdir: Path) -> PgServer | str:
    """The server for the PostgreSQL rows: `url` as given, or a cluster started here;
    a sentence saying why not when PostgreSQL cannot be started."""
    if url:
        server = PgServer(url)
    else:
        reason = clusters.available()
        if reason is not None:
            return reason
        try:
            cluster = clusters.Cluster.start(Path(tempfile.mkdtemp(dir=workdir)))
        except clusters.ClusterError as exc:
            return f"PostgreSQL did not start: {str(exc).splitlines()[0]}"
        server = PgServer("", cluster)
        try:
            for name, value in _SETTINGS.items():  # one at a time: not in a transaction
                cluster.psql(f"ALTER SYSTEM SET {name} = {value}")
            cluster.psql("SELECT pg_reload_conf()")
            server.url = cluster.create_database(DATABASE)
        except BaseException:
            cluster.stop()
            raise
    server.info = asyncio.run(_info(server.url))
    return server


async def _info(url: str) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        info: dict[str, Any] = {"version": await conn.fetchval("SHOW server_version")}
        for name in (*_SETTINGS, "shared_buffers", "max_connections"):
            info[name] = await conn.fetchval(f"SHOW {name}")
        return info
    finally:
        await conn.close()


@dataclass(frozen=True)
class Ledger:
    """What the runs table says about a burst of `n` fires, each due once."""

    runs: int
    succeeded: int
    #: Distinct (schedule, instant) among the succeeded runs.
    distinct: int
    attempts: int
    #: Attempt rows per engine instance, in instance order.
    per_owner: tuple[int, ...]

    def dropped(self, n: int) -> int:
        return n - self.distinct

    def doubled(self) -> int:
        """Fires started more than once: attempt rows beyond one per fire, or more runs
        than distinct fires."""
        return max(self.attempts - self.distinct, self.runs - self.distinct, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "succeeded": self.succeeded,
            "distinct_fires": self.distinct,
            "attempt_rows": self.attempts,
            "attempts_per_engine": list(self.per_owner),
        }


def ledger(url: str) -> Ledger:
    return asyncio.run(_ledger(url))


async def _ledger(url: str) -> Ledger:
    import asyncpg

    from storage.runs import ALL_ATTEMPTS

    conn = await asyncpg.connect(url, timeout=10)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM runs), "
            "(SELECT count(*) FROM runs WHERE status = 'succeeded'), "
            "(SELECT count(DISTINCT (schedule_id, scheduled_for)) FROM runs "
            " WHERE status = 'succeeded'), "
            f"(SELECT count(*) FROM {ALL_ATTEMPTS} AS a)"
        )
        owners = await conn.fetch(
            f"SELECT owner, count(*) FROM {ALL_ATTEMPTS} AS a GROUP BY owner ORDER BY owner"
        )
    finally:
        await conn.close()
    assert row is not None
    return Ledger(row[0], row[1], row[2], row[3], tuple(r[1] for r in owners))


async def succeeded(url: str, n: int, timeout: float, alive: Callable[[], bool]) -> bool:
    """Wait until `n` runs have succeeded in `url`'s ledger (True), `timeout` seconds
    pass or `alive()` turns false (a replica exited): False. Polls every 20 ms on one
    connection of its own, outside the measured processes."""
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        query = "SELECT count(*) FROM runs WHERE status = 'succeeded'"
        while loop.time() < deadline and alive():
            if await conn.fetchval(query) >= n:
                return True
            await asyncio.sleep(0.02)
        return bool(await conn.fetchval(query) >= n)
    finally:
        await conn.close()
