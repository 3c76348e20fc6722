"""The agent's proposals over a real SQLite file (scheduler/proposals.py): each tier does
what the policy says, every decision applies once, refusals are recorded, one chat
never reaches another's proposals; and runs that wait for approval are skipped at
their deadline (the engine store's `expire_approvals`)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import storage.proposals
import storage.runs
import storage.schedules
from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from scheduler.agent_tools import TOOLS, AgentTools
from scheduler.engine import Engine
from scheduler.errors import InvalidSchedule, InvalidState, ProposalNotFound
from scheduler.models import (
    AWAITING_APPROVAL_REASON,
    Action,
    ActionKind,
    CreatedBy,
    Owner,
    PauseKind,
    Policies,
    RiskTier,
    RunStatus,
    Schedule,
)
from scheduler.proposals import (
    Proposal,
    ProposalRequest,
    ProposalService,
    ProposalStatus,
)
from scheduler.repositories import ScheduleChange
from scheduler.risk import RiskDecision
from scheduler.service import Limits, ScheduleService, TriggerSpec
from storage.sqlite_store import SqliteStore
from tests.engine_calls import next_due_at

CHAT, OTHER, ADMIN = 77, 88, 1001
DAILY_9 = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")
TWICE_A_DAY = TriggerSpec(kind="cron", cron="0 9,17 * * *", timezone="Europe/Berlin")
HALF_HOURLY = TriggerSpec(kind="cron", cron="*/30 * * * *", timezone="Europe/Berlin")


def ask(
    trigger: TriggerSpec = DAILY_9,
    *,
    name: str = "Daily brief",
    kind: ActionKind = ActionKind.AGENT,
    hint: RiskTier | None = None,
    text: str = "Prepare my brief.",
) -> ProposalRequest:
    return ProposalRequest(
        name=name,
        trigger=trigger,
        action=Action(kind=kind, text=text),
        reason="You asked for a morning brief.",
        risk_hint=hint,
    )


class Announcements:
    def __init__(self) -> None:
        self.seen: list[tuple[Proposal, RiskDecision]] = []

    async def __call__(self, proposal: Proposal, decision: RiskDecision) -> None:
        self.seen.append((proposal, decision))


@pytest.fixture
def announced() -> Announcements:
    return Announcements()


@pytest.fixture
def proposals(
    service: ScheduleService, store: SqliteStore, clock: FakeClock, announced: Announcements
) -> ProposalService:
    return ProposalService(service, store, clock, on_proposal=announced)


# --- the tiers ------------------------------------------------------------------------------
async def test_a_low_proposal_is_active_at_once_and_undo_archives_it(
    proposals: ProposalService,
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    announced: Announcements,
) -> None:
    proposal = await proposals.propose(CHAT, ask(), proposed_by="api")
    assert (proposal.tier, proposal.status) == (RiskTier.LOW, ProposalStatus.ACTIVE)
    assert (proposal.proposed_by, proposal.decided_by) == ("api", None)
    assert proposal.decided_at == clock.now() and proposal.expires_at is None
    assert proposal.schedule_id is not None
    schedule = await service.get_schedule(CHAT, proposal.schedule_id)
    assert schedule.enabled and schedule.created_by is CreatedBy.AGENT
    assert schedule.owner == Owner(id=CHAT, first_name="Agent")
    assert schedule.policies.risk_tier is RiskTier.LOW
    assert schedule.description == "You asked for a morning brief."
    [(told, decision)] = announced.seen
    assert told == proposal and decision.tier is RiskTier.LOW and decision.runs_per_week == 7
    assert await store.proposals.get(CHAT, proposal.id) == proposal

    undone = await proposals.undo(CHAT, proposal.id, by=ADMIN)
    assert (undone.status, undone.decided_by) == (ProposalStatus.UNDONE, ADMIN)
    assert await service.list_schedules(CHAT) == []
    with pytest.raises(InvalidState, match=r"^That proposal is already undone\.$"):
        await proposals.undo(CHAT, proposal.id, by=ADMIN)
    with pytest.raises(InvalidState, match=r"^That proposal is already undone\.$"):
        await proposals.approve(CHAT, proposal.id, by=ADMIN)


async def test_a_medium_proposal_waits_paused_and_approve_resumes_it_once(
    proposals: ProposalService, service: ScheduleService, clock: FakeClock
) -> None:
    proposal = await proposals.propose(CHAT, ask(TWICE_A_DAY), proposed_by="agent:chat")
    assert (proposal.tier, proposal.status) == (RiskTier.MEDIUM, ProposalStatus.PENDING)
    assert proposal.expires_at is None  # only high proposals expire
    assert proposal.schedule_id is not None
    paused = await service.get_schedule(CHAT, proposal.schedule_id)
    assert not paused.enabled and paused.pause_reason == AWAITING_APPROVAL_REASON
    assert paused.policies.risk_tier is RiskTier.MEDIUM

    await clock.advance(timedelta(minutes=5))
    approved = await proposals.approve(CHAT, proposal.id, by=ADMIN)
    assert (approved.status, approved.decided_by) == (ProposalStatus.ACTIVE, ADMIN)
    assert approved.decided_at == clock.now()
    assert (await service.get_schedule(CHAT, proposal.schedule_id)).enabled
    for decide in (proposals.approve, proposals.reject):
        with pytest.raises(InvalidState, match=r"^That proposal is already approved\.$"):
            await decide(CHAT, proposal.id, by=ADMIN)
    assert len(await service.list_schedules(CHAT)) == 1


async def test_rejecting_a_medium_proposal_archives_its_schedule(
    proposals: ProposalService, service: ScheduleService, store: SqliteStore
) -> None:
    proposal = await proposals.propose(CHAT, ask(TWICE_A_DAY), proposed_by="api")
    rejected = await proposals.reject(CHAT, proposal.id, by=ADMIN)
    assert (rejected.status, rejected.decided_by) == (ProposalStatus.REJECTED, ADMIN)
    assert await service.list_schedules(CHAT) == []
    [archived] = await store.schedules.list_for_chat(CHAT, include_archived=True)
    assert archived.archived_at is not None
    with pytest.raises(InvalidState, match=r"^That proposal is already rejected\.$"):
        await proposals.approve(CHAT, proposal.id, by=ADMIN)


async def test_a_high_proposal_creates_nothing_until_approved(
    proposals: ProposalService, service: ScheduleService, clock: FakeClock
) -> None:
    proposal = await proposals.propose(CHAT, ask(HALF_HOURLY), proposed_by="api")
    assert (proposal.tier, proposal.status) == (RiskTier.HIGH, ProposalStatus.PENDING)
    assert proposal.schedule_id is None
    assert proposal.expires_at == clock.now() + timedelta(hours=72)
    assert await service.list_schedules(CHAT) == []

    approved = await proposals.approve(CHAT, proposal.id, by=ADMIN)
    [schedule] = await service.list_schedules(CHAT)
    assert approved.schedule_id == schedule.id and schedule.enabled
    assert schedule.policies.risk_tier is RiskTier.HIGH


async def test_two_approvals_at_once_create_one_schedule(
    proposals: ProposalService, service: ScheduleService
) -> None:
    proposal = await proposals.propose(CHAT, ask(HALF_HOURLY), proposed_by="api")
    results = await asyncio.gather(
        *(proposals.approve(CHAT, proposal.id, by=ADMIN) for _ in range(3)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Proposal) for r in results) == 1
    assert sum(isinstance(r, InvalidState) for r in results) == 2
    assert len(await service.list_schedules(CHAT)) == 1


async def test_the_hint_raises_the_tier(proposals: ProposalService) -> None:
    proposal = await proposals.propose(CHAT, ask(hint=RiskTier.HIGH), proposed_by="api")
    assert (proposal.tier, proposal.schedule_id) == (RiskTier.HIGH, None)


# --- expiry -----------------------------------------------------------------------------------
async def test_a_high_proposal_expires_after_72_hours(
    proposals: ProposalService, service: ScheduleService, store: SqliteStore, clock: FakeClock
) -> None:
    proposal = await proposals.propose(CHAT, ask(HALF_HOURLY), proposed_by="api")
    medium = await proposals.propose(CHAT, ask(TWICE_A_DAY, name="Twice"), proposed_by="api")
    assert await proposals.next_expiry() == proposal.expires_at
    await clock.advance(timedelta(hours=71))
    assert await proposals.expire_due(clock.now()) == []

    await clock.advance(timedelta(hours=2))
    [expired] = await proposals.expire_due(clock.now())
    assert (expired.id, expired.status) == (proposal.id, ProposalStatus.EXPIRED)
    assert expired.decided_by is None and expired.decided_at == clock.now()
    assert await proposals.expire_due(clock.now()) == []
    assert await proposals.next_expiry() is None
    with pytest.raises(InvalidState, match=r"^That proposal is already expired\.$"):
        await proposals.approve(CHAT, proposal.id, by=ADMIN)
    # The medium one is still waiting, paused.
    assert (await proposals.get(CHAT, medium.id)).status is ProposalStatus.PENDING
    assert [s.name for s in await service.list_schedules(CHAT)] == ["Twice"]


async def test_approving_after_the_deadline_expires_it_even_before_the_sweep(
    proposals: ProposalService, service: ScheduleService, clock: FakeClock
) -> None:
    proposal = await proposals.propose(CHAT, ask(HALF_HOURLY), proposed_by="api")
    await clock.advance(timedelta(hours=73))
    with pytest.raises(InvalidState, match=r"^That proposal is already expired\.$"):
        await proposals.approve(CHAT, proposal.id, by=ADMIN)
    assert (await proposals.get(CHAT, proposal.id)).status is ProposalStatus.EXPIRED
    assert await service.list_schedules(CHAT) == []
    assert await proposals.expire_due(clock.now()) == []


# --- refusals ---------------------------------------------------------------------------------
async def test_beyond_the_limits_is_refused_and_recorded(
    store: SqliteStore, clock: FakeClock, announced: Announcements
) -> None:
    service = ScheduleService(
        store, clock, default_timezone="Europe/Berlin", limits=Limits(max_schedules_per_chat=1)
    )
    proposals = ProposalService(service, store, clock, on_proposal=announced)
    await proposals.propose(CHAT, ask(kind=ActionKind.REMINDER), proposed_by="api")
    sentence = "This chat already has 1 schedules, the limit; archive one with /delete first."
    second = ask(kind=ActionKind.REMINDER, text="Stand up.")
    with pytest.raises(InvalidSchedule) as caught:
        await proposals.propose(CHAT, second, proposed_by="api")
    assert str(caught.value) == sentence
    refused, _ = await store.proposals.list_for_chat(CHAT)
    assert (refused.status, refused.refusal) == (ProposalStatus.REFUSED, sentence)
    assert refused.tier is RiskTier.LOW  # refused whatever the tier
    assert len(await service.list_schedules(CHAT)) == 1
    assert len(announced.seen) == 1  # only the accepted one was announced


async def test_an_identical_proposal_names_the_original_and_is_not_added_twice(
    proposals: ProposalService,
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    announced: Announcements,
) -> None:
    first = await proposals.propose(CHAT, ask(), proposed_by="api")
    with pytest.raises(InvalidState) as caught:
        await proposals.propose(CHAT, ask(name="Brief again"), proposed_by="agent:chat")
    assert str(caught.value) == (
        f"It matches the existing schedule 'Daily brief' ({first.schedule_id}), so it was "
        "not added again."
    )
    every_hour = TriggerSpec(kind="interval", every_seconds=3600)
    waiting = await proposals.propose(CHAT, ask(every_hour, hint=RiskTier.HIGH), proposed_by="api")
    await clock.advance(timedelta(minutes=5))  # a later start: still the same interval
    with pytest.raises(InvalidState) as caught:
        await proposals.propose(CHAT, ask(every_hour, hint=RiskTier.HIGH), proposed_by="api")
    assert str(caught.value) == (
        f"It matches the proposal 'Daily brief' ({waiting.id}) that is waiting for "
        "approval, so it was not added again."
    )
    # The same time with another prompt, or in another chat, is another schedule.
    await proposals.propose(CHAT, ask(text="Prepare my other brief."), proposed_by="api")
    await proposals.propose(OTHER, ask(), proposed_by="api")
    assert len(await store.proposals.list_for_chat(CHAT)) == 3
    assert len(await service.list_schedules(CHAT)) == 2
    assert len(announced.seen) == 4


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        (ask(name="   "), "Give the schedule a name."),
        (ask(text="Brief for {dat}"), "Unknown placeholder {dat}"),
        (ask(TriggerSpec(kind="cron", cron="0 9 L * *")), "five fields"),
        (ask(HALF_HOURLY, text="x" * 4001), "limit is 4000"),
    ],
)
async def test_invalid_proposals_are_refused_and_recorded(
    proposals: ProposalService,
    store: SqliteStore,
    request_: ProposalRequest,
    fragment: str,
) -> None:
    with pytest.raises(InvalidSchedule, match=fragment):
        await proposals.propose(CHAT, request_, proposed_by="api")
    [refused] = await store.proposals.list_for_chat(CHAT)
    assert refused.status is ProposalStatus.REFUSED and fragment in (refused.refusal or "")
    assert await store.schedules.list_for_chat(CHAT, include_archived=True) == []


async def test_an_approval_that_comes_too_late_for_a_one_time_run_refuses_it(
    proposals: ProposalService, service: ScheduleService, clock: FakeClock
) -> None:
    soon = TriggerSpec(kind="once", at=clock.now() + timedelta(hours=1))
    proposal = await proposals.propose(CHAT, ask(soon, hint=RiskTier.HIGH), proposed_by="api")
    await clock.advance(timedelta(hours=2))
    with pytest.raises(InvalidSchedule, match="It cannot be activated: That time is in the past"):
        await proposals.approve(CHAT, proposal.id, by=ADMIN)
    refused = await proposals.get(CHAT, proposal.id)
    assert refused.status is ProposalStatus.REFUSED and refused.schedule_id is None
    assert await service.list_schedules(CHAT) == []


# --- scoping and completion ---------------------------------------------------------------------
async def test_another_chats_proposal_does_not_exist_here(
    proposals: ProposalService, service: ScheduleService
) -> None:
    proposal = await proposals.propose(CHAT, ask(TWICE_A_DAY), proposed_by="api")
    for decide in (proposals.approve, proposals.reject, proposals.undo):
        with pytest.raises(ProposalNotFound, match=r"^That proposal does not exist here\.$"):
            await decide(OTHER, proposal.id, by=ADMIN)
    assert (await proposals.get(CHAT, proposal.id)).status is ProposalStatus.PENDING
    assert proposal.schedule_id is not None
    assert not (await service.get_schedule(CHAT, proposal.schedule_id)).enabled
    assert await proposals.list_for_chat(OTHER) == []


async def test_the_request_is_completed_with_the_chats_zone_and_a_start(
    proposals: ProposalService, service: ScheduleService, clock: FakeClock
) -> None:
    await service.set_chat_timezone(CHAT, "Asia/Kolkata")
    bare = TriggerSpec(kind="cron", cron="0 9 * * *")
    proposal = await proposals.propose(CHAT, ask(bare), proposed_by="api")
    assert proposal.request.trigger.timezone == "Asia/Kolkata"
    every_day = TriggerSpec(kind="interval", every_seconds=86400)
    later = await proposals.propose(CHAT, ask(every_day, name="Daily too"), proposed_by="api")
    assert later.request.trigger.start_at == clock.now()


# --- the store's transitions ------------------------------------------------------------------
async def test_a_transition_applies_once_and_only_in_its_chat(
    proposals: ProposalService, store: SqliteStore, clock: FakeClock
) -> None:
    proposal = await proposals.propose(CHAT, ask(HALF_HOURLY), proposed_by="api")
    changes = {"status": ProposalStatus.REJECTED, "decided_by": ADMIN, "decided_at": clock.now()}
    pending = [ProposalStatus.PENDING]
    assert (
        await store.proposals.transition(OTHER, proposal.id, expected=pending, changes=changes)
        is None
    )
    done = await store.proposals.transition(CHAT, proposal.id, expected=pending, changes=changes)
    assert done is not None and done.status is ProposalStatus.REJECTED
    assert (
        await store.proposals.transition(CHAT, proposal.id, expected=pending, changes=changes)
        is None
    )
    with pytest.raises(ValueError, match="not changeable"):
        await store.proposals.transition(
            CHAT, proposal.id, expected=pending, changes={"chat_id": OTHER}
        )
    await clock.advance(timedelta(days=4))
    assert await store.proposals.expired(clock.now()) == []


# --- the agent's tools --------------------------------------------------------------------------
async def test_the_tools_propose_list_and_pause_for_one_chat(
    proposals: ProposalService, service: ScheduleService
) -> None:
    tools = AgentTools(service, proposals)

    async def call(tool: str, /, **args: object) -> dict[str, object]:
        text = await tools.call(
            CHAT,
            {
                "id": "c1",
                "type": "function",
                "function": {"name": tool, "arguments": json.dumps(args)},
            },
        )
        result: dict[str, object] = json.loads(text)
        return result

    assert [t["function"]["name"] for t in TOOLS] == [
        "propose_schedule",
        "list_schedules",
        "pause_schedule",
        "report_result",
        "emit_event",
    ]
    made = await call(
        "propose_schedule", name="Brief", cron="0 9 * * *", prompt="Brief me.", reason="asked"
    )
    assert made["ok"] and made["status"] == "active" and made["tier"] == "low"
    waiting = await call(
        "propose_schedule", name="Pulse", every_minutes=20, prompt="Check.", reason="asked"
    )
    assert waiting["ok"] and waiting["status"] == "pending" and waiting["tier"] == "high"
    listing = await call("list_schedules")
    assert [s["name"] for s in listing["schedules"]] == ["Brief"]  # type: ignore[attr-defined]
    assert [p["name"] for p in listing["pending_proposals"]] == ["Pulse"]  # type: ignore[attr-defined]
    paused = await call("pause_schedule", schedule_id=made["schedule_id"], reason="on holiday")
    assert paused == {
        "ok": True,
        "schedule_id": made["schedule_id"],
        "name": "Brief",
        "status": "paused",
    }
    assert (await service.get_schedule(CHAT, str(made["schedule_id"]))).pause_reason == "on holiday"
    listed: list[dict[str, object]] = (await call("list_schedules"))["schedules"]  # type: ignore[assignment]
    assert [(s["pause_reason"], s["pause_kind"]) for s in listed] == [("on holiday", "operator")]

    # Errors come back as results, one sentence each.
    again = await call(
        "propose_schedule", name="Brief", cron="0 9 * * *", prompt="Brief me.", reason="asked"
    )
    assert again == {
        "ok": False,
        "error": f"It matches the existing schedule 'Brief' ({made['schedule_id']}), so it "
        "was not added again.",
    }
    assert await call("propose_schedule", name="x", prompt="y", reason="z") == {
        "ok": False,
        "error": "Give exactly one of cron, every_minutes or at.",
    }
    assert (await call("delete_everything"))["ok"] is False
    assert (await call("pause_schedule", schedule_id="nope"))["error"] == (
        "There is no schedule 'nope' here; /schedules lists them."
    )
    bad_json = await tools.call(
        CHAT, {"id": "c2", "function": {"name": "list_schedules", "arguments": "{"}}
    )
    assert json.loads(bad_json) == {"ok": False, "error": "The arguments are not valid JSON."}
    assert await service.list_schedules(OTHER) == []


# --- runs that wait for approval ---------------------------------------------------------------
NINE_BERLIN = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.fixture
async def engine(
    store: SqliteStore, clock: FakeClock, dispatcher: HttpAgentDispatcher
) -> AsyncIterator[Engine]:
    e = Engine(store.engine, clock, dispatcher)
    yield e
    await e.shutdown()


async def _waiting_daily(service: ScheduleService) -> str:
    schedule = await service.create_schedule(
        CHAT,
        Owner(id=CHAT),
        name="Careful brief",
        trigger=DAILY_9,
        action=Action(text="Brief."),
        policies=Policies(requires_run_approval=True),
    )
    return schedule.id


async def test_a_run_waits_for_approval_and_runs_once_approved(
    service: ScheduleService, engine: Engine, clock: FakeClock, agent_stub: AgentStub
) -> None:
    sid = await _waiting_daily(service)
    await clock.set(NINE_BERLIN)
    await engine.run_until_idle()
    [run] = await service.history(CHAT, sid)
    assert run.status is RunStatus.AWAITING_APPROVAL
    # Its deadline is the next fire, tomorrow at 09:00 in Berlin.
    assert run.next_attempt_at == NINE_BERLIN + timedelta(days=1)
    assert agent_stub.requests == []
    await service.approve_run(CHAT, run.id)
    with pytest.raises(InvalidState, match=r"^That run is already pending\.$"):
        await service.approve_run(CHAT, run.id)
    await engine.run_until_idle()
    assert [r.status for r in await service.history(CHAT, sid)] == [RunStatus.SUCCEEDED]
    assert len(agent_stub.requests) == 1


async def test_an_unanswered_run_is_skipped_at_the_schedules_next_fire(
    service: ScheduleService,
    store: SqliteStore,
    engine: Engine,
    clock: FakeClock,
    agent_stub: AgentStub,
) -> None:
    sid = await _waiting_daily(service)
    await clock.set(NINE_BERLIN)
    await engine.run_until_idle()
    [first] = await service.history(CHAT, sid)
    await clock.set(NINE_BERLIN + timedelta(hours=23, minutes=59))
    assert await store.engine.expire_approvals(clock.now()) == 0
    # A late approval, after the deadline but before the engine looked: refused.
    await clock.set(NINE_BERLIN + timedelta(days=1))
    with pytest.raises(InvalidState, match="approval deadline passed"):
        await service.approve_run(CHAT, first.id)
    await engine.run_until_idle()
    second, first = await service.history(CHAT, sid)
    assert (first.status, first.error) == (RunStatus.SKIPPED, "approval deadline passed")
    assert second.status is RunStatus.AWAITING_APPROVAL
    # The engine skips one nobody answered, too.
    await clock.set(NINE_BERLIN + timedelta(days=2))
    await engine.run_until_idle()
    statuses = [(r.status, r.error) for r in await service.history(CHAT, sid)]
    assert statuses == [
        (RunStatus.AWAITING_APPROVAL, None),
        (RunStatus.SKIPPED, "approval deadline passed"),
        (RunStatus.SKIPPED, "approval deadline passed"),
    ]
    assert agent_stub.requests == []


async def test_a_one_time_run_waits_a_day_for_approval(
    service: ScheduleService, store: SqliteStore, engine: Engine, clock: FakeClock
) -> None:
    schedule = await service.create_schedule(
        CHAT,
        Owner(id=CHAT),
        name="Once",
        trigger=TriggerSpec(kind="once", at=NINE_BERLIN),
        action=Action(text="Do it."),
        policies=Policies(requires_run_approval=True),
    )
    await clock.set(NINE_BERLIN)
    await engine.run_until_idle()
    [run] = await service.history(CHAT, schedule.id)
    assert run.next_attempt_at == NINE_BERLIN + timedelta(hours=24)
    # The engine wakes for the deadline by itself.
    assert await next_due_at(
        store,
    ) == NINE_BERLIN + timedelta(hours=24)
    await clock.set(NINE_BERLIN + timedelta(hours=24))
    await engine.run_until_idle()
    [run] = await service.history(CHAT, schedule.id)
    assert (run.status, run.error) == (RunStatus.SKIPPED, "approval deadline passed")


async def test_runs_waiting_before_the_upgrade_get_a_days_deadline(db_path: Path) -> None:
    """Migration 0003 gives runs that were awaiting approval without a deadline one day
    from their fire instant."""
    store = await SqliteStore.open(db_path)
    schedule = await ScheduleService(store, FakeClock(NINE_BERLIN)).create_schedule(
        CHAT, Owner(id=CHAT), name="Old", trigger=DAILY_9, action=Action(text="x")
    )
    await store.close()
    with sqlite3.connect(db_path) as db:
        db.execute(
            "INSERT INTO runs (id, schedule_id, chat_id, scheduled_for, trigger, status, "
            "created_at, updated_at) VALUES ('R1', ?, ?, '2026-11-24T08:00:00.000000Z', "
            "'schedule', 'awaiting_approval', '2026-11-24T08:00:00.000000Z', "
            "'2026-11-24T08:00:00.000000Z')",
            (schedule.id, CHAT),
        )
        # Back to the schema before proposals.
        db.execute("DROP TABLE bundles")
        # What migration 0020 added.
        db.execute("DROP TABLE chat_agents")
        # What migration 0019 added.
        db.execute("DROP TABLE sink_deliveries")
        db.execute("DROP TABLE sinks")
        # What migration 0018 added.
        db.execute("DROP TABLE budget_allowances")
        for column in ("budget_runs_per_week", "budget_tokens_per_week"):
            db.execute(f"ALTER TABLE chats DROP COLUMN {column}")
        db.execute("DROP TABLE notifications")
        db.execute("DROP TABLE event_runs")
        db.execute("DROP TABLE events")
        db.execute("DROP TABLE work_item_history")
        db.execute("DROP TABLE work_items")
        db.execute("DROP TABLE proposals")
        db.execute("DROP INDEX runs_awaiting_approval")
        db.execute("DROP INDEX schedules_by_number")
        db.execute("ALTER TABLE schedules DROP COLUMN number")
        db.execute("ALTER TABLE schedules DROP COLUMN pause_kind")
        db.execute("ALTER TABLE runs DROP COLUMN interruptions")
        db.execute("ALTER TABLE runs DROP COLUMN skip_reason")
        # What migration 0014 added.
        for column in ("summary", "outputs_url", "log_excerpt"):
            db.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        # What migration 0016 added.
        db.execute("DROP INDEX runs_by_plan")
        for column in ("plan_run_id", "step"):
            db.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        db.execute("PRAGMA user_version = 2")
    store = await SqliteStore.open(db_path)
    try:
        run = await store.runs.get(CHAT, "R1")
        assert run is not None
        assert run.next_attempt_at == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
        assert await store.proposals.list_for_chat(CHAT) == []
    finally:
        await store.close()


async def test_a_medium_proposal_cannot_be_resumed_or_run_around_the_approval(
    proposals: ProposalService, service: ScheduleService, store: SqliteStore
) -> None:
    proposal = await proposals.propose(CHAT, ask(TWICE_A_DAY), proposed_by="api")
    assert proposal.schedule_id is not None
    sid = proposal.schedule_id
    # Neither /resume nor /runnow (nor the API calling them) may skip the admin's approval.
    with pytest.raises(InvalidState, match="waiting for an admin"):
        await service.resume(CHAT, sid)
    with pytest.raises(InvalidState, match="waiting for an admin"):
        await service.run_now(CHAT, sid)
    assert not (await service.get_schedule(CHAT, sid)).enabled
    assert await store.runs.list_for_chat(CHAT) == []
    approved = await proposals.approve(CHAT, proposal.id, by=ADMIN)
    assert approved.status is ProposalStatus.ACTIVE
    assert (await service.get_schedule(CHAT, sid)).enabled


async def test_an_approval_that_fails_midway_can_be_pressed_again(
    proposals: ProposalService, service: ScheduleService, monkeypatch: pytest.MonkeyPatch
) -> None:
    proposal = await proposals.propose(CHAT, ask(TWICE_A_DAY), proposed_by="api")
    assert proposal.schedule_id is not None
    real_replace = storage.schedules.replace

    async def locked(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    # The schedule's resumption fails after the decision was written, in its transaction.
    monkeypatch.setattr(storage.schedules, "replace", locked)
    with pytest.raises(sqlite3.OperationalError):
        await proposals.approve(CHAT, proposal.id, by=ADMIN)
    still = await proposals.get(CHAT, proposal.id)
    assert (still.status, still.decided_by) == (ProposalStatus.PENDING, None)
    assert not (await service.get_schedule(CHAT, proposal.schedule_id)).enabled
    monkeypatch.setattr(storage.schedules, "replace", real_replace)
    assert (await proposals.approve(CHAT, proposal.id, by=ADMIN)).status is ProposalStatus.ACTIVE


# --- one transaction each: a proposal with its schedule, a decision with its effect ----------
async def test_a_proposal_and_its_schedule_are_written_together_or_not_at_all(
    proposals: ProposalService, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(*args: object, **kwargs: object) -> None:
        raise sqlite3.IntegrityError("CHECK constraint failed: proposals")

    # The proposal's row fails after its (paused) schedule's row was written.
    monkeypatch.setattr(storage.proposals, "insert", refused)
    with pytest.raises(sqlite3.IntegrityError):
        await proposals.propose(CHAT, ask(TWICE_A_DAY), proposed_by="api")
    assert await store.schedules.list_for_chat(CHAT, include_archived=True) == []
    assert await store.proposals.list_for_chat(CHAT) == []


async def test_a_high_approval_that_fails_creating_its_schedule_leaves_it_pending(
    proposals: ProposalService, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    proposal = await proposals.propose(CHAT, ask(hint=RiskTier.HIGH), proposed_by="api")
    assert proposal.status is ProposalStatus.PENDING and proposal.schedule_id is None
    real_insert = storage.schedules.insert

    async def locked(*args: object, **kwargs: object) -> int:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(storage.schedules, "insert", locked)
    with pytest.raises(sqlite3.OperationalError):
        await proposals.approve(CHAT, proposal.id, by=ADMIN)
    still = await proposals.get(CHAT, proposal.id)
    assert (still.status, still.decided_by, still.schedule_id) == (
        ProposalStatus.PENDING,
        None,
        None,
    )
    assert await store.schedules.list_for_chat(CHAT, include_archived=True) == []
    monkeypatch.setattr(storage.schedules, "insert", real_insert)
    approved = await proposals.approve(CHAT, proposal.id, by=ADMIN)
    assert approved.status is ProposalStatus.ACTIVE and approved.schedule_id is not None
    assert [s.id for s in await store.schedules.list_for_chat(CHAT)] == [approved.schedule_id]


@pytest.mark.parametrize("hint", [None, RiskTier.HIGH], ids=["medium", "high"])
async def test_approve_pressed_twice_at_once_activates_once(
    proposals: ProposalService, store: SqliteStore, hint: RiskTier | None
) -> None:
    proposal = await proposals.propose(CHAT, ask(TWICE_A_DAY, hint=hint), proposed_by="api")
    assert proposal.status is ProposalStatus.PENDING
    answers = await asyncio.gather(
        proposals.approve(CHAT, proposal.id, by=ADMIN),
        proposals.approve(CHAT, proposal.id, by=ADMIN + 1),
        return_exceptions=True,
    )
    approved = [a for a in answers if isinstance(a, Proposal)]
    refused = [a for a in answers if isinstance(a, BaseException)]
    assert len(approved) == 1 and approved[0].status is ProposalStatus.ACTIVE
    assert [str(e) for e in refused] == ["That proposal is already approved."]
    [schedule] = await store.schedules.list_for_chat(CHAT, include_archived=True)
    assert schedule.id == approved[0].schedule_id and schedule.enabled


async def test_a_decision_applies_its_effect_once_in_the_store(
    proposals: ProposalService, service: ScheduleService, store: SqliteStore, clock: FakeClock
) -> None:
    proposal = await proposals.propose(CHAT, ask(TWICE_A_DAY), proposed_by="api")
    applied: list[str] = []
    resume = service.approval_change(clock.now())

    def counted(current: Schedule) -> ScheduleChange:
        applied.append(current.id)
        return resume(current)

    decision = {"status": ProposalStatus.ACTIVE, "decided_by": ADMIN, "decided_at": clock.now()}
    pending = [ProposalStatus.PENDING]
    first = await store.proposals.decide(
        CHAT, proposal.id, expected=pending, changes=decision, change_schedule=counted
    )
    second = await store.proposals.decide(
        CHAT, proposal.id, expected=pending, changes=decision, change_schedule=counted
    )
    assert first is not None and first.status is ProposalStatus.ACTIVE and second is None
    assert applied == [proposal.schedule_id]
    assert proposal.schedule_id is not None
    assert (await service.get_schedule(CHAT, proposal.schedule_id)).enabled


async def test_a_rejection_whose_archiving_fails_leaves_the_proposal_pending(
    proposals: ProposalService,
    service: ScheduleService,
    store: SqliteStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proposal = await proposals.propose(CHAT, ask(TWICE_A_DAY), proposed_by="api")
    assert proposal.schedule_id is not None
    real_settle = storage.runs.settle_open

    async def locked(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    # Archiving the paused schedule fails after the decision was written, in its transaction.
    monkeypatch.setattr(storage.schedules, "settle_open", locked)
    with pytest.raises(sqlite3.OperationalError):
        await proposals.reject(CHAT, proposal.id, by=ADMIN)
    assert (await proposals.get(CHAT, proposal.id)).status is ProposalStatus.PENDING
    waiting = await service.get_schedule(CHAT, proposal.schedule_id)
    assert not waiting.enabled and waiting.archived_at is None
    monkeypatch.setattr(storage.schedules, "settle_open", real_settle)
    rejected = await proposals.reject(CHAT, proposal.id, by=ADMIN)
    assert rejected.status is ProposalStatus.REJECTED
    assert await store.schedules.list_for_chat(CHAT) == []


# --- pause kinds -------------------------------------------------------------------------------
async def test_a_waiting_proposal_is_paused_by_kind_not_by_its_text(
    proposals: ProposalService, service: ScheduleService
) -> None:
    proposal = await proposals.propose(CHAT, ask(TWICE_A_DAY), proposed_by="api")
    assert proposal.schedule_id is not None
    waiting = await service.get_schedule(CHAT, proposal.schedule_id)
    assert (waiting.pause_kind, waiting.pause_reason) == (
        PauseKind.AWAITING_APPROVAL,
        AWAITING_APPROVAL_REASON,
    )
    # An operator who pauses with the same words pauses an ordinary schedule.
    mine = await service.create_schedule(
        CHAT, Owner(id=CHAT), name="Mine", trigger=DAILY_9, action=Action(text="hi")
    )
    paused = await service.pause(CHAT, mine.id, by=ADMIN, reason=AWAITING_APPROVAL_REASON)
    assert paused.pause_kind is PauseKind.OPERATOR
    resumed = (await service.resume(CHAT, mine.id)).schedule
    assert resumed.enabled and (resumed.pause_kind, resumed.pause_reason) == (None, None)
    with pytest.raises(InvalidState, match="waiting for an admin"):
        await service.resume(CHAT, proposal.schedule_id)
    await proposals.approve(CHAT, proposal.id, by=ADMIN)
    active = await service.get_schedule(CHAT, proposal.schedule_id)
    assert active.enabled and active.pause_kind is None and active.pause_reason is None
