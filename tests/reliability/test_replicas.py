"""Several replicas on one PostgreSQL database: three engines (`tickler engine`, each a
process of its own, `DATABASE_URL` pointing at the same database, one accelerated clock)
share 240 schedules while a replica picked at random is killed with SIGKILL and started
again, 36 times (and one restart in six is killed again during its start-up), always
leaving at least one replica up. Afterwards every fire instant has exactly one run,
every run is finished, and the agent got every fire, each under one idempotency key and
one run id, and again only as an attempt of that run that the ledger records.

The replicas run on a 120x clock (a real second is two fake minutes) against the agent
stub. Some schedules answer slowly, so kills land mid-dispatch and leave runs `running`
under a dead owner; a live replica reaps them and they go out again with the same key.
Two replicas share this host, where an engine asks the process table whether another
is alive; the third runs under a host name of its own (a UTS namespace, as a container
has, where the machine allows it), so it and the others tell a death by the silence of
the heartbeats. Some schedules fail their first delivery, so retries are rows that any
replica may acquire. No policy drops a fire: overlapping fires queue (or run side by
side) and late ones are all caught up, so every fire instant must reach the agent, and
one that did not is lost. A run cut off five times is left `unknown` for the operator
(it was delivered, and is counted apart).

The figures (kills, fires expected, delivered, redelivered with the same key, lost,
doubled with different keys) are printed and go into the reliability figures;
docs/reliability.md quotes runs ("Several replicas on PostgreSQL").
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from adapters.clocks import AcceleratedClock
from bot.demo_kit.agent_stub import AgentStub
from scheduler.models import (
    INTERRUPTED,
    Action,
    MissedRunPolicy,
    OverlapPolicy,
    Owner,
    Policies,
    RetryPolicy,
    RunStatus,
    Schedule,
)
from scheduler.service import Limits, ScheduleService, TriggerSpec
from storage.locations import open_store
from tests.reliability.figures import tally
from tests.reliability.ledger import (
    Accounting,
    RunRow,
    account,
    expected_instants,
    query,
    read_schedules,
    still_open,
)
from tests.reliability.process import FinalStop, Launcher, TicklerProcess, fast_clock
from tests.reliability.scripted_agent import (
    Delivery,
    Rule,
    ScriptedAgent,
    answer_after,
    fail_first,
)

REPLICAS = 3
#: Fake seconds per real second.
SPEED = 120
#: SIGKILLs, each of one replica picked at random; TICKLER_REPLICA_KILLS makes a soak.
KILLS = int(os.environ.get("TICKLER_REPLICA_KILLS", "36"))
CHATS = (7301, 7302, 7303, 7304, 7305, 7306)

#: Every fire must reach the agent: overlapping fires wait, missed ones are caught up,
#: a run cut off by a kill is retried (an interruption spends no attempt).
QUEUE = Policies(
    overlap=OverlapPolicy.QUEUE,
    missed_run=MissedRunPolicy.CATCH_UP_ALL,
    catch_up_cap=1000,
    retry=RetryPolicy(max_attempts=6),
)
ALLOW = QUEUE.model_copy(update={"overlap": OverlapPolicy.ALLOW})


@dataclass(frozen=True)
class Group:
    name: str
    count: int
    #: A cron expression, or None: an interval of a random length.
    cron: str | None
    rule: Rule
    policies: Policies = QUEUE


# About 27 fires per fake minute in all, 55 per real second: three engines on two busy
# cores keep ahead of them.
GROUPS = (
    Group("every 5 min", 40, "*/5 * * * *", answer_after(0.0, 0.03)),
    Group("every 10 min", 60, "*/10 * * * *", answer_after(0.0, 0.03)),
    # Answers that take a while: a kill finds them in flight.
    Group("slow, queued", 20, "*/5 * * * *", answer_after(0.3, 1.2)),
    Group("slow, side by side", 10, "*/3 * * * *", answer_after(0.5, 2.0), ALLOW),
    # Retries are rows, acquired by whichever replica comes first.
    Group("fails once, then succeeds", 30, None, fail_first(1)),
    Group("intervals", 80, None, answer_after(0.0, 0.05)),
)


async def seed(url: str, clock: AcceleratedClock, agent: ScriptedAgent) -> dict[str, str]:
    """The schedules, made through the service on the shared database while the
    replicas run, as an operator would (they notice each within their longest sleep);
    schedule id -> group name."""
    rng = random.Random(20261206)
    group_of: dict[str, str] = {}
    async with await open_store(url) as store:
        service = ScheduleService(store, clock, limits=Limits(max_schedules_per_chat=1000))
        n = 0
        for group in GROUPS:
            for i in range(group.count):
                chat = CHATS[n % len(CHATS)]
                n += 1
                trigger = (
                    TriggerSpec(kind="cron", cron=group.cron, timezone="UTC")
                    if group.cron
                    else TriggerSpec(
                        kind="interval", every_seconds=60 * rng.choice([7, 11, 13, 20, 30, 45])
                    )
                )
                schedule = await service.create_schedule(
                    chat,
                    Owner(id=chat, first_name="Ada"),
                    name=f"{group.name} #{i + 1}",
                    trigger=trigger,
                    action=Action(text="Replica test fire for {date}."),
                    policies=group.policies,
                )
                agent.assign(schedule.id, group.rule)
                group_of[schedule.id] = group.name
    return group_of


#: Sets the host name, then runs the rest of the command line in its place (same pid).
_AS_HOST = (
    "import os, socket, sys; socket.sethostname(sys.argv[1]); os.execv(sys.argv[2], sys.argv[2:])"
)


def on_another_host(name: str) -> tuple[str, ...] | None:
    """A command prefix that runs a process under the host name `name`, in a UTS
    namespace of its own (as a container has one), so that the other replicas judge it
    by its heartbeats and not by this host's process table; None where this machine
    does not allow it (`unshare` missing, or no privilege for namespaces)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    own = ["--uts"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--uts"]
    prefix = (unshare, *own, sys.executable, "-c", _AS_HOST, name)
    try:
        probe = subprocess.run(
            [*prefix, sys.executable, "-c", "import socket; print(socket.gethostname())"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return prefix if probe.returncode == 0 and probe.stdout.strip() == name else None


@dataclass
class Replica:
    """One replica's process, and whether it is up (registered) or on its way."""

    process: TicklerProcess
    name: str
    up: bool = False
    #: Starting again after a kill: down for a moment, then start-up.
    restarting: asyncio.Task[None] | None = None
    kills: int = 0
    #: Kills that hit it while it was starting (not yet registered, or reconciling).
    startup_kills: int = 0
    #: The pids it had when killed.
    killed_pids: list[int] = field(default_factory=list)

    async def start(self) -> None:
        await self.process.start()
        await self.process.wait_engine(timeout=60)
        self.up = True

    async def kill(self) -> None:
        self.killed_pids.append(self.process.pid)
        assert await self.process.kill() == -9
        self.up = False
        self.kills += 1

    async def restart_after(self, down: float, cut_short: float | None) -> None:
        """Down for `down` seconds (the others go on firing), then start again; with
        `cut_short`, killed again that many seconds into the start, then started."""
        await asyncio.sleep(down)
        if cut_short is not None:
            await self.process.start()
            await asyncio.sleep(cut_short)
            await self.kill()
            self.startup_kills += 1
        await self.start()

    @property
    def busy(self) -> bool:
        return self.restarting is not None and not self.restarting.done()


async def running_owned_by(url: str, pid: int) -> int:
    """Runs `running` under the process `pid` (what a kill now leaves in flight)."""
    rows = await query(
        url,
        "SELECT COUNT(*) FROM runs r JOIN engine_instances i ON r.owner = i.id "
        "WHERE r.status = 'running' AND i.pid = ?",
        (pid,),
    )
    return int(rows[0][0])


#: Real seconds the ledger may take to settle before its cut once the kills are over.
DRAIN_LIMIT = 120.0


async def drain(replicas: Sequence[Replica], url: str, cut: datetime) -> float:
    """Until every fire before `cut` is claimed and settled; the real seconds it took."""
    began = time.monotonic()
    while left := await still_open(url, cut):
        for r in replicas:
            assert r.process.running, f"{r.name} died by itself:\n{r.process.log_tail()}"
        assert time.monotonic() - began < DRAIN_LIMIT, (
            f"the ledger before {cut} did not settle in {DRAIN_LIMIT:g} s; {len(left)} open: "
            + "; ".join(left[:10])
        )
        await asyncio.sleep(0.2)
    return time.monotonic() - began


@dataclass
class Figures:
    """What the agent got, fire by fire, against the ledger."""

    fires_expected: int = 0
    delivered: int = 0
    redelivered_same_key: int = 0
    lost: list[str] = field(default_factory=list)
    #: One fire that reached the agent under two keys or as two runs, or a delivery
    #: whose key names no run of the ledger.
    doubled: list[str] = field(default_factory=list)
    #: The ledger's attempts and the agent's deliveries disagree.
    disagree: list[str] = field(default_factory=list)
    #: Two fires of one `overlap: queue` schedule at the agent at once.
    overlaps: list[str] = field(default_factory=list)
    interrupted_attempts: int = 0
    statuses: Counter[str] = field(default_factory=Counter)


def audit(
    acc: Accounting,
    schedules: Sequence[Schedule],
    deliveries: Sequence[Delivery],
    cut: datetime,
) -> Figures:
    """Fire by fire (each fire instant before `cut` of each schedule, from its trigger;
    `account` has checked that each has exactly one run): the agent got it, under its
    run's key and run id only, and as often as the run's attempts explain. And a
    schedule whose overlap policy queues never had two fires at the agent at once,
    whichever replicas sent them."""
    fig = Figures()
    queued = {s.id for s in schedules if s.policies.overlap is OverlapPolicy.QUEUE}
    fig.overlaps = overlapping(deliveries, queued)
    seen: dict[str, list[Delivery]] = {}
    for d in deliveries:
        seen.setdefault(d.key, []).append(d)
    by_key = {r.key: r for r in acc.runs}
    for key, got in seen.items():
        run = by_key.get(key)
        if run is None:
            fig.doubled.append(f"{key}: delivered {len(got)}x, no run has this key")
            continue
        ids = {d.run_id for d in got}
        if ids != {run.id}:
            fig.doubled.append(f"{key}: delivered as runs {sorted(ids)}, the ledger has {run.id}")
    by_instant = {(r.schedule_id, r.scheduled_for): r for r in acc.runs}
    for schedule in schedules:
        for instant in expected_instants(schedule, cut - timedelta(microseconds=1)):
            fig.fires_expected += 1
            run = by_instant.get((schedule.id, instant))
            if run is None:
                fig.lost.append(f"{schedule.id}:{instant.isoformat()}: no run")
                continue
            _audit_run(fig, run, seen.get(run.key, []))
    return fig


def _audit_run(fig: Figures, run: RunRow, got: Sequence[Delivery]) -> None:
    fig.statuses[run.status.value] += 1
    interrupted = sum((e or "").startswith(INTERRUPTED) for _, e, *_ in run.trail)
    fig.interrupted_attempts += interrupted
    if not got:
        fig.lost.append(f"{run.key} ({run.id}, {run.status.value}): never reached the agent")
        return
    fig.delivered += 1
    fig.redelivered_same_key += len(got) - 1
    if run.status not in (RunStatus.SUCCEEDED, RunStatus.UNKNOWN):
        fig.lost.append(f"{run.key} ({run.id}): {run.status.value} at the end")
    # Each outcome the ledger recorded is an answer the agent gave; each delivery is an
    # attempt of the ledger (recorded, or interrupted by a kill).
    answered = sum(d.answered for d in got)
    if not len(run.trail) - interrupted <= answered or len(got) > len(run.trail):
        fig.disagree.append(
            f"{run.key} ({run.id}): {len(got)} deliveries ({answered} answered) for "
            f"the attempts {[s.value for s, *_ in run.trail]}"
        )


def overlapping(deliveries: Sequence[Delivery], queued: Collection[str]) -> list[str]:
    """Answered deliveries of one queued schedule, for different fires, whose spans at
    the agent overlap (a delivery cut off by a kill has no known end: left out)."""
    spans: dict[str, list[Delivery]] = {}
    for d in deliveries:
        if d.schedule_id in queued and d.answered_at is not None:
            spans.setdefault(d.schedule_id, []).append(d)
    found: list[str] = []
    for got in spans.values():
        got.sort(key=lambda d: d.received_at)
        for before, after in itertools.pairwise(got):
            assert before.answered_at is not None
            if before.key != after.key and after.received_at < before.answered_at:
                found.append(f"{after.key} overlaps: it came while {before.key} was at the agent")
    return found


def reaped_alive(logs: Iterable[str], killed: Collection[int]) -> set[str]:
    """The engines whose runs another engine reaped although they had not been killed:
    presumed dead because silent past the heartbeat limit (90 fake seconds) while they
    lived. Read from the "run interrupted" lines (an engine lists itself among the owners
    when it also owns runs that nothing in it holds)."""
    found: set[str] = set()
    for text in logs:
        me = None
        for line in text.splitlines():
            if started := re.search(r" started .* instance=(\S+)", line):
                me = started[1]
            elif reaped := re.search(r"run interrupted: .* owners=(\S+)", line):
                found |= {
                    owner
                    for owner in reaped[1].split(",")
                    if owner != me and int(owner.split(":")[-2]) not in killed
                }
    return found


async def explain(
    url: str,
    problems: Sequence[str],
    runs: Sequence[RunRow],
    deliveries: Sequence[Delivery],
    replicas: Sequence[Replica],
) -> str:
    """What the ledger, the agent and the replicas' logs say of the first few fires in
    `problems` (each line begins with the fire's key), for a failure's message."""
    by_key = {r.key: r for r in runs}
    lines: list[str] = []
    for key in dict.fromkeys(p.split(" ")[0] for p in problems[:5]):
        lines.append(f"-- {key}")
        got = [d for d in deliveries if d.key == key]
        lines += [
            f"   delivery as run {d.run_id} at {d.received_at:.3f}, answered {d.answered} "
            f"({d.status}) at {d.answered_at}"
            for d in got
        ]
        ids = {d.run_id for d in got} | ({by_key[key].id} if key in by_key else set())
        for run_id in sorted(ids):
            rows = await query(
                url,
                "SELECT r.status, r.attempt, r.interruptions, r.owner, r.updated_at, a.seq, "
                "a.attempt, a.owner, a.started_at, a.finished_at, a.status, a.error "
                "FROM runs r LEFT JOIN run_attempts a ON a.run_id = r.id "
                "WHERE r.id = ? ORDER BY a.seq",
                (run_id,),
            )
            lines += [f"   run {run_id}: {row}" for row in rows]
            for r in replicas:
                lines += [
                    f"   [{r.name}] {line}"
                    for line in r.process.log_text().splitlines()
                    if run_id in line
                ]
    return "\n".join(lines)


@pytest.mark.timeout(600)
async def test_three_replicas_killed_at_random_lose_and_double_nothing(
    tmp_path: Path, postgres_url: str, agent_stub: AgentStub
) -> None:
    began = time.monotonic()
    agent = ScriptedAgent()
    agent_stub.respond_with(agent)
    # One clock for the three replicas and the test: they agree on the fake instant,
    # across every restart too.
    clock = fast_clock(SPEED)

    rng = random.Random()
    in_flight_at_kill: list[int] = []
    # The last replica runs as if on a host of its own where this machine allows it:
    # the others then tell it died by its silence, not by the process table.
    elsewhere = on_another_host(f"replica{REPLICAS}.tickler.test")
    async with Launcher(tmp_path / "logs") as launch:
        replicas = [
            Replica(
                launch(
                    postgres_url,
                    headless=True,
                    name=f"replica{i + 1}",
                    prefix=elsewhere if elsewhere and i == REPLICAS - 1 else (),
                    agent_url=agent_stub.url,
                    admin_ids=CHATS,
                    clock=clock,
                    grace=10,
                    extra={"MAX_CONCURRENCY": "32"},
                ),
                name=f"replica{i + 1}",
            )
            for i in range(REPLICAS)
        ]
        # Three at once on an empty database: one migrates it, the others wait for that.
        await asyncio.gather(*(r.start() for r in replicas))
        group_of = await seed(postgres_url, clock, agent)
        assert len(group_of) == sum(g.count for g in GROUPS) >= 200
        kills_began = time.monotonic()
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.4, 1.6))
            # Any replica that is up, as long as another one is up too.
            while len(up := [r for r in replicas if r.up and not r.busy]) < 2:
                for r in replicas:
                    if r.restarting is not None and r.restarting.done():
                        r.restarting.result()  # a start that failed fails the test
                await asyncio.sleep(0.05)
            victim = rng.choice(up)
            assert victim.process.running, f"{victim.name} died:\n{victim.process.log_tail()}"
            in_flight_at_kill.append(await running_owned_by(postgres_url, victim.process.pid))
            await victim.kill()
            # One restart in six is killed again while it starts up (opening the
            # database, registering, reaping the orphans of the kills before).
            again = rng.uniform(0.1, 1.0) if rng.random() < 1 / 6 else None
            victim.restarting = asyncio.create_task(
                victim.restart_after(rng.uniform(0.0, 0.8), again)
            )
        kill_seconds = time.monotonic() - kills_began

        # The end: every replica up again, the agent quick, the backlog drained, then a
        # clean stop of all three at once.
        for r in replicas:
            if r.restarting is not None:
                await r.restarting
        for sid, group in group_of.items():
            if group.startswith("slow"):
                agent.assign(sid, answer_after(0.0, 0.03))
        cut = clock.now() + timedelta(minutes=5)
        drained_in = await drain(replicas, postgres_url, cut)
        stops: list[FinalStop] = list(
            await asyncio.gather(*(r.process.final_stop(clock) for r in replicas))
        )
        for r, stop in zip(replicas, stops, strict=True):
            assert stop.code == 0, f"{r.name}:\n{r.process.log_tail()}"
        logs = {r.name: r.process.log_text() for r in replicas}

    left_running = await query(postgres_url, "SELECT id, owner FROM runs WHERE status = 'running'")
    acc = await account(
        postgres_url,
        chats=CHATS,
        until=max(s.stopped_at for s in stops),
        claimed_by=min(s.asked_at for s in stops),
        settled_before=cut,
        deliveries=agent.deliveries,
    )
    schedules = await read_schedules(postgres_url, CHATS)
    fig = audit(acc, schedules, agent.deliveries, cut)
    wall = time.monotonic() - began
    fake_span = max(s.stopped_at for s in stops) - clock.origin_fake
    kills = sum(r.kills for r in replicas)
    kills_in_flight = sum(1 for n in in_flight_at_kill if n)
    tracebacks = sum(text.count("Traceback") for text in logs.values())
    errors = sum(text.count(" ERROR ") for text in logs.values())
    # Fires claimed later than the misfire grace (5 fake minutes), and so caught up as
    # missed: the replicas lagged behind the fake clock (a busy machine).
    late = sum(
        int(n) for text in logs.values() for n in re.findall(r"fires missed .*missed=(\d+)", text)
    )
    presumed_dead = reaped_alive(logs.values(), {pid for r in replicas for pid in r.killed_pids})
    hosts = (
        f"{replicas[-1].name} on a host of its own"
        if elsewhere
        else "all on one host: no UTS namespace here"
    )

    tally.add("crashes survived", kills)
    tally.add("runs checked", acc.checked)
    tally.add("runs lost", len(acc.lost) + len(fig.lost))
    tally.add("runs doubled", len(acc.doubled) + len(fig.doubled))
    tally.add("replicas: kills with dispatches in flight", kills_in_flight)
    tally.add("replicas: redeliveries with the same key", fig.redelivered_same_key)
    summary = (
        f"replicas: {REPLICAS} replicas on one PostgreSQL ({hosts}), {len(group_of)} "
        f"schedules, {SPEED}x clock; {kills} kill -9 "
        f"({', '.join(f'{r.name} {r.kills}' for r in replicas)}; "
        f"{sum(r.startup_kills for r in replicas)} of them during a start-up, "
        f"{kills_in_flight} with dispatches in flight) over "
        f"{fake_span.total_seconds() / 3600:.1f} h of fake time; "
        f"fires expected {fig.fires_expected}, delivered {fig.delivered}, "
        f"redelivered with the same key {fig.redelivered_same_key}, "
        f"lost {len(fig.lost) + len(acc.lost)}, "
        f"doubled with different keys {len(fig.doubled)}; "
        f"ledger and agent disagree {len(fig.disagree)}, "
        f"queued fires at the agent at once {len(fig.overlaps)}; "
        f"{len(agent.deliveries)} deliveries, {fig.interrupted_attempts} attempts "
        f"interrupted by kills and redelivered, runs {dict(fig.statuses)} "
        f"(unknown: interrupted 5 times, left to the operator); "
        f"{late} fires claimed late and caught up, {len(presumed_dead)} live engines "
        f"presumed dead; drained in {drained_in:.1f} s, stops took "
        f"{', '.join(f'{s.seconds:.1f}' for s in stops)} s; {tracebacks} tracebacks and "
        f"{errors} ERROR lines in the logs; kills {kill_seconds:.0f} s, wall time {wall:.0f} s"
    )
    tally.note(summary)
    print(summary)

    problems = [
        *acc.lost,
        *acc.doubled,
        *acc.problems,
        *fig.lost,
        *fig.doubled,
        *fig.disagree,
        # An engine presumed dead while it lived (silent past the heartbeat limit, which
        # is 0.75 s real at this speed) may still be sending a run that another engine
        # took over, so its schedule's next fire may meet it at the agent: only while
        # every engine judged dead was dead is a queue kept across replicas.
        *([] if presumed_dead else fig.overlaps),
    ]
    if problems or left_running:
        detail = await explain(postgres_url, problems, acc.runs, agent.deliveries, replicas)
        raise AssertionError(
            f"{summary}\n{acc.summary()}\nleft running: {left_running}\n"
            + "\n".join(problems[:20])
            + f"\n{detail}"
        )
    # The mix did what it is for: kills cut dispatches off, and their runs went out again.
    assert kills_in_flight >= KILLS // 3, in_flight_at_kill
    assert fig.interrupted_attempts > 0 and fig.redelivered_same_key > 0
    assert fig.fires_expected >= 1000
