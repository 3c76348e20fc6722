"""Workflow templates and their bundles (issue 20, item 1), on SQLite and PostgreSQL,
driven by the real engine with a fake clock: one bundle per (template, anchor date)
however often a day's run repeats; a process killed between writing a bundle and its
steps leaves it to the next start, which finishes it once (or, when it cannot, tells
the chat which template and date); a paused template makes nothing for the paused days;
a backfill window reports what it created and skipped and never makes one twice."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from scheduler.bundle_model import BundleStatus
from scheduler.bundles import BundleService, step_schedule_id
from scheduler.engine import Engine
from scheduler.errors import InvalidSchedule, InvalidState
from scheduler.models import Action, ActionKind, Owner, RunStatus, Schedule, Step, StepKind
from scheduler.service import LifecycleFires, ScheduleService, TriggerSpec
from scheduler.work_items import WorkItemService
from storage.bundle import SqlStore
from storage.export import export_database, import_export, validate_export
from storage.locations import Location, is_postgres, open_store
from tests.test_store_contract import KINDS, location_maker

CHAT = 4242
ADA = Owner(id=CHAT, first_name="Ada")
#: Monday 23 November 2026, 08:00 UTC: 09:00 in Berlin, the template's fire.
FIRE = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent

NEWSLETTER = Action(
    kind=ActionKind.BUNDLE,
    lead_days=7,
    steps=(
        Step(kind=StepKind.TASK, title="Collect links", offset_days=-6, proof="note"),
        Step(
            kind=StepKind.TASK,
            title="Send draft to sponsor",
            instructions="The sponsor block goes first.",
            assignee="Ada",
            offset_days=-2,
            proof="link",
        ),
        Step(
            kind=StepKind.AGENT, title="Intro", text="Draft the intro for {date}.", offset_days=-1
        ),
    ),
)


@pytest.fixture(params=KINDS)
def location(request: pytest.FixtureRequest) -> Location:
    return location_maker(request, request.param)()


@dataclass
class Stack:
    """One process's services over the store under test."""

    store: SqlStore
    clock: FakeClock
    service: ScheduleService
    work_items: WorkItemService
    bundles: BundleService
    dispatcher: HttpAgentDispatcher

    def engine(self) -> Engine:
        return Engine(
            self.store.engine,
            self.clock,
            self.dispatcher,
            tasks=self.work_items,
            bundles=self.bundles,
        )

    async def run_engine(self) -> None:
        engine = self.engine()
        await engine.run_until_idle()
        await engine.shutdown()

    async def template(self, cron: str = "0 9 * * *") -> Schedule:
        return await self.service.create_schedule(
            CHAT,
            ADA,
            name="Weekly newsletter",
            trigger=TriggerSpec(kind="cron", cron=cron, timezone="Europe/Berlin"),
            action=NEWSLETTER,
        )

    async def anchors(self) -> list[date]:
        statuses = list(BundleStatus)
        return [b.anchor_date for b in await self.store.bundles.list_bundles(CHAT, statuses)]


def stack_on(store: SqlStore, clock: FakeClock, dispatcher: HttpAgentDispatcher) -> Stack:
    work_items = WorkItemService(store.work_items, clock)
    return Stack(
        store,
        clock,
        ScheduleService(store, clock, default_timezone="Europe/Berlin"),
        work_items,
        BundleService(store, clock, work_items),
        dispatcher,
    )


@pytest.fixture
async def stack(location: Location, dispatcher: HttpAgentDispatcher) -> AsyncIterator[Stack]:
    store = await open_store(location)
    yield stack_on(store, FakeClock(FIRE - timedelta(hours=1)), dispatcher)
    await store.close()


