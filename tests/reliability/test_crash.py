"""Crash: `kill -9` at random moments over many restarts on one database file, with
200 schedules on a fast fake clock. Afterwards every fire instant is accounted for
exactly once, and the agent saw a key again only when a run was retried.

The bot (`python -m bot`, the Telegram console and the engine) runs on an accelerated
clock (`TICKLER_TEST_CLOCK`, 300x: a real second is five fake minutes) against the
test Bot API server and the agent stub. Each cycle starts it, waits until its engine
has registered, lets it work for a random moment (start-up reconciliation, claims of
the fires missed while it was down, dispatches in flight, outcomes being written),
then SIGKILLs it and leaves it down for a random moment (fires are missed meanwhile).
Some schedules answer slowly (so kills land mid-dispatch), some fail their first
delivery (so retries are rows when the kill comes), some always fail (dead runs, a
circuit breaker); the policies mix overlap skip/queue/allow and the three missed-run
policies. A last clean run drains the work and stops with SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from adapters.clocks import AcceleratedClock
from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.telegram_server import TelegramServer
from scheduler.engine import EngineConfig
from scheduler.models import (
    INTERRUPTED,
    Action,
    MissedRunPolicy,
    OverlapPolicy,
    Owner,
    Policies,
    RetryPolicy,
    RunStatus,
)
from scheduler.service import Limits, ScheduleService, TriggerSpec
from storage.sqlite_store import SqliteStore
from tests.reliability.figures import tally
from tests.reliability.ledger import account, open_before, read_runs, read_schedules
from tests.reliability.process import Launcher, TicklerProcess, fast_clock
from tests.reliability.scripted_agent import (
    Rule,
    ScriptedAgent,
    always,
    answer_after,
    fail_first,
    hang_first,
)

#: Fake seconds per real second. Fast enough that one run spans most of a day of
#: schedules; slow enough that the engine keeps up on two busy cores.
SPEED = 300
CHATS = (7101, 7102, 7103, 7104)
#: Kill cycles; TICKLER_CRASH_CYCLES makes a longer soak run.
CYCLES = int(os.environ.get("TICKLER_CRASH_CYCLES", "50"))


@dataclass(frozen=True)
class Group:
    """A kind of schedule in the mix: how many, when they fire, how the agent answers."""

    name: str
    count: int
    trigger: TriggerSpec | None  # None: an interval of a random length
    rule: Rule
    policies: Policies = field(default_factory=Policies)


def cron(expr: str) -> TriggerSpec:
    return TriggerSpec(kind="cron", cron=expr, timezone="UTC")


#: Slow runs are often cut by a kill. An interrupted attempt spends no retry, but a run
#: cut off five times is left `unknown`; more attempts keep the retried ones in the mix.
PATIENT = RetryPolicy(max_attempts=6)

# The mix fires about 20 runs per real second. Each process lives only about a second
# between its start-up and its kill, so the engine works a quarter of the time; the
# rate keeps it ahead of its fires on two busy cores (a backlog is not a loss, but it
# would make the test about throughput, which bench/ measures).
GROUPS = (
    Group("every 5 min", 6, cron("*/5 * * * *"), answer_after(0.0, 0.03)),
    Group("every 30 min", 30, cron("*/30 * * * *"), answer_after(0.0, 0.03)),
    # A fire every 0.4 s real, answered in 0.3-0.6 s: many fires find the previous run
    # still going and are skipped with the overlap reason.
    Group(
        "slow, overlap skip",
        3,
        cron("*/2 * * * *"),
        answer_after(0.3, 0.6),
        Policies(retry=PATIENT),
    ),
    Group(
        "slow, overlap queue",
        3,
        cron("*/15 * * * *"),
        answer_after(0.2, 0.8),
        Policies(overlap=OverlapPolicy.QUEUE, retry=PATIENT),
    ),
    Group(
        "slow, overlap allow",
        3,
        cron("*/15 * * * *"),
        answer_after(0.5, 1.5),
        Policies(overlap=OverlapPolicy.ALLOW, retry=PATIENT),
    ),
    Group("fails once, then succeeds", 20, None, fail_first(1)),
    Group("always fails", 2, cron("*/30 * * * *"), always(500)),
    Group(
        "missed: skip",
        6,
        cron("*/10 * * * *"),
        answer_after(0.0, 0.03),
        Policies(missed_run=MissedRunPolicy.SKIP),
    ),
    Group(
        "missed: catch up all (cap 2)",
        6,
        cron("*/15 * * * *"),
        answer_after(0.0, 0.03),
        Policies(missed_run=MissedRunPolicy.CATCH_UP_ALL, catch_up_cap=2),
    ),
    Group("intervals", 121, None, answer_after(0.0, 0.05)),
)


async def seed(db_path: Path, clock: AcceleratedClock, agent: ScriptedAgent) -> dict[str, str]:
    """The 200 schedules, written straight into the file before the first start."""
    rng = random.Random(20261123)
    group_of: dict[str, str] = {}
    async with await SqliteStore.open(db_path) as store:
        service = ScheduleService(store, clock, limits=Limits(max_schedules_per_chat=1000))
        n = 0
        for group in GROUPS:
            for i in range(group.count):
                chat = CHATS[n % len(CHATS)]
                n += 1
                trigger = group.trigger or TriggerSpec(
                    kind="interval", every_seconds=60 * rng.choice([30, 45, 60, 90, 180, 360])
                )
                schedule = await service.create_schedule(
                    chat,
                    Owner(id=chat, first_name="Ada"),
                    name=f"{group.name} #{i + 1}",
                    trigger=trigger,
                    action=Action(text="Crash test fire for {date}."),
                    policies=group.policies,
                )
                agent.assign(schedule.id, group.rule)
                group_of[schedule.id] = group.name
    return group_of


def running_owned_by(db_path: Path, pid: int) -> int:
    """Runs left `running` by the process `pid` (what its crash left in flight)."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30) as db:
        row = db.execute(
            "SELECT COUNT(*) FROM runs r JOIN engine_instances i ON r.owner = i.id "
            "WHERE r.status = 'running' AND i.pid = ?",
            (pid,),
        ).fetchone()
    return int(row[0])


