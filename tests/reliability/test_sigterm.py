"""SIGTERM (what `docker stop` sends) with work in flight, again and again: every stop
ends within the shutdown grace, runs that finish within it are recorded, the others are
put back as pending (their attempt not counted) and run at the next start with the same
key; at the end every fire instant is accounted for exactly once.

The bot runs on a 60x clock with a 3 s grace; some agent answers take longer than the
grace, so each stop has both kinds of in-flight run.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest

from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.telegram_server import TelegramServer
from scheduler.models import Action, Owner, RunStatus
from scheduler.service import ScheduleService, TriggerSpec
from storage.sqlite_store import SqliteStore
from tests.reliability.figures import tally
from tests.reliability.ledger import account, read_runs
from tests.reliability.process import Launcher, fast_clock
from tests.reliability.scripted_agent import Rule, ScriptedAgent, answer_after

SPEED = 60
CHAT = 7201
GRACE = 3.0
#: What a stop may take beyond the grace: cancelling what is left and writing it back,
#: the Telegram side stopping, the database closing. The engine's own bounds are the
#: grace plus 5 s to record outcomes; a healthy stop needs a fraction of that.
STOP_ALLOWANCE = 5.0
STOPS = 6


async def seed(db_path: Path, agent: ScriptedAgent) -> list[str]:
    """Twenty schedules; returns those whose answers take longer than the grace."""
    clock = fast_clock(SPEED)
    quick: list[str] = []
    slow: list[str] = []
    async with await SqliteStore.open(db_path) as store:
        service = ScheduleService(store, clock)

        async def add(name: str, trigger: TriggerSpec, rule: Rule, into: list[str]) -> None:
            schedule = await service.create_schedule(
                CHAT,
                Owner(id=CHAT, first_name="Ada"),
                name=name,
                trigger=trigger,
                action=Action(text="SIGTERM test fire for {date}."),
            )
            agent.assign(schedule.id, rule)
            into.append(schedule.id)

        for i in range(10):
            every_minute = TriggerSpec(kind="cron", cron="* * * * *")
            await add(f"minutely #{i}", every_minute, answer_after(0.3, 1.5), quick)
        for i in range(6):
            interval = TriggerSpec(kind="interval", every_seconds=180)
            await add(f"3-minutely #{i}", interval, answer_after(0.0, 0.1), quick)
        for i in range(4):
            every_other = TriggerSpec(kind="cron", cron="*/2 * * * *")
            await add(f"longer than the grace #{i}", every_other, answer_after(6.0, 8.0), slow)
    return slow


def statuses(db_path: Path) -> dict[str, tuple[RunStatus, int, int]]:
    """Idempotency key -> (status, attempt, recorded attempts)."""
    return {r.key: (r.status, r.attempt, len(r.trail)) for r in read_runs(db_path)}


def stopped_cleanly(db_path: Path, pid: int) -> bool:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        row = db.execute(
            "SELECT stopped_at IS NOT NULL FROM engine_instances WHERE pid = ?", (pid,)
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.timeout(240)
async def test_sigterm_with_work_in_flight_loses_nothing_and_stops_within_the_grace(
    tmp_path: Path, agent_stub: AgentStub, telegram_server: TelegramServer
) -> None:
    db_path = tmp_path / "sigterm.db"
    clock = fast_clock(SPEED)
    agent = ScriptedAgent()
    agent_stub.respond_with(agent)
    telegram_server.user(CHAT, "Ada")
    slow = await seed(db_path, agent)
    rng = random.Random()
    took: list[float] = []
    finished_in_grace = put_back = 0

    async with Launcher(tmp_path / "logs") as launch:
        proc = launch(
            db_path,
            telegram=telegram_server,
            agent_url=agent_stub.url,
            admin_ids=(CHAT,),
            clock=clock,
            grace=GRACE,
        )
        for _ in range(STOPS):
            seen = len(agent.deliveries)
            await proc.start()
            await proc.wait_engine()
            async with asyncio.timeout(30):
                while sum(not d.answered for d in agent.deliveries[seen:]) < 4:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(rng.uniform(0.0, 0.5))
            in_flight = [d for d in agent.deliveries[seen:] if not d.answered]
            pid = proc.pid
            code, seconds = await proc.terminate()
            took.append(seconds)
            assert code == 0, proc.log_tail()
            assert seconds <= GRACE + STOP_ALLOWANCE, f"the stop took {seconds:.1f} s"
            assert stopped_cleanly(db_path, pid)

            ledger = statuses(db_path)
            assert not [k for k, (s, *_) in ledger.items() if s is RunStatus.RUNNING]
            for delivery in in_flight:
                status, attempt, recorded = ledger[delivery.key]
                if status is RunStatus.SUCCEEDED:
                    finished_in_grace += 1
                    continue
                # Cut off at the grace: back to pending, the attempt not counted (the
                # answers slower than the grace, and a quick one on a loaded machine).
                assert (status, attempt) == (RunStatus.PENDING, recorded), delivery
                put_back += 1

        # The last run answers at once; the backlog (and every put-back run) drains.
        for sid in slow:
            agent.assign(sid, answer_after(0.0, 0.05))
        await proc.start()
        await proc.wait_engine()
        cut = clock.now() + timedelta(minutes=2)
        cut_ok = False
        deadline = time.monotonic() + 60
        while not cut_ok and time.monotonic() < deadline:
            ledger_now = read_runs(db_path)
            cut_ok = clock.now() > cut and all(
                r.status in (RunStatus.SUCCEEDED, RunStatus.SKIPPED)
                for r in ledger_now
                if r.scheduled_for < cut
            )
            await asyncio.sleep(0.3)
        stop = await proc.final_stop(clock)
        took.append(stop.seconds)
        assert stop.code == 0, proc.log_tail()

    acc = await account(
        db_path,
        chats=(CHAT,),
        until=stop.stopped_at,
        claimed_by=stop.asked_at,
        settled_before=cut,
        deliveries=agent.deliveries,
    )
    tally.add("sigterm stops", len(took))
    tally.add("runs checked", acc.checked)
    tally.add("runs lost", len(acc.lost))
    tally.add("runs doubled", len(acc.doubled))
    tally.add("sigterm: in-flight runs finished within the grace", finished_in_grace)
    tally.add("sigterm: in-flight runs put back, run at the next start", put_back)
    tally.note(
        f"sigterm: {len(took)} stops with a {GRACE:g} s grace took "
        f"{min(took):.1f}-{max(took):.1f} s; {acc.summary()}"
    )
    acc.assert_clean()
    assert finished_in_grace > 0 and put_back >= STOPS
    # Every put-back run came again with its own key, once more per stop that cut it.
    assert acc.redeliveries >= put_back
