"""Backfill: explicit, previewed, never doubling a fire instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from scheduler.engine import Engine, EngineConfig
from scheduler.errors import InvalidSchedule
from scheduler.models import Action, Owner, RunStatus, RunTrigger
from scheduler.service import ScheduleService, TriggerSpec
from storage.sqlite_store import SqliteStore

CHAT = 4242
ADA = Owner(id=CHAT, first_name="Ada")
DAILY_9 = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


async def daily(service: ScheduleService) -> str:
    schedule = await service.create_schedule(
        CHAT, ADA, name="Daily brief", trigger=DAILY_9, action=Action(text="Brief for {date}.")
    )
    return schedule.id


async def test_preview_counts_fires_and_existing(service: ScheduleService) -> None:
    sid = await daily(service)
    start, end = utc("2026-11-16T00:00:00+01:00"), utc("2026-11-20T23:59:59+01:00")
    preview = await service.backfill_preview(CHAT, sid, start, end)
    assert preview.instants == [utc(f"2026-11-{d}T09:00:00+01:00") for d in range(16, 21)]
    assert preview.existing == 0 and preview.missing == 5

    assert await service.backfill(CHAT, sid, start, end) == (5, 0)
    again = await service.backfill_preview(CHAT, sid, start, end)
    assert again.existing == 5 and again.missing == 0


async def test_backfill_twice_creates_nothing_the_second_time(
    service: ScheduleService, store: SqliteStore
) -> None:
    sid = await daily(service)
    start, end = utc("2026-11-10T00:00:00+00:00"), utc("2026-11-22T00:00:00+00:00")
    first = await service.backfill(CHAT, sid, start, end)
    second = await service.backfill(CHAT, sid, start, end)
    assert first == (12, 0)
    assert second == (0, 12)
    runs = await store.runs.list_for_chat(CHAT, schedule_id=sid, limit=100)
    assert len(runs) == 12
    assert all(r.trigger is RunTrigger.BACKFILL for r in runs)
    assert len({r.scheduled_for for r in runs}) == 12


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-11-20T00:00:00+00:00", "2026-11-10T00:00:00+00:00", "must start before"),
        ("2026-11-20T00:00:00+00:00", "2026-11-24T00:00:00+00:00", "past windows only"),
        ("2020-01-01T00:00:00+00:00", "2026-11-22T00:00:00+00:00", "more than 1000 fires"),
    ],
)
async def test_bad_ranges_are_refused_in_one_sentence(
    service: ScheduleService, start: str, end: str, message: str
) -> None:
    sid = await daily(service)
    with pytest.raises(InvalidSchedule, match=message):
        await service.backfill_preview(CHAT, sid, utc(start), utc(end))
    with pytest.raises(InvalidSchedule, match=message):
        await service.backfill(CHAT, sid, utc(start), utc(end))


async def test_engine_dispatches_backfilled_runs_with_their_own_keys(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
) -> None:
    sid = await daily(service)
    start, end = utc("2026-11-19T00:00:00+00:00"), utc("2026-11-21T23:00:00+00:00")
    assert await service.backfill(CHAT, sid, start, end) == (3, 0)
    engine = Engine(store.engine, clock, dispatcher, config=EngineConfig())
    await engine.run_until_idle()
    await clock.advance(timedelta(seconds=1))
    await engine.run_until_idle()
    await engine.shutdown()
    keys = sorted(r.headers["idempotency-key"] for r in agent_stub.requests)
    assert keys == [f"{sid}:2026-11-{d}T08:00:00Z" for d in (19, 20, 21)]
    runs = await store.runs.list_for_chat(CHAT, schedule_id=sid)
    assert {r.status for r in runs} == {RunStatus.SUCCEEDED}
    # A second backfill over the same range adds nothing and sends nothing.
    assert await service.backfill(CHAT, sid, start, end) == (0, 3)