#: Real seconds the last run may take to settle the ledger before its cut: a bound for a
#: stalled engine, far above what the drain takes on a busy machine (seconds).
DRAIN_LIMIT = 300.0


async def drain(proc: TicklerProcess, db_path: Path, cut: datetime) -> float:
    """Wait until every fire before `cut` is claimed and settled (the ledger says so,
    not a span of time); returns the real seconds it took. Stopping earlier would leave
    the newest fires before `cut` pending by design (a stop writes the fires it holds for
    a slot as pending runs, for the next start), and the ledger would call them lost."""
    began = time.monotonic()
    while left := await asyncio.to_thread(open_before, db_path, cut):
        assert proc.running, f"Tickler died by itself:\n{proc.log_tail()}"
        assert time.monotonic() - began < DRAIN_LIMIT, (
            f"the ledger before {cut} did not settle in {DRAIN_LIMIT:g} s; {len(left)} open: "
            + "; ".join(left[:10])
            + f"\n{proc.log_tail()}"
        )
        await asyncio.sleep(0.2)
    return time.monotonic() - began


async def working(proc: TicklerProcess, agent: ScriptedAgent, since: int) -> None:
    """Until the process dispatched something after its start-up (the agent got more
    than `since` deliveries), or a while passed: on a busy machine start-up alone can
    take seconds, and a kill timed from the registration would land before any work."""
    began = time.monotonic()
    while len(agent.deliveries) <= since and time.monotonic() - began < 15.0:
        assert proc.running, f"Tickler died by itself:\n{proc.log_tail()}"
        await asyncio.sleep(0.02)


