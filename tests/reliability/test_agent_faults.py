"""Agent faults against the real bot process: 500s, timeouts, a slow answer longer than
the timeout, garbage JSON, a 200 whose body is an error, and the agent refusing
connections. Each run ends the way its policy says (dead after its attempts, or
succeeded by a retry, or `unknown` for the operator where the policy asks), with the
same idempotency key on every attempt and the backoff between them; circuit breakers
trip and the chat is told; and the slow and broken schedules never delay the healthy
ones, which all run on time.

The bot runs in `openai` mode (where the body of a 200 matters) on a 30x clock: two real
seconds are a fake minute (at 60x a stall of this VM's disk for a few seconds was enough
to make an on-time fire late in another test). The agent sits behind a `TcpGate`, so
"connection refused" is real: for two fake minutes nothing listens on its port.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.demo_kit.agent_stub import HANG, AgentStub, Reply
from bot.demo_kit.telegram_server import TelegramServer
from scheduler.models import (
    Action,
    OverlapPolicy,
    Owner,
    Policies,
    RetryPolicy,
    RunStatus,
    TimeoutPolicy,
)
from scheduler.service import ScheduleService, TriggerSpec
from storage.codec import req_time
from storage.sqlite_store import SqliteStore
from tests.reliability.figures import tally
from tests.reliability.ledger import RunRow, account, read_runs
from tests.reliability.process import Launcher, fast_clock
from tests.reliability.scripted_agent import Rule, ScriptedAgent, always, answer_after, fail_first
from tests.reliability.tcp_gate import TcpGate

SPEED = 30
#: Real seconds in a fake minute.
FAKE_MINUTE = 60 / SPEED
CHAT = 7301
#: The engine's misfire grace: a fire started later than this counts as missed.
ON_TIME = timedelta(minutes=5)
REFUSED = "Could not connect to the agent."
BROKE = "The connection to the agent broke after the request was sent"


def cron(expr: str) -> TriggerSpec:
    return TriggerSpec(kind="cron", cron=expr, timezone="UTC")


GARBAGE = Reply(200, text="<html>oops")
ERROR_BODY = Reply(200, json={"error": {"message": "The model is overloaded.", "code": 503}})


def hang() -> Rule:
    return lambda n, req: (0.0, HANG)


@dataclass(frozen=True)
class Kind:
    name: str
    count: int
    trigger: TriggerSpec
    rule: Rule
    policies: Policies


# Healthy schedules retry patiently enough to outlast the two fake minutes of refused
# connections (attempts at +15..30, +30..60, +60..120, +120..240 fake seconds).
PATIENT = Policies(retry=RetryPolicy(max_attempts=5))
ONE_SECOND = Policies(timeout_seconds=1.0)

KINDS = (
    Kind("healthy", 10, cron("* * * * *"), always(), PATIENT),
    Kind("500", 1, cron("*/2 * * * *"), always(500), Policies()),
    Kind("garbage JSON", 1, cron("*/2 * * * *"), lambda n, r: (0.0, GARBAGE), Policies()),
    Kind(
        "200 with an error body",
        1,
        cron("*/2 * * * *"),
        lambda n, r: (0.0, ERROR_BODY),
        Policies(),
    ),
    Kind("timeout", 1, cron("*/3 * * * *"), hang(), ONE_SECOND),
    Kind("slow answer", 1, cron("*/3 * * * *"), answer_after(2.5), ONE_SECOND),
    Kind(
        "timeout, ask",
        1,
        cron("*/5 * * * *"),
        hang(),
        Policies(timeout_seconds=1.0, timeout_policy=TimeoutPolicy.ASK),
    ),
    Kind("fails twice", 1, cron("*/2 * * * *"), fail_first(2), Policies()),
    Kind("slow, overlap skip", 1, cron("* * * * *"), answer_after(2.5), Policies()),
    Kind(
        "slow, overlap queue",
        1,
        cron("*/2 * * * *"),
        answer_after(2.5),
        Policies(overlap=OverlapPolicy.QUEUE),
    ),
)
DOOMED = ("500", "garbage JSON", "200 with an error body", "timeout", "slow answer")


async def seed(db_path: Path, agent: ScriptedAgent) -> dict[str, str]:
    clock = fast_clock(SPEED)
    kind_of: dict[str, str] = {}
    async with await SqliteStore.open(db_path) as store:
        service = ScheduleService(store, clock)
        for kind in KINDS:
            for i in range(kind.count):
                schedule = await service.create_schedule(
                    CHAT,
                    Owner(id=CHAT, first_name="Ada"),
                    name=f"{kind.name} #{i + 1}",
                    trigger=kind.trigger,
                    action=Action(text="Fault test fire for {date}."),
                    policies=kind.policies,
                )
                agent.assign(schedule.id, kind.rule)
                kind_of[schedule.id] = kind.name
    return kind_of


def _skipped_at(db_path: Path) -> dict[str, datetime]:
    """When each skipped run was skipped (its finished_at), read from the ledger."""
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT id, finished_at FROM runs WHERE status = 'skipped'").fetchall()
    return {run_id: req_time(at) for run_id, at in rows if at is not None}


def _own_retry_was_running(run: RunRow, skipped_at: datetime | None, runs: list[RunRow]) -> bool:
    """`run` was skipped as an overlap while a retry of another run of its schedule, one
    that a refused connection had cost an attempt, was in flight."""
    if run.status is not RunStatus.SKIPPED or "overlap" not in (run.error or ""):
        return False
    if skipped_at is None:
        return False
    return any(
        other.schedule_id == run.schedule_id
        and other.id != run.id
        and refused_in(other)
        and any(
            start is not None and start <= skipped_at <= end for _, _, start, end in other.trail
        )
        for other in runs
    )


def refused_in(run: RunRow) -> int:
    """Attempts that never reached the agent: the connection was refused."""
    return sum(1 for _, error, *_ in run.trail if error == REFUSED)


def broken_in(run: RunRow) -> int:
    """Attempts whose connection broke after the request left: reached the agent or not."""
    return sum(1 for _, error, *_ in run.trail if (error or "").startswith(BROKE))


def reached(run: RunRow) -> int:
    return len(run.trail) - refused_in(run)


def policy_breach(run: RunRow, policies: Policies, deliveries: int) -> str | None:
    """What in the run's attempt trail contradicts its policies (None: nothing)."""
    trail = [status for status, *_ in run.trail]
    most = policies.retry.max_attempts
    if any(status is not RunStatus.FAILED for status in trail[:-1]):
        return f"an attempt other than the last ended {trail}"
    if len(trail) > most:
        return f"{len(trail)} attempts, more than {most}"
    # An attempt the gate cut when it shut may have died in the gate, before the agent:
    # it counts as "maybe delivered", so the agent got it once or not at all.
    if not reached(run) - broken_in(run) <= deliveries <= reached(run):
        return (
            f"the agent got it {deliveries}x for {reached(run)} attempts that reached it"
            f" ({broken_in(run)} of them broken on the way)"
        )
    expected: dict[RunStatus, bool] = {
        RunStatus.DEAD: trail[-1:] == [RunStatus.DEAD] and len(trail) == most,
        RunStatus.SUCCEEDED: trail[-1:] == [RunStatus.SUCCEEDED],
        RunStatus.UNKNOWN: trail == [RunStatus.UNKNOWN]
        and policies.timeout_policy is TimeoutPolicy.ASK,
        RunStatus.CANCELLED: len(trail) < most and run.error == "circuit breaker tripped",
        RunStatus.SKIPPED: not trail,
    }
    if not expected.get(run.status, False):
        return f"{run.status.value} after {trail}"
    for i in range(1, len(trail)):
        # Each retry no sooner than half its nominal backoff (the "equal jitter").
        finished, started = run.trail[i - 1][3], run.trail[i][2]
        nominal = min(policies.retry.cap_seconds, policies.retry.base_seconds * 2 ** (i - 1))
        if started is None or (started - finished).total_seconds() < nominal / 2 - 1:
            return f"retry {i} came {started} after {finished}, before its backoff"
    return None