async def test_a_daily_template_run_twice_on_one_day_makes_one_bundle(stack: Stack) -> None:
    template = await stack.template()
    await stack.clock.set(FIRE)
    await stack.run_engine()
    # Run by hand twice the same afternoon: the same anchor date, so nothing new.
    await stack.clock.set(FIRE + timedelta(hours=6))
    for _ in range(2):
        await stack.service.run_now(CHAT, template.id)
        await stack.run_engine()
        await stack.clock.advance(timedelta(minutes=1))

    assert await stack.anchors() == [date(2026, 11, 30)]
    [bundle] = await stack.store.bundles.list_bundles(CHAT, [BundleStatus.ACTIVE])
    runs = sorted(await stack.service.history(CHAT, template.id), key=lambda r: r.created_at)
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * 3
    assert runs[0].output == (
        f"New bundle 'Weekly newsletter' for 2026-11-30: 3 steps (/bundle {bundle.id})."
    )
    assert (
        runs[1].output
        == runs[2].output
        == (f"The bundle 'Weekly newsletter' for 2026-11-30 exists already (/bundle {bundle.id}).")
    )
    # Task steps are work items due on anchor + offset at the template's 09:00 (Berlin).
    items = await stack.store.bundles.bundle_items(bundle.id)
    assert [(i.bundle_step, i.title, i.due_at.isoformat(), i.proof) for i in items] == [
        (1, "Collect links", "2026-11-24T08:00:00+00:00", "note"),
        (2, "Send draft to sponsor", "2026-11-28T08:00:00+00:00", "link"),
    ]
    # The prompt step is a one-time agent schedule at its instant.
    prompt = await stack.store.schedules.get(CHAT, step_schedule_id(bundle.id, 3))
    assert prompt is not None and prompt.next_run_at == datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    assert prompt.action.text == "Draft the intro for {date}."


async def test_the_prompt_step_fires_once_at_its_instant(stack: Stack) -> None:
    await stack.template(cron="0 9 23 11 *")  # this one day only
    await stack.clock.set(FIRE)
    await stack.run_engine()
    [bundle] = await stack.store.bundles.list_bundles(CHAT, [BundleStatus.ACTIVE])
    sid = step_schedule_id(bundle.id, 3)
    await stack.clock.set(datetime(2026, 11, 29, 8, 0, tzinfo=UTC))
    await stack.run_engine()
    await stack.clock.advance(timedelta(days=1))
    await stack.run_engine()
    runs = await stack.service.history(CHAT, sid)
    assert [(r.status, r.scheduled_for.isoformat()) for r in runs] == [
        (RunStatus.SUCCEEDED, "2026-11-29T08:00:00+00:00")
    ]


async def test_a_prompt_step_that_ran_leaves_the_schedule_list_but_not_its_bundle(
    stack: Stack,
) -> None:
    """A year of weekly bundles must not fill /schedules and the chat's schedule limit
    with one-time prompt steps that already ran; the card still shows the step's run,
    and the bundle is done once its last step is."""
    template = await stack.template(cron="0 9 23 11 *")
    await stack.clock.set(FIRE)
    await stack.run_engine()
    [bundle] = await stack.store.bundles.list_bundles(CHAT, [BundleStatus.ACTIVE])
    sid = step_schedule_id(bundle.id, 3)
    listed = [s.id for s in await stack.service.list_schedules(CHAT)]
    assert listed == [template.id, sid]
    await stack.bundles.complete_step(CHAT, bundle.id, 1, actor="ada", proof="collected")
    await stack.bundles.complete_step(
        CHAT, bundle.id, 2, actor="ada", proof="https://example.com/draft"
    )

    engine = stack.engine()
    engine.lifecycle = LifecycleFires(
        stack.service, [CHAT], step_finished=stack.bundles.step_finished
    )
    await stack.clock.set(datetime(2026, 11, 29, 8, 0, tzinfo=UTC))
    await engine.run_until_idle()
    await engine.shutdown()
    assert [s.id for s in await stack.service.list_schedules(CHAT)] == [template.id]
    assert await stack.store.schedules.count_active(CHAT) == 1
    [done] = await stack.store.bundles.list_bundles(CHAT, [BundleStatus.DONE])
    assert done.id == bundle.id
    card = await stack.bundles.card(CHAT, bundle.id)
    step = card.step(3)
    assert step.settled and not step.dropped
    assert step.run is not None and step.run.status is RunStatus.SUCCEEDED


