"""Work items over a real SQLite file: task fires, waiting and follow-ups, proof."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from scheduler.engine import Engine, EngineConfig
from scheduler.errors import InvalidState
from scheduler.models import Action, ActionKind, Owner
from scheduler.service import ScheduleService, TriggerSpec
from scheduler.work_item_model import WorkItemStatus
from scheduler.work_items import WorkItemService
from storage.export import export_files
from storage.sqlite_store import SqliteStore

CHAT = 4242
ADA = Owner(id=4242, first_name="Ada")
DAILY_9 = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")
ALL = list(WorkItemStatus)


@pytest.fixture
def items(store: SqliteStore, clock: FakeClock) -> WorkItemService:
    return WorkItemService(store.work_items, clock)


def engine(
    store: SqliteStore, clock: FakeClock, d: HttpAgentDispatcher, w: WorkItemService
) -> Engine:
    return Engine(store.engine, clock, d, config=EngineConfig(), tasks=w, rng=random.Random(7))


async def test_a_daily_task_makes_one_item_per_day_and_none_while_paused(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    items: WorkItemService,
) -> None:
    schedule = await service.create_schedule(
        CHAT,
        ADA,
        name="Backup",
        trigger=DAILY_9,
        action=Action(kind=ActionKind.TASK, text="Back up the mailing list", proof="link"),
    )
    eng = engine(store, clock, dispatcher, items)
    await clock.advance(timedelta(hours=1))  # 09:00 Berlin
    await eng.run_until_idle()
    made = await store.work_items.list_work_items(CHAT, ALL)
    assert [i.title for i in made] == ["Back up the mailing list"]
    assert made[0].proof is not None and made[0].proof.value == "link"

    # A second run the same day (run now, an hour later) makes no second item.
    await clock.advance(timedelta(hours=1))
    await service.run_now(CHAT, schedule.id)
    await eng.run_until_idle()
    assert len(await store.work_items.list_work_items(CHAT, ALL)) == 1
    first = made[0]
    await items.mark_waiting(
        first, "IT", clock.now() + timedelta(days=1), "asked for access", actor="ada"
    )

    # Paused for a week, then resumed: no items for the paused days.
    await service.pause(CHAT, schedule.id, by=ADA.id)
    await clock.advance(timedelta(days=7))
    await eng.run_until_idle()
    await service.resume(CHAT, schedule.id)
    await eng.run_until_idle()
    assert len(await store.work_items.list_work_items(CHAT, ALL)) == 1
    await clock.advance(timedelta(days=1))
    await eng.run_until_idle()
    after = await store.work_items.list_work_items(CHAT, ALL)
    assert len(after) == 2
    history = await items.history(first)
    assert [h.action for h in history] == ["created", "waiting for IT"]
    assert history[1].note == "asked for access"
    async with store.connection.read() as db:
        files = await export_files(db)
    assert files["work_items.jsonl"].count(b"\n") == 2
    assert files["work_item_history.jsonl"].count(b"\n") == 3


async def test_a_sponsor_follow_up_is_due_once_then_sent_then_received(
    clock: FakeClock, items: WorkItemService
) -> None:
    day = clock.now() + timedelta(days=3)
    item = await items.add_followup(CHAT, "Sponsor X about the invoice", day, actor="ada")
    assert item.status is WorkItemStatus.WAITING
    assert await items.due_followups(clock.now()) == []
    assert await items.next_followup() == day

    await clock.advance(timedelta(days=3))
    due = await items.due_followups(clock.now())
    assert [i.id for i in due] == [item.id]
    assert await items.mark_pinged(due[0], clock.now())
    assert not await items.mark_pinged(due[0], clock.now())
    assert await items.due_followups(clock.now()) == []
    today = await items.today(CHAT, clock.now(), "Europe/Berlin")
    assert [i.id for i in today.followups_due] == [item.id]

    current = await items.get(CHAT, item.id)
    sent = await items.followup_sent(current, clock.now() + timedelta(days=2), actor="ada")
    assert sent.status is WorkItemStatus.WAITING
    assert sent.follow_up_at == clock.now() + timedelta(days=2)
    today = await items.today(CHAT, clock.now(), "Europe/Berlin")
    assert today.followups_due == [] and [i.id for i in today.waiting] == [item.id]

    back = await items.response_received(sent, actor="ada")
    assert back.status is WorkItemStatus.TODO
    actions = [h.action for h in await items.history(back)]
    assert actions == ["follow-up created", "follow-up sent", "response received"]
    # Due today (the follow-up date); it stays open until done.
    today = await items.today(CHAT, clock.now(), "Europe/Berlin")
    assert [i.id for i in today.due_today] == [item.id]


async def test_done_is_refused_without_the_required_link(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    items: WorkItemService,
) -> None:
    schedule = await service.create_schedule(
        CHAT,
        ADA,
        name="Backup",
        trigger=DAILY_9,
        action=Action(kind=ActionKind.TASK, text="Back up", proof="link"),
    )
    assert await items.create_from_fire(schedule, clock.now(), "Back up")
    assert not await items.create_from_fire(schedule, clock.now() + timedelta(hours=1), "Again")
    (item,) = await store.work_items.list_work_items(CHAT, ALL)
    with pytest.raises(InvalidState, match="needs a link"):
        await items.done(item, actor="ada")
    with pytest.raises(InvalidState):
        await items.mark_waiting(item, "IT", clock.now() + timedelta(days=1), "", actor="ada")
    done = await items.done(item, "https://example.org/backup", actor="ada")
    assert done.status is WorkItemStatus.DONE
    with pytest.raises(InvalidState, match="already done"):
        await items.done(done, "https://x", actor="ada")


async def test_a_ping_claimed_from_a_stale_read_is_refused(
    clock: FakeClock, items: WorkItemService
) -> None:
    day = clock.now() + timedelta(days=1)
    item = await items.add_followup(CHAT, "Sponsor Y", day, actor="ada")
    await clock.advance(timedelta(days=1))
    [stale] = await items.due_followups(clock.now())
    # While the sweep was busy, the operator recorded "sent" with a date in 3 days.
    current = await items.get(CHAT, item.id)
    await items.followup_sent(current, clock.now() + timedelta(days=3), actor="ada")
    assert not await items.mark_pinged(stale, clock.now())  # no ping now...
    await clock.advance(timedelta(days=3))
    [due] = await items.due_followups(clock.now())  # ...but one on the new date
    assert await items.mark_pinged(due, clock.now())


async def test_an_undelivered_ping_is_given_back(clock: FakeClock, items: WorkItemService) -> None:
    item = await items.add_followup(
        CHAT, "Sponsor Z", clock.now() + timedelta(hours=1), actor="ada"
    )
    await clock.advance(timedelta(hours=1))
    [due] = await items.due_followups(clock.now())
    assert await items.mark_pinged(due, clock.now())
    await items.unmark_pinged(due, clock.now())  # Telegram did not take the message
    [again] = await items.due_followups(clock.now())
    assert again.id == item.id