@pytest.mark.timeout(180)
async def test_agent_faults_end_per_policy_trip_breakers_and_never_delay_the_others(
    tmp_path: Path, agent_stub: AgentStub, telegram_server: TelegramServer
) -> None:
    db_path = tmp_path / "faults.db"
    clock = fast_clock(SPEED)
    agent = ScriptedAgent()
    agent_stub.respond_with(agent)
    ada = telegram_server.user(CHAT, "Ada")
    kind_of = await seed(db_path, agent)
    kinds = Counter(kind_of.values())

    async with TcpGate.in_front_of(agent_stub.url) as gate, Launcher(tmp_path / "logs") as launch:
        proc = launch(
            db_path,
            telegram=telegram_server,
            agent_url=f"{gate.url}/v1/chat/completions",
            agent_mode="openai",
            admin_ids=(CHAT,),
            clock=clock,
            grace=5,
            extra={"MAX_CONCURRENCY": "16"},
        )
        await proc.start()
        await proc.wait_engine()
        await asyncio.sleep(16 * FAKE_MINUTE)  # faults: breakers trip meanwhile
        refused_from = clock.now()
        shut_at = time.monotonic()  # the scripted agent's clock
        await gate.shut()
        await asyncio.sleep(2 * FAKE_MINUTE)
        await gate.open()
        refused_to = clock.now()
        await asyncio.sleep(6 * FAKE_MINUTE)

        # Drain: the agent is healthy again; every run fired so far must settle.
        faults_until = len(agent.deliveries)
        healed = clock.now()
        for sid in kind_of:
            agent.assign(sid, always())
        cut = clock.now()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(
                r.status not in (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.FAILED)
                for r in read_runs(db_path)
                if r.scheduled_for < cut
            ):
                break
            await asyncio.sleep(0.3)
        # The alerts go out in the background; give them a moment to arrive.
        async with asyncio.timeout(30):
            while sum("paused itself" in (m.text or "") for m in ada.messages) < len(DOOMED):
                await asyncio.sleep(0.2)
        stop = await proc.final_stop(clock)
        assert stop.code == 0, proc.log_tail()

    acc = await account(
        db_path,
        chats=(CHAT,),
        until=stop.stopped_at,
        claimed_by=stop.asked_at,
        settled_before=cut,
        deliveries=agent.deliveries,
    )
    runs = [r for r in read_runs(db_path) if r.scheduled_for < cut]
    by_kind: dict[str, list[RunRow]] = {}
    for run in runs:
        by_kind.setdefault(kind_of[run.schedule_id], []).append(run)
    deliveries = Counter(d.key for d in agent.deliveries)
    async with await SqliteStore.open(db_path) as store:
        schedules = {s.id: s for s in await store.schedules.list_for_chat(CHAT)}

    # Every run ended as its policy says, whatever the fault: failed attempts retried
    # with the same key after the backoff, dead after its last attempt, `unknown` where
    # an uncertain timeout asks the operator, cancelled when a breaker tripped first.
    for run in runs:
        problem = policy_breach(run, schedules[run.schedule_id].policies, deliveries[run.key])
        assert problem is None, (kind_of[run.schedule_id], problem, run)

    # The broken answers never succeed: dead runs, three in a row, trip the breaker.
    for name in DOOMED:
        assert not [r for r in by_kind[name] if r.status is RunStatus.SUCCEEDED], name
        assert sum(r.status is RunStatus.DEAD for r in by_kind[name]) >= 3, name
        assert all(schedules[s].tripped for s, k in kind_of.items() if k == name), name
    # Each kind's own error; a run whose last attempt the gate refused says so instead.
    errors: dict[str, set[str]] = {}
    for r in runs:
        if r.status is RunStatus.DEAD and r.error != REFUSED:
            errors.setdefault(kind_of[r.schedule_id], set()).add(r.error or "")
    assert errors["500"] == {"The agent answered HTTP 500."}
    assert errors["garbage JSON"] == {"The agent's answer is not a valid chat completion."}
    assert errors["200 with an error body"] == {
        "The agent's answer is not a valid chat completion."
    }
    assert all("it may have received the request" in e for e in errors["timeout"])
    assert all("it may have received the request" in e for e in errors["slow answer"])
    assert any(r.status is RunStatus.UNKNOWN for r in by_kind["timeout, ask"])
    # Failing twice, then answering: succeeded on the third attempt (a refused
    # connection can use up an attempt; then the run is dead, per the same policy).
    # A run with an attempt about when the drain began may have met the healthy rule.
    for run in by_kind["fails twice"]:
        if run.trail and not refused_in(run):
            settled = healed - timedelta(seconds=5)
            if all(start is not None and start < settled for _, _, start, _ in run.trail):
                assert run.status is RunStatus.SUCCEEDED and len(run.trail) == 3, run
            else:
                assert run.status is RunStatus.SUCCEEDED and len(run.trail) <= 3, run

    # The chat was told: a dead run's alert, each breaker with its buttons, the question.
    texts = [m for m in ada.messages if m.text]
    trips = [m for m in texts if "paused itself" in (m.text or "")]
    # One alert per tripped schedule: all the broken ones, and any other that a refused
    # connection cost three runs in a row (per policy, too).
    tripped = sorted(s.name for s in schedules.values() if s.tripped)
    assert sorted(m.text.split(" paused itself")[0][2:] for m in trips if m.text) == tripped
    assert {f"{name} #1" for name in DOOMED} <= set(tripped)
    assert all(m.button_labels() == ["Resume", "Run now", "History"] for m in trips)
    assert any("failed after 3 attempts" in (m.text or "") for m in texts)
    asked = [m for m in texts if "Did it do the work?" in (m.text or "")]
    assert asked and asked[0].button_labels() == ["Retry", "Mark done", "Drop"]

    # Isolation: the healthy schedules ran every fire on time, the slow and broken ones
    # beside them notwithstanding; refused connections were retried until they got in.
    healthy = by_kind["healthy"]
    lags = [lag.total_seconds() for r in healthy if (lag := r.lag) is not None]
    # A refused connection's retry can be in flight at the schedule's next fire: that fire
    # is then skipped by the default overlap policy, as it should be; nothing else is.
    skipped_at = _skipped_at(db_path)
    off = [
        r
        for r in healthy
        if (r.status is not RunStatus.SUCCEEDED or r.trigger != "schedule")
        and not _own_retry_was_running(r, skipped_at.get(r.id), healthy)
    ]
    assert not off, [(r.status, r.trigger, r.error, r.trail) for r in off]
    assert max(lags) <= ON_TIME.total_seconds(), sorted(lags)[-5:]
    refused = [r for r in healthy if refused_in(r)]
    assert refused and all(r.status is RunStatus.SUCCEEDED for r in refused)
    late = timedelta(minutes=1)  # the gate opens between two readings of the clock
    refused_at = [t[2] for r in runs for t in r.trail if t[1] == REFUSED]
    assert all(t and refused_from <= t <= refused_to + late for t in refused_at), refused_at
    # Connections break only where the gate cut them, while it was shut.
    broken_at = [t[3] for r in runs for t in r.trail if (t[1] or "").startswith(BROKE)]
    assert all(t and refused_from <= t <= refused_to + late for t in broken_at), broken_at
    # Overlap: the slow schedule's fires that found it busy were skipped with the reason;
    # the queued one ran every fire (none skipped), never two at once at the agent.
    skip = by_kind["slow, overlap skip"]
    assert any(r.status is RunStatus.SKIPPED and "overlap" in (r.error or "") for r in skip)
    queued = by_kind["slow, overlap queue"]
    assert not [r for r in queued if r.status is RunStatus.SKIPPED]
    assert all(r.status is RunStatus.SUCCEEDED for r in queued if not refused_in(r))
    queue_ids = {r.schedule_id for r in queued}
    at_agent = sorted(
        (d for d in agent.deliveries[:faults_until] if d.schedule_id in queue_ids),
        key=lambda d: d.received_at,
    )
    for before, after in itertools.pairwise(at_agent):
        # A slow answer still on its way when the gate cut every connection ended there.
        ended = before.answered_at
        if ended is None and before.received_at <= shut_at:
            ended = shut_at
        assert ended is not None and after.received_at >= ended, (before, after)

    faulty = {*DOOMED, "timeout, ask"}
    injected = sum(
        1
        for d in agent.deliveries[:faults_until]
        if kind_of[d.schedule_id] in faulty
        or (kind_of[d.schedule_id] == "fails twice" and d.status == 500)
    )
    refused_attempts = sum(1 for r in runs for _, e, *_ in r.trail if e == REFUSED)
    tally.add("faults injected", injected + refused_attempts)
    tally.add("agent faults: refused connections", refused_attempts)
    tally.add("agent faults: circuit breakers tripped", len(trips))
    tally.add("runs checked", acc.checked)
    tally.add("runs lost", len(acc.lost))
    tally.add("runs doubled", len(acc.doubled))
    tally.note(
        f"agent faults: {dict(kinds)}; healthy schedules started p50 "
        f"{statistics.median(lags):.1f} s, max {max(lags):.1f} s after their fire instant "
        f"(fake time, {SPEED}x); {acc.summary()}"
    )
    acc.assert_clean()
