"""Spend and volume control: the pure rule (scheduler/budgets.py) from a table, and the
rule as the engine store applies it in its claim, on SQLite and on PostgreSQL: the real
engine with a fake clock posting over loopback to the agent stub."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from scheduler.budgets import (
    BudgetKind,
    BudgetLimits,
    BudgetScope,
    BudgetUse,
    UseRow,
    doubled,
    use_report,
    verdict,
)
from scheduler.engine import Engine, EngineConfig
from scheduler.engine_store import BudgetPause
from scheduler.models import Action, Owner, PauseKind, Policies, RunStatus, SkipReason
from scheduler.service import BudgetChoice, ScheduleService, TriggerSpec
from storage.bundle import SqlStore
from storage.engine_store import CHAT_BUDGETS_EVERY
from tests import test_store_contract as contract

new_location = contract.new_location
location = contract.location
store = contract.store

RUNS_10 = Policies(budget_runs_per_week=10)
TOKENS_1K = Policies(budget_tokens_per_week=1000)
BOTH = Policies(budget_runs_per_week=10, budget_tokens_per_week=1000)


@pytest.mark.parametrize(
    ("policies", "use", "allowance", "pause", "spend", "reason"),
    [
        (Policies(), BudgetUse(10_000, 10**9), 0, False, False, None),
        (RUNS_10, BudgetUse(9, 0), 0, False, False, None),  # the 10th fire runs
        (RUNS_10, BudgetUse(10, 0), 0, True, False, "budget: 10 runs this week reached"),
        (RUNS_10, BudgetUse(10, 0), 1, False, True, None),  # Run once more
        (RUNS_10, BudgetUse(11, 0), 0, True, False, "budget: 10 runs this week reached"),
        (TOKENS_1K, BudgetUse(3, 999), 0, False, False, None),
        (TOKENS_1K, BudgetUse(3, 1000), 0, True, False, "budget: 1,000 tokens this week reached"),
        (BOTH, BudgetUse(10, 5000), 0, True, False, "budget: 10 runs this week reached"),
    ],
)
def test_verdict(
    policies: Policies,
    use: BudgetUse,
    allowance: int,
    pause: bool,
    spend: bool,
    reason: str | None,
) -> None:
    decided = verdict(policies, use, allowance)
    assert (decided.pause, decided.spend) == (pause, spend)
    if reason is not None:
        assert decided.reason == reason


def test_a_chats_budget_is_checked_after_the_schedules_own() -> None:
    chat = BudgetLimits(runs=50)
    decided = verdict(Policies(), BudgetUse(3, 0), 0, chat=chat, chat_use=BudgetUse(50, 0))
    assert decided.pause and decided.scope is BudgetScope.CHAT
    assert decided.reason == "chat budget: 50 runs this week reached"
    own = verdict(RUNS_10, BudgetUse(10, 0), 0, chat=chat, chat_use=BudgetUse(50, 0))
    assert own.scope is BudgetScope.SCHEDULE
    assert not verdict(Policies(), BudgetUse(), 0, chat=chat, chat_use=BudgetUse(49, 0)).pause


def test_raising_doubles_the_budget_reached_only() -> None:
    assert doubled(BudgetLimits(10, 1000), BudgetKind.RUNS) == BudgetLimits(20, 1000)
    assert doubled(BudgetLimits(10, 1000), BudgetKind.TOKENS) == BudgetLimits(10, 2000)
    assert doubled(BudgetLimits(None, 1000), BudgetKind.RUNS) is None


def test_use_is_summed_per_day_week_and_month_for_the_chat_and_each_schedule() -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    rows = [
        UseRow("a", now - timedelta(hours=2), 100),
        UseRow("a", now - timedelta(days=3), 50),
        UseRow("b", now - timedelta(days=20), 7),
    ]
    report = use_report(rows, now)
    assert report.chat == {
        "day": BudgetUse(1, 100),
        "week": BudgetUse(2, 150),
        "month": BudgetUse(3, 157),
    }
    assert report.by_schedule["a"]["week"] == BudgetUse(2, 150)
    assert "day" not in report.by_schedule["b"]


# --- in the store's claim, on both stores ---------------------------------------------------
CHAT = 4242
ADA = Owner(id=CHAT, first_name="Ada")
START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
HOURLY = TriggerSpec(kind="interval", every_seconds=3600, start_at=START + timedelta(hours=1))


class Notices:
    def __init__(self) -> None:
        self.over_budget: list[BudgetPause] = []

    async def run_finished(self, finished: object) -> None:
        pass

    async def schedule_tripped(self, finished: object) -> None:
        pass

    async def fires_missed(self, plan: object) -> None:
        pass

    async def runs_awaiting_approval(self, plan: object) -> None:
        pass

    async def schedule_quarantined(self, broken: object) -> None:
        pass

    async def schedule_over_budget(self, paused: BudgetPause) -> None:
        self.over_budget.append(paused)


@pytest.fixture
async def engine(
    store: SqlStore, clock: FakeClock, dispatcher: HttpAgentDispatcher
) -> AsyncIterator[tuple[Engine, Notices]]:
    notices = Notices()
    e = Engine(
        store.engine,
        clock,
        dispatcher,
        config=EngineConfig(),
        notifier=notices,
        rng=random.Random(7),
    )
    yield e, notices
    await e.shutdown()


async def hourly(service: ScheduleService, policies: Policies, name: str = "Report") -> str:
    schedule = await service.create_schedule(
        CHAT, ADA, name=name, trigger=HOURLY, action=Action(text="Go."), policies=policies
    )
    return schedule.id


async def tick(engine: Engine, clock: FakeClock, hour: int) -> None:
    await clock.set(START + timedelta(hours=1 + hour))
    await engine.run_until_idle()


async def test_the_claim_pauses_a_schedule_at_its_budget_and_skips_the_fire(
    store: SqlStore,
    clock: FakeClock,
    engine: tuple[Engine, Notices],
    agent_stub: AgentStub,
) -> None:
    e, notices = engine
    service = ScheduleService(store, clock, default_timezone="UTC")
    sid = await hourly(service, Policies(budget_runs_per_week=3))
    other = await hourly(service, Policies(), name="Unbudgeted")
    for hour in range(4):
        await tick(e, clock, hour)
    runs = list(reversed(await service.history(CHAT, sid)))
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * 3 + [RunStatus.SKIPPED]
    assert runs[-1].skip_reason is SkipReason.BUDGET
    assert runs[-1].error == "budget: 3 runs this week reached"
    paused = await service.get_schedule(CHAT, sid)
    assert paused.pause_kind is PauseKind.BUDGET and not paused.enabled
    assert [(p.schedule.id, p.kind, p.limit) for p in notices.over_budget] == [
        (sid, BudgetKind.RUNS, 3)
    ]
    # The schedule without a budget fires on.
    assert [r.status for r in await service.history(CHAT, other)] == [RunStatus.SUCCEEDED] * 4

    # Run once more: exactly one more, then paused again.
    stamp = int(paused.updated_at.timestamp())
    await service.budget_choice(CHAT, sid, BudgetChoice.ONCE, stamp=stamp, kind=BudgetKind.RUNS)
    await tick(e, clock, 4)
    await tick(e, clock, 5)
    runs = list(reversed(await service.history(CHAT, sid)))
    assert [r.status for r in runs][-2:] == [RunStatus.SUCCEEDED, RunStatus.SKIPPED]
    assert len(notices.over_budget) == 2
    # A week later the window has room again (after a resume).
    again = await service.get_schedule(CHAT, sid)
    await clock.set(START + timedelta(days=8))
    await service.budget_choice(
        CHAT, sid, BudgetChoice.RAISE, stamp=int(again.updated_at.timestamp()), kind=BudgetKind.RUNS
    )
    assert (await service.get_schedule(CHAT, sid)).policies.budget_runs_per_week == 6


async def test_a_chats_budget_pauses_the_schedule_whose_fire_reaches_it(
    store: SqlStore,
    clock: FakeClock,
    engine: tuple[Engine, Notices],
    agent_stub: AgentStub,
) -> None:
    e, notices = engine
    service = ScheduleService(store, clock, default_timezone="UTC")
    first = await hourly(service, Policies(), name="First")
    second = await hourly(service, Policies(), name="Second")
    await service.set_chat_budget(CHAT, 3, None)
    await clock.set(START + CHAT_BUDGETS_EVERY)  # engines read chat budgets every 30 s
    for hour in range(2):
        await tick(e, clock, hour)
    statuses = {
        sid: [r.status for r in await service.history(CHAT, sid)] for sid in (first, second)
    }
    # Two fires an hour, a budget of 3: the 4th fire is skipped and its schedule paused.
    assert sorted(len(v) for v in statuses.values()) == [2, 2]
    flat = [s for v in statuses.values() for s in v]
    assert flat.count(RunStatus.SUCCEEDED) == 3 and flat.count(RunStatus.SKIPPED) == 1
    [paused] = notices.over_budget
    assert paused.scope is BudgetScope.CHAT
    assert paused.schedule.pause_reason == "chat budget: 3 runs this week reached"