async def test_a_process_killed_between_the_bundle_and_its_steps_is_finished_once_at_the_next_start(
    location: Location, stack: Stack
) -> None:
    template = await stack.template()
    await stack.clock.set(FIRE)
    crashed = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "tests.bundle_crash",
            str(location),
            str(CHAT),
            template.id,
            FIRE.isoformat(),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert crashed.returncode == -9, crashed.stderr
    # Killed: the bundle is written, half made, with none of its steps.
    [bundle] = await stack.store.bundles.list_bundles(CHAT, list(BundleStatus))
    assert bundle.status is BundleStatus.INSTANTIATING
    assert await stack.store.bundles.bundle_items(bundle.id) == []
    assert await stack.store.schedules.get(CHAT, step_schedule_id(bundle.id, 3)) is None

    # The next start finishes it, from its snapshot; a second start changes nothing.
    for _ in range(2):
        engine = stack.engine()
        await engine.startup()
        await engine.shutdown()
    [finished] = await stack.store.bundles.list_bundles(CHAT, list(BundleStatus))
    assert (finished.id, finished.status) == (bundle.id, BundleStatus.ACTIVE)
    items = await stack.store.bundles.bundle_items(bundle.id)
    assert [i.bundle_step for i in items] == [1, 2]
    assert await stack.store.schedules.get(CHAT, step_schedule_id(bundle.id, 3)) is not None
    # The day's fire, run now, finds it made.
    await stack.run_engine()
    [run] = await stack.service.history(CHAT, template.id)
    assert run.output is not None and "exists already" in run.output
    assert len(await stack.store.bundles.bundle_items(bundle.id)) == 2
    assert await stack.anchors() == [date(2026, 11, 30)]


async def test_a_half_made_bundle_that_cannot_be_finished_tells_the_chat_once(
    location: Location, stack: Stack
) -> None:
    template = await stack.template()

    async def crash(_: object) -> None:
        raise RuntimeError("crash")

    crashing = BundleService(stack.store, stack.clock, stack.work_items, between_phases=crash)
    with pytest.raises(RuntimeError):
        await crashing.create_from_fire(template, FIRE)
    # Its snapshot damaged meanwhile (a hand edit): it cannot be finished.
    await _sql(location, "UPDATE bundles SET snapshot_json = '{\"steps\": 3}'")
    for _ in range(2):
        assert await stack.bundles.reconcile() == 0
    [bundle] = await stack.store.bundles.list_bundles(CHAT, list(BundleStatus))
    assert bundle.status is BundleStatus.FAILED
    notices = await stack.store.outbox.pending(CHAT, 10)
    assert [n.text for n in notices] == [
        "⚠️ Automation failure: the bundle of template 'Weekly newsletter' for 2026-11-30 "
        f"could not be made ({bundle.error}). Its steps were not created; check the "
        f"template, then /backfill {template.ref} 2026-11-23 2026-11-23 makes it again."
    ]
    # What the notice says to do makes it, once, from the template as it is now.
    await stack.clock.set(FIRE + timedelta(hours=1))
    fire_day = date(2026, 11, 23)
    preview = await stack.bundles.backfill(template, fire_day, fire_day, preview=True)
    assert (preview.created, preview.skipped) == (1, 0)
    done = await stack.bundles.backfill(template, fire_day, fire_day)
    assert (done.created, done.skipped) == (1, 0)
    [remade] = await stack.store.bundles.list_bundles(CHAT, list(BundleStatus))
    assert (remade.id, remade.status) == (bundle.id, BundleStatus.ACTIVE)
    assert [i.bundle_step for i in await stack.store.bundles.bundle_items(bundle.id)] == [1, 2]
    again = await stack.bundles.backfill(template, fire_day, fire_day)
    assert (again.created, again.skipped) == (0, 1)


async def test_a_paused_template_makes_no_bundles_for_its_paused_days(stack: Stack) -> None:
    template = await stack.template()
    await stack.clock.set(FIRE)
    await stack.run_engine()
    await stack.service.pause(CHAT, template.id, by=CHAT, reason="holiday")
    for _ in range(3):
        await stack.clock.advance(timedelta(days=1))
        await stack.run_engine()
    await stack.clock.advance(timedelta(hours=2))  # 26 Nov, after its 09:00
    resumed = await stack.service.resume(CHAT, template.id)
    assert resumed.skipped_while_paused == 3
    await stack.run_engine()
    assert await stack.anchors() == [date(2026, 11, 30)]
    # The next fire after the resume makes its bundle.
    await stack.clock.set(FIRE + timedelta(days=4))
    await stack.run_engine()
    assert await stack.anchors() == [date(2026, 11, 30), date(2026, 12, 4)]


