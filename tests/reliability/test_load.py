"""Load: 10,000 schedules fire at one instant in the real bot process (`python -m bot`)
while 20 operators, each in their own chat, keep sending commands through the Bot API
test server. Every command is answered and every fire runs exactly once; how long the
replies took is measured and printed with the suite's figures, never asserted."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.telegram_server import TelegramServer, TgUser
from scheduler.models import Action, Owner
from scheduler.service import Limits, ScheduleService, TriggerSpec
from scheduler.stats import percentile
from storage.sqlite_store import SqliteStore
from tests.reliability.figures import tally
from tests.reliability.process import Launcher, fast_clock, free_port

SCHEDULES = 10_000
#: Twenty people: half admins, half operators, each in a private chat of their own.
PEOPLE = tuple(range(5101, 5121))
ADMINS, OPERATORS = PEOPLE[:10], PEOPLE[10:]
#: Seconds an operator pauses between commands: people read the answer first.
THINK = (0.5, 1.5)
#: From the bot's start to the fire instant: its start-up and the operators' first
#: commands fit in it on a busy machine.
LEAD = timedelta(seconds=8)


@dataclass(frozen=True)
class Exchange:
    command: str
    sent_at: float  # time.monotonic()
    latency: float  # seconds from sending to the bot's reply reaching the server


async def seed(db_path: Path, at: datetime) -> dict[int, list[str]]:
    """SCHEDULES one-time schedules firing at `at`, spread evenly over the chats."""
    per_chat = SCHEDULES // len(PEOPLE)
    ids: dict[int, list[str]] = {chat: [] for chat in PEOPLE}
    async with await SqliteStore.open(db_path) as store:
        # Created "a minute before" the fire instant, however long seeding takes on a
        # busy machine: if it takes longer, the fires are simply due when the bot starts.
        clock = FakeClock(at - timedelta(minutes=1))
        service = ScheduleService(store, clock, limits=Limits(max_schedules_per_chat=per_chat))
        for i in range(SCHEDULES):
            chat = PEOPLE[i % len(PEOPLE)]
            schedule = await service.create_schedule(
                chat,
                Owner(id=chat, first_name=f"Op{chat}"),
                name=f"load {i}",
                trigger=TriggerSpec(kind="once", at=at),
                action=Action(text="Prepare the brief."),
            )
            ids[chat].append(schedule.id)
    return ids


def commands(ids: list[str], rng: random.Random) -> list[tuple[str, str]]:
    """One round of an operator's commands, each with a piece of the answer it must
    get; the bad ones must be refused in a sentence and change nothing."""
    mine = rng.choice(ids)
    return [
        ("/schedules", "load "),
        (f"/show {mine}", mine),
        ("/today", "Due today"),
        ("/history", "runs"),  # "No runs yet" before the fires, "Recent runs" after
        ("/new every 0 minutes Prepare the brief", "Write the interval as a number"),
        ("/tz Europe/Berlinn", "Did you mean Europe/Berlin?"),
        ("/show 01NOSUCHSCHEDULE0000000000", "There is no schedule"),
        ("/help", "/schedules"),
    ]


async def operate(
    user: TgUser, ids: list[str], stop: asyncio.Event, log: list[Exchange], seed_: int
) -> None:
    """Send commands one after another, each after the previous one's reply, until
    `stop`; every command must be answered."""
    rng = random.Random(seed_)
    await asyncio.sleep(rng.uniform(*THINK))  # not all twenty at the same instant
    while not stop.is_set():
        for command, expected in commands(ids, rng):
            user.mark_read()
            sent_at = time.monotonic()
            await user.send(command)
            reply = await user.wait_reply(timeout=60)
            log.append(Exchange(command, sent_at, time.monotonic() - sent_at))
            assert expected in (reply.text or ""), (command, reply.text)
            if stop.is_set():
                return
            await asyncio.sleep(rng.uniform(*THINK))


def succeeded_runs(db_path: Path) -> int:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
        row = db.execute("SELECT count(*) FROM runs WHERE status = 'succeeded'").fetchone()
        return int(row[0])


def summary(label: str, exchanges: list[Exchange]) -> str:
    latencies = [e.latency * 1000 for e in exchanges]
    if not latencies:
        return f"{label}: no commands"
    return (
        f"{label}: {len(latencies):,} commands, reply p50 {percentile(latencies, 50):.0f} ms, "
        f"p99 {percentile(latencies, 99):.0f} ms, max {max(latencies):.0f} ms"
    )


@pytest.mark.timeout(240)
async def test_ten_thousand_fires_while_twenty_operators_send_commands(
    tmp_path: Path, agent_stub: AgentStub, telegram_server: TelegramServer
) -> None:
    db_path = tmp_path / "tickler.db"
    fire_at = datetime.now(UTC) + timedelta(seconds=25)
    ids = await seed(db_path, fire_at)
    # Seeding takes some seconds, more on a busy machine: the bot's clock (real speed)
    # starts LEAD before the fire instant once it is done, so the fires come due once
    # the operators are busy, without waiting out a margin sized for the slowest seeding.
    clock = fast_clock(1.0, origin=fire_at - LEAD)
    users = [telegram_server.user(person, f"Op{person}") for person in PEOPLE]

    async with Launcher(tmp_path / "procs") as launch:
        bot = launch(
            db_path,
            telegram=telegram_server,
            agent_url=agent_stub.url,
            admin_ids=ADMINS,
            http_port=free_port(),
            clock=clock,
            extra={"OPERATOR_IDS": ",".join(map(str, OPERATORS))},
        )
        await bot.start()
        await bot.wait_engine()
        await telegram_server.wait_polling(timeout=30)

        stop = asyncio.Event()
        log: list[Exchange] = []
        operators = [
            asyncio.create_task(operate(user, ids[user.user_id], stop, log, i))
            for i, user in enumerate(users)
        ]
        try:
            async with asyncio.timeout(150):
                while (done := await asyncio.to_thread(succeeded_runs, db_path)) < SCHEDULES:
                    if any(t.done() for t in operators) or not bot.running:
                        break
                    await asyncio.sleep(0.5)
            await asyncio.sleep(2)  # a last stretch of commands on the settled bot
        finally:
            stop.set()
            await asyncio.gather(*operators)
        assert bot.running, bot.log_tail()
        code, _ = await bot.terminate()
        assert code == 0, bot.log_tail()

    # Every fire ran exactly once: one run each, one delivery each.
    with sqlite3.connect(db_path) as db:
        runs = dict(db.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
        per_fire = db.execute(
            "SELECT count(*) FROM (SELECT schedule_id FROM runs GROUP BY schedule_id "
            "HAVING count(*) > 1)"
        ).fetchone()[0]
        schedules = db.execute("SELECT count(*) FROM schedules").fetchone()[0]
    deliveries = agent_stub.count_by_key()
    all_ids = {sid for chat in ids.values() for sid in chat}
    delivered = {key.split(":", 1)[0] for key in deliveries}
    lost = len(all_ids - delivered) + SCHEDULES - runs.get("succeeded", 0)
    doubled = per_fire + sum(1 for n in deliveries.values() if n > 1)
    tally.add("runs checked", SCHEDULES)
    tally.add("runs lost", lost)
    tally.add("runs doubled", doubled)
    tally.add("load commands answered", len(log))
    assert runs == {"succeeded": SCHEDULES}
    assert (lost, doubled) == (0, 0)
    # The refused commands changed nothing.
    assert schedules == SCHEDULES

    first, last = agent_stub.requests[0].received_at, agent_stub.requests[-1].received_at
    firing = [e for e in log if first <= e.sent_at <= last]
    tally.note(
        f"load: {SCHEDULES:,} fires dispatched in {last - first:.1f} s "
        f"({SCHEDULES / max(last - first, 1e-3):,.0f}/s) while {len(PEOPLE)} operators "
        "sent commands"
    )
    tally.note(summary("load, while firing", firing))
    tally.note(summary("load, whole run", log))
    assert done >= SCHEDULES