# About 80 s on an idle machine; several times that when the cores are busy, since
# each of the 50 starts imports the bot afresh.
@pytest.mark.timeout(900)
async def test_kill_9_at_random_moments_loses_and_doubles_nothing(
    tmp_path: Path, agent_stub: AgentStub, telegram_server: TelegramServer
) -> None:
    began = time.monotonic()
    db_path = tmp_path / "crash.db"
    clock = fast_clock(SPEED)
    agent = ScriptedAgent()
    agent_stub.respond_with(agent)
    for chat in CHATS:
        telegram_server.user(chat, "Ada")
    group_of = await seed(db_path, clock, agent)
    assert len(group_of) == 200

    rng = random.Random()
    in_flight_at_kill: list[int] = []
    async with Launcher(tmp_path / "logs") as launch:
        proc = launch(
            db_path,
            telegram=telegram_server,
            agent_url=agent_stub.url,
            admin_ids=CHATS,
            clock=clock,
            grace=20,
            extra={"MAX_CONCURRENCY": "32"},
        )
        for cycle in range(CYCLES):
            delivered = len(agent.deliveries)
            await proc.start()
            await proc.wait_engine()
            # From the engine's registration on: reaping the last crash's orphans and
            # claiming the fires missed meanwhile come first, then steady work. One
            # kill in three is timed from the registration (it may hit start-up), the
            # others from the first dispatch, whatever start-up cost on this machine.
            if cycle % 3:
                await working(proc, agent, delivered)
            await asyncio.sleep(rng.uniform(0.0, 1.2))
            assert proc.running, f"Tickler died by itself:\n{proc.log_tail()}"
            pid = proc.pid
            assert await proc.kill() == -9
            in_flight_at_kill.append(running_owned_by(db_path, pid))
            await asyncio.sleep(rng.uniform(0.0, 0.6))  # down: fires are missed

        # The last run: the agent answers at once, so the backlog drains; then a
        # clean stop. Fires from before this start must all end in a final status.
        for sid, group in group_of.items():
            if group.startswith("slow"):
                agent.assign(sid, answer_after(0.0, 0.03))
        await proc.start()
        await proc.wait_engine()
        cut = clock.now() + timedelta(minutes=5)
        drained_in = await drain(proc, db_path, cut)
        stop = await proc.final_stop(clock)
        assert stop.code == 0, proc.log_tail()
        until = stop.stopped_at

    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    acc = await account(
        db_path,
        chats=CHATS,
        until=until,
        claimed_by=stop.asked_at,
        settled_before=cut,
        deliveries=agent.deliveries,
    )
    runs = read_runs(db_path)
    orphaned = sum(1 for r in runs for _, error, *_ in r.trail if _interrupted(error))
    statuses = Counter(r.status.value for r in runs)
    reasons = acc.skipped_because
    fake_span = until - clock.origin_fake
    tally.add("crashes survived", CYCLES)
    tally.add("runs checked", acc.checked)
    tally.add("runs lost", len(acc.lost))
    tally.add("runs doubled", len(acc.doubled))
    tally.add("crash: kills with dispatches in flight", sum(1 for n in in_flight_at_kill if n))
    tally.add("crash: orphaned attempts recovered", orphaned)
    tally.add("crash: redeliveries of a key by retries", acc.redeliveries)
    tally.note(
        f"crash: {CYCLES} kill -9 over {fake_span.total_seconds() / 3600:.1f} h of fake time in "
        f"{time.monotonic() - began:.0f} s; {len(agent.deliveries)} deliveries; "
        f"{acc.summary()}; the last run drained in {drained_in:.1f} s and its SIGTERM "
        f"took {stop.seconds:.1f} s"
    )
    acc.assert_clean()
    # The mix did what it is for: kills found work in flight, crashes left orphans
    # that were retried, fires were missed while down and skipped by policy.
    assert sum(1 for n in in_flight_at_kill if n) >= CYCLES // 3, in_flight_at_kill
    assert orphaned > 0 and acc.redeliveries > 0
    assert reasons["missed"] > 0 and reasons["overlap"] > 0
    assert statuses["dead"] > 0 and statuses["succeeded"] > acc.checked // 4


MAX_INTERRUPTIONS = EngineConfig().max_interruptions
#: Issue 24: healthy schedules whose agent takes 20 s per run, and kill -9 after kill -9
#: while those runs are in flight. Each kill interrupts a run; none is the agent's fault.
SLOW_SCHEDULES = 8
SLOW_ANSWER = 20.0
SLOW_KILLS = 25
#: A real second is a fake minute: the schedules fire every 10 real seconds.
SLOW_SPEED = 60