async def test_a_backfill_window_reports_created_and_skipped_and_never_duplicates(
    stack: Stack,
) -> None:
    template = await stack.template()
    await stack.clock.set(FIRE + timedelta(days=4, hours=1))  # 27 Nov, 10:00 in Berlin
    first = await stack.bundles.backfill(template, date(2026, 11, 23), date(2026, 11, 25))
    assert (first.created, first.skipped) == (3, 0)
    again = await stack.bundles.backfill(template, date(2026, 11, 23), date(2026, 11, 25))
    assert (again.created, again.skipped) == (0, 3)
    preview = await stack.bundles.backfill(
        template, date(2026, 11, 24), date(2026, 11, 27), preview=True
    )
    assert (preview.created, preview.skipped) == (2, 2)
    wider = await stack.bundles.backfill(template, date(2026, 11, 24), date(2026, 11, 27))
    assert (wider.created, wider.skipped) == (2, 2)
    assert wider.anchors == [date(2026, 12, d) for d in (1, 2, 3, 4)]
    assert await stack.anchors() == [date(2026, 11, 30) + timedelta(days=d) for d in range(5)]
    for bundle in await stack.store.bundles.list_bundles(CHAT, [BundleStatus.ACTIVE]):
        assert len(await stack.store.bundles.bundle_items(bundle.id)) == 2
    with pytest.raises(InvalidState, match="past days only"):
        await stack.bundles.backfill(template, date(2026, 11, 27), date(2026, 11, 28))


async def test_completing_a_step_is_refused_while_its_proof_is_missing(stack: Stack) -> None:
    template = await stack.template()
    await stack.clock.set(FIRE)
    await stack.bundles.create_from_fire(template, FIRE)
    [bundle] = await stack.store.bundles.list_bundles(CHAT, [BundleStatus.ACTIVE])
    card = await stack.bundles.card(CHAT, bundle.id)
    item = card.step(2).item
    assert item is not None
    with pytest.raises(InvalidState) as refused:
        await stack.bundles.complete_step(CHAT, bundle.id, 2, actor="ada")
    assert str(refused.value) == (
        f"Step 2 'Send draft to sponsor' needs a link as proof; send /done {item.id} https://…"
    )
    assert [s.number for s in card.missing_proof] == [1, 2]
    await stack.work_items.attach_proof(item, "https://docs.example/draft", actor="ada")
    card = await stack.bundles.complete_step(CHAT, bundle.id, 2, actor="ada")
    assert card.step(2).settled and [s.number for s in card.missing_proof] == [1]


async def _sql(location: Location, statement: str) -> None:
    """A change made around Tickler (a hand edit), straight to the database."""
    if is_postgres(location):
        raw = await asyncpg.connect(str(location))
        try:
            await raw.execute(statement)
        finally:
            await raw.close()
        return
    with sqlite3.connect(location) as db:
        db.execute(statement)


async def test_bundles_export_validate_and_import_with_their_template_and_steps(
    location: Location, stack: Stack, tmp_path: Path
) -> None:
    template = await stack.template()
    await stack.clock.set(FIRE)
    await stack.run_engine()
    [bundle] = await stack.store.bundles.list_bundles(CHAT, [BundleStatus.ACTIVE])
    await stack.bundles.complete_step(CHAT, bundle.id, 1, actor="ada", proof="links collected")
    out = tmp_path / "export"
    await export_database(location, out)
    assert validate_export(out) == []
    [line] = read_jsonl(out / "bundles.jsonl")
    assert (line["id"], line["template_id"], line["anchor_date"], line["status"]) == (
        bundle.id,
        template.id,
        "2026-11-30",
        "active",
    )
    steps = [i for i in read_jsonl(out / "work_items.jsonl") if i["bundle_id"] == bundle.id]
    assert [(i["bundle_step"], i["status"]) for i in steps] == [(1, "done"), (2, "todo")]
    assert any(
        s["id"] == step_schedule_id(bundle.id, 3) for s in read_jsonl(out / "schedules.jsonl")
    )

    copy = tmp_path / "copy.db"
    await import_export(out, copy)
    again = tmp_path / "again"
    await export_database(copy, again)
    for name in ("bundles.jsonl", "work_items.jsonl", "schedules.jsonl"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name

    # A step that is the bundle's prompt, and a bundle of a plain schedule, are refused.
    rows = read_jsonl(out / "work_items.jsonl")
    for row in rows:
        if row["bundle_step"] == 2:
            row["bundle_step"] = 3
    write_jsonl(out / "work_items.jsonl", rows)
    problems = validate_export(out)
    assert len(problems) == 1 and problems[0].endswith(
        f"bundle_step 3 is not a task step of bundle '{bundle.id}' (it has 3 steps)."
    )
    schedules = read_jsonl(out / "schedules.jsonl")
    for schedule in schedules:
        if schedule["id"] == step_schedule_id(bundle.id, 3):
            schedule["id"] = step_schedule_id(bundle.id, 1)
    write_jsonl(out / "schedules.jsonl", schedules)
    wrong = (
        f": '{step_schedule_id(bundle.id, 1)}' names step 1 of bundle '{bundle.id}', which "
        "is not one of its agent steps."
    )
    assert any(p.startswith("schedules.jsonl:") and p.endswith(wrong) for p in validate_export(out))
    bundles_rows = read_jsonl(out / "bundles.jsonl")
    bundles_rows[0]["template_id"] = step_schedule_id(bundle.id, 1)
    write_jsonl(out / "bundles.jsonl", bundles_rows)
    problems = validate_export(out)
    assert (
        f"bundles.jsonl:1: its template '{step_schedule_id(bundle.id, 1)}' is not a workflow "
        "template (its action kind is agent, not bundle)."
    ) in problems


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


async def test_a_template_stays_a_template_so_its_bundles_keep_their_template(
    stack: Stack,
) -> None:
    template = await stack.template()
    with pytest.raises(InvalidSchedule, match="is a workflow template and stays one"):
        await stack.service.update_schedule(CHAT, template.id, action=Action(text="Just ask."))
    unchanged = await stack.service.get_schedule(CHAT, template.id)
    assert unchanged.action == NEWSLETTER
    # Its steps may change: the next bundles are made from them.
    fewer = NEWSLETTER.model_copy(update={"steps": NEWSLETTER.steps[:1]})
    changed = await stack.service.update_schedule(CHAT, template.id, action=fewer)
    assert changed.action.steps == fewer.steps


async def test_a_backfilled_bundle_records_its_past_prompt_as_missed_instead_of_sending_it(
    stack: Stack, agent_stub: AgentStub
) -> None:
    """Backfilling last month must not send the agent a month of stale prompts at once;
    a prompt step due after its bundle was made still goes out when its time comes."""
    template = await stack.template()
    await stack.clock.set(datetime(2026, 12, 20, 12, 0, tzinfo=UTC))
    made = await stack.bundles.backfill(template, date(2026, 11, 23), date(2026, 11, 23))
    assert made.created == 1
    [old] = await stack.store.bundles.list_bundles(CHAT, [BundleStatus.ACTIVE])
    await stack.run_engine()
    assert agent_stub.requests == []
    [missed] = await stack.store.runs.list_for_chat(CHAT, schedule_id=step_schedule_id(old.id, 3))
    assert missed.status is RunStatus.SKIPPED
    assert missed.scheduled_for == datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    card = await stack.bundles.card(CHAT, old.id)
    assert card.step(3).settled


async def test_a_bundle_is_done_when_its_last_step_is_done_by_command(stack: Stack) -> None:
    """/done on the last open step (the work-item service, not the card) makes the
    bundle done in the store at once: exports and the API see it without a card read."""
    await stack.template(cron="0 9 23 11 *")
    await stack.clock.set(FIRE)
    await stack.run_engine()
    [bundle] = await stack.store.bundles.list_bundles(CHAT, [BundleStatus.ACTIVE])
    engine = stack.engine()
    engine.lifecycle = LifecycleFires(
        stack.service, [CHAT], step_finished=stack.bundles.step_finished
    )
    await stack.clock.set(datetime(2026, 11, 29, 8, 0, tzinfo=UTC))
    await engine.run_until_idle()
    await engine.shutdown()
    first, second = await stack.store.bundles.bundle_items(bundle.id)
    await stack.work_items.done(first, "links collected", actor="ada")
    assert await stack.store.bundles.list_bundles(CHAT, [BundleStatus.DONE]) == []
    await stack.work_items.done(second, "https://example.com/draft", actor="ada")
    [done] = await stack.store.bundles.list_bundles(CHAT, [BundleStatus.DONE])
    assert done.id == bundle.id and done.completed_at == stack.clock.now()