@pytest.mark.timeout(600)
async def test_kill_9_during_slow_runs_makes_no_run_dead_and_trips_no_breaker(
    tmp_path: Path, agent_stub: AgentStub, telegram_server: TelegramServer
) -> None:
    """Interrupted attempts spend neither the retry budget nor the circuit breaker: each
    run is sent again with the same key, and one interrupted five times is left
    `unknown` for the operator (never dead)."""
    db_path = tmp_path / "slow.db"
    clock = fast_clock(SLOW_SPEED)
    agent = ScriptedAgent(default=answer_after(SLOW_ANSWER))
    agent_stub.respond_with(agent)
    chat = CHATS[0]
    telegram_server.user(chat, "Ada")
    async with await SqliteStore.open(db_path) as store:
        service = ScheduleService(store, clock)
        for i in range(SLOW_SCHEDULES):
            await service.create_schedule(
                chat,
                Owner(id=chat, first_name="Ada"),
                name=f"slow report #{i + 1}",
                trigger=cron("*/10 * * * *"),
                action=Action(text="Write the slow report for {date}."),
            )

    rng = random.Random()
    in_flight_at_kill: list[int] = []
    async with Launcher(tmp_path / "logs") as launch:
        proc = launch(
            db_path,
            telegram=telegram_server,
            agent_url=agent_stub.url,
            admin_ids=(chat,),
            clock=clock,
            grace=20,
        )
        for _ in range(SLOW_KILLS):
            delivered = len(agent.deliveries)
            await proc.start()
            await proc.wait_engine()
            await working(proc, agent, delivered)
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            pid = proc.pid
            assert await proc.kill() == -9
            in_flight_at_kill.append(running_owned_by(db_path, pid))
            await asyncio.sleep(rng.uniform(0.0, 0.5))

        # The agent is quick again: what was interrupted is delivered and succeeds.
        agent.default = answer_after(0.0, 0.03)
        await proc.start()
        await proc.wait_engine()
        cut = clock.now() + timedelta(minutes=1)
        await drain(proc, db_path, cut)
        stop = await proc.final_stop(clock)
        assert stop.code == 0, proc.log_tail()

    runs = read_runs(db_path)
    cut_off = {r.id: sum(_interrupted(e) for _, e, *_ in r.trail) for r in runs}
    statuses = Counter(r.status.value for r in runs)
    schedules = await read_schedules(db_path, (chat,))
    tripped = [s.name for s in schedules if s.tripped or not s.enabled]
    unknown = [r for r in runs if r.status is RunStatus.UNKNOWN]
    tally.add("crashes survived", SLOW_KILLS)
    tally.add("crash, slow runs: interrupted attempts", sum(cut_off.values()))
    tally.add("crash, slow runs: dead runs", statuses["dead"])
    tally.add("crash, slow runs: breakers tripped", len(tripped))
    tally.note(
        f"crash, slow runs: {SLOW_KILLS} kill -9 over {SLOW_SCHEDULES} schedules whose agent "
        f"answers after {SLOW_ANSWER:g} s, kills with runs in flight "
        f"{sum(1 for n in in_flight_at_kill if n)}; {sum(cut_off.values())} interrupted "
        f"attempts, at most {max(cut_off.values(), default=0)} of one run; "
        f"{statuses['dead']} dead, {len(tripped)} breakers tripped, {len(unknown)} runs "
        f"left unknown after {MAX_INTERRUPTIONS} interruptions, "
        f"{statuses['succeeded']} succeeded"
    )
    assert statuses["dead"] == 0, statuses
    assert tripped == [], tripped
    assert all(s.consecutive_failures == 0 for s in schedules)
    # The kills did cut runs off, more often than a retry budget of 3 allows.
    assert sum(1 for n in in_flight_at_kill if n) >= SLOW_KILLS // 2, in_flight_at_kill
    assert max(cut_off.values()) >= 3
    # An interrupted run is delivered again, never skipped or cancelled as an overlap of
    # its schedule's newer fires.
    dropped = [
        f"{r.key}: {r.status.value}, {r.error}"
        for r in runs
        if cut_off[r.id] and r.status in (RunStatus.SKIPPED, RunStatus.CANCELLED)
    ]
    assert dropped == [], dropped
    # Only the fifth interruption leaves a run to the operator.
    assert all(cut_off[r.id] == MAX_INTERRUPTIONS for r in unknown)
    assert all(
        n < MAX_INTERRUPTIONS
        for r in runs
        if r.status is not RunStatus.UNKNOWN
        for n in [cut_off[r.id]]
    )
    acc = await account(
        db_path,
        chats=(chat,),
        until=stop.stopped_at,
        claimed_by=stop.asked_at,
        settled_before=cut,
        deliveries=agent.deliveries,
    )
    tally.add("runs checked", acc.checked)
    tally.add("runs lost", len(acc.lost))
    tally.add("runs doubled", len(acc.doubled))
    acc.assert_clean()


async def test_a_restarted_engine_recovers_a_killed_ones_runs_but_not_a_live_ones(
    tmp_path: Path, agent_stub: AgentStub, telegram_server: TelegramServer
) -> None:
    """Two engines on one file and one host: the second leaves the first's run alone
    while the first lives (far longer than the 90 s heartbeat limit of fake time), and
    recovers it, with the same key, once the first is killed."""
    db_path = tmp_path / "pair.db"
    clock = fast_clock(SPEED)
    agent = ScriptedAgent(default=answer_after(0.0, 0.02))
    agent_stub.respond_with(agent)
    chat = CHATS[0]
    telegram_server.user(chat, "Ada")
    async with await SqliteStore.open(db_path) as store:
        service = ScheduleService(store, clock)
        owner = Owner(id=chat, first_name="Ada")
        held = await service.create_schedule(
            chat,
            owner,
            name="held by the first engine",
            trigger=TriggerSpec(kind="interval", every_seconds=86400),
            action=Action(text="Long job."),
        )
        for i in range(20):
            await service.create_schedule(
                chat,
                owner,
                name=f"shared #{i}",
                trigger=cron("*/5 * * * *"),
                action=Action(text="Short job."),
            )
    # The first delivery of the held run never gets an answer; a retry does.
    agent.assign(held.id, hang_first())

    async with Launcher(tmp_path / "logs") as launch:
        first = launch(
            db_path,
            telegram=telegram_server,
            agent_url=agent_stub.url,
            admin_ids=(chat,),
            clock=clock,
            name="bot",
        )
        second = launch(
            db_path,
            agent_url=agent_stub.url,
            admin_ids=(chat,),
            clock=clock,
            headless=True,
            name="engine",
        )
        await first.start()
        await first.wait_engine()
        await _wait(lambda: any(d.schedule_id == held.id for d in agent.deliveries), 30)
        await second.start()
        await second.wait_engine()
        # 4 s real = 20 fake minutes: well past the heartbeat limit and its x10 margin.
        await asyncio.sleep(4.0)
        assert [d.answered for d in agent.deliveries if d.schedule_id == held.id] == [False]
        assert running_owned_by(db_path, first.pid) == 1

        killed_pid = first.pid
        await first.kill()
        await _wait(lambda: _succeeded(db_path, held.id), 30)
        assert running_owned_by(db_path, killed_pid) == 0
        stop = await second.final_stop(clock)
        assert stop.code == 0, second.log_tail()

    [run] = [r for r in read_runs(db_path) if r.schedule_id == held.id]
    assert [(s, _interrupted(e)) for s, e, *_ in run.trail] == [
        (RunStatus.PENDING, True),
        (RunStatus.SUCCEEDED, False),
    ]
    assert run.attempt == 1  # the interrupted attempt was not counted
    keys = [d.key for d in agent.deliveries if d.schedule_id == held.id]
    assert keys == [run.key, run.key]
    acc = await account(
        db_path,
        chats=(chat,),
        until=stop.stopped_at,
        claimed_by=stop.asked_at,
        settled_before=stop.asked_at - timedelta(minutes=10),
        deliveries=agent.deliveries,
    )
    tally.add("crashes survived", 1)
    tally.add("runs checked", acc.checked)
    tally.add("runs lost", len(acc.lost))
    tally.add("runs doubled", len(acc.doubled))
    acc.assert_clean()


def _interrupted(error: str | None) -> bool:
    return (error or "").startswith(INTERRUPTED)


def _succeeded(db_path: Path, schedule_id: str) -> bool:
    return any(
        r.status is RunStatus.SUCCEEDED for r in read_runs(db_path) if r.schedule_id == schedule_id
    )


async def _wait(predicate: object, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.05)
