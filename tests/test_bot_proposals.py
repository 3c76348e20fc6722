"""The agent's proposals and per-run approvals in chat, end to end: the real bot against
the strict Bot API test server, the agent stub and a fake clock.

A proposal made by a tool call ends as an active schedule when admin Alice approves
it; a non-admin's press, a second press, a press after expiry and a forged press for
another chat's proposal are each answered and change nothing; a run that needs
approval runs once when approved, is skipped when skipped, and is skipped at its
deadline when nobody answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio

from bot.demo_kit.agent_stub import AgentStub, Reply, openai_completion
from bot.demo_kit.harness import ALICE, OLGA, BotHarness, start_bot, stop_bot
from bot.demo_kit.telegram_server import BotMessage, TelegramServer, TgUser
from scheduler.models import Action, ActionKind, Owner, Policies, RiskTier, RunStatus
from scheduler.proposals import Proposal, ProposalRequest, ProposalService, ProposalStatus
from scheduler.service import TriggerSpec

NINE_BERLIN = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
HALF_HOURLY = TriggerSpec(kind="cron", cron="*/30 * * * *", timezone="Europe/Berlin")


@pytest_asyncio.fixture
async def openai_bot(
    telegram_server: TelegramServer, agent_stub: AgentStub, tmp_path: Path
) -> AsyncIterator[BotHarness]:
    harness = await start_bot(telegram_server, agent_stub, tmp_path / "bot.db", agent_mode="openai")
    try:
        yield harness
    finally:
        await stop_bot(harness)


def proposals_of(bot: BotHarness) -> ProposalService:
    service = bot.services.proposals
    assert service is not None
    return service


async def propose(
    bot: BotHarness,
    chat: int = ALICE,
    trigger: TriggerSpec = HALF_HOURLY,
    kind: ActionKind = ActionKind.AGENT,
) -> Proposal:
    """A proposal as the HTTP API would make it."""
    request = ProposalRequest(
        name="Inbox pulse",
        trigger=trigger,
        action=Action(kind=kind, text="Check my inbox."),
        reason="You asked me to watch the inbox.",
    )
    return await proposals_of(bot).propose(chat, request, proposed_by="api")


async def toast(bot: BotHarness, query_id: str) -> str:
    answer = await bot.server.wait_answered(query_id)
    return str(answer.get("text") or "")


def text(message: BotMessage) -> str:
    return message.text or ""


async def current(bot: BotHarness, proposal: Proposal) -> Proposal:
    return await proposals_of(bot).get(proposal.chat_id, proposal.id)


async def shown(user: TgUser, containing: str, timeout: float = 2.0) -> BotMessage:
    """The bot's message in `user`'s chat containing this text, whenever it came."""
    async with asyncio.timeout(timeout):
        while True:
            for message in user.messages:
                if containing in text(message):
                    return message
            await asyncio.sleep(0.02)


def tool_call(call_id: str, function: str, /, **arguments: Any) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": function, "arguments": json.dumps(arguments)},
    }


# --- a proposal by tool call ----------------------------------------------------------------
async def test_a_tool_call_proposal_becomes_active_when_alice_approves(
    openai_bot: BotHarness,
) -> None:
    bot = openai_bot
    bot.agent.script(
        [
            Reply(
                json=openai_completion(
                    None,
                    tool_calls=[
                        tool_call(
                            "call_1",
                            "propose_schedule",
                            name="Inbox check",
                            cron="0 9,17 * * *",
                            prompt="Check my inbox and summarise.",
                            reason="You asked for an inbox check twice a day.",
                            risk="low",
                            expected_tokens_per_run=1500,
                        )
                    ],
                )
            ),
            Reply(json=openai_completion("I proposed a twice-daily inbox check.")),
        ]
    )
    await bot.alice.send("Please check my inbox twice a day.")
    # The card (sent in the background) and the agent's answer, in either order.
    card = await shown(bot.alice, "Your agent proposes a schedule")
    body = text(card)
    assert "It was added paused; it starts when an admin approves it." in body
    assert "Inbox check" in body and "At 09:00 AM and 05:00 PM (Europe/Berlin)" in body
    # The next three fires, in the chat's zone.
    for fire in ("Mon 23 Nov 09:00 (+01:00)", "Mon 23 Nov 17:00 (+01:00)", "Tue 24 Nov 09:00"):
        assert fire in body
    assert "Runs per week: 14" in body
    assert "Tokens (agent's estimate): 1,500 a run, about 21,000 a week" in body
    assert "Risk: 🟡 medium — your agent acts on its own more than once a day" in body
    assert "Why: “You asked for an inbox check twice a day.”" in body
    assert card.button_labels() == ["Approve", "Reject"]
    answer = await shown(bot.alice, "I proposed")
    assert text(answer) == "I proposed a twice-daily inbox check."

    # The model got the tools, then the tool's result as a `tool` message.
    first, second = bot.agent.requests
    assert [t["function"]["name"] for t in first.json["tools"]] == [
        "propose_schedule",
        "list_schedules",
        "pause_schedule",
        "report_result",
        "emit_event",
    ]
    turns = second.json["messages"]
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "tool"]
    assert turns[2]["tool_calls"][0]["id"] == "call_1"
    result = json.loads(turns[3]["content"])
    assert turns[3]["tool_call_id"] == "call_1"
    assert (result["ok"], result["status"], result["tier"]) == (True, "pending", "medium")
    assert second.headers["idempotency-key"] == first.headers["idempotency-key"] + ":1"

    [proposal] = await proposals_of(bot).list_for_chat(ALICE)
    assert proposal.proposed_by == "agent:chat" and proposal.schedule_id is not None
    paused = await bot.services.service.get_schedule(ALICE, proposal.schedule_id)
    assert not paused.enabled

    query = await bot.alice.press("Approve", card)
    assert await toast(bot, query) == "Approved."
    edited = await bot.alice.wait_edit(card.message_id)
    assert "✅ Approved by Alice; Inbox check is active." in text(edited)
    assert edited.buttons == []
    active = await bot.services.service.get_schedule(ALICE, proposal.schedule_id)
    assert active.enabled and active.pause_reason is None
    decided = await current(bot, proposal)
    assert (decided.status, decided.decided_by) == (ProposalStatus.ACTIVE, ALICE)


async def test_a_high_tool_call_proposal_creates_the_schedule_on_approval(
    openai_bot: BotHarness,
) -> None:
    bot = openai_bot
    call = tool_call(
        "c9", "propose_schedule", name="Pulse", every_minutes=20, prompt="Ping.", reason="Watch."
    )
    bot.agent.script(
        [
            Reply(json=openai_completion(None, tool_calls=[call])),
            Reply(json=openai_completion("Waiting for your approval.")),
        ]
    )
    await bot.alice.send("Watch the build every 20 minutes.")
    card = await shown(bot.alice, "needs an admin's approval")
    assert "Nothing is created unless it is approved by Thu 26 Nov 08:00 (+01:00)." in text(card)
    assert "Risk: 🔴 high — it fires more often than hourly" in text(card)
    assert "Runs per week: 504" in text(card)
    await shown(bot.alice, "Waiting for your approval.")
    assert await bot.services.service.list_schedules(ALICE) == []
    query = await bot.alice.press("Approve", card)
    assert await toast(bot, query) == "Approved."
    await bot.alice.wait_edit(card.message_id)
    [schedule] = await bot.services.service.list_schedules(ALICE)
    assert schedule.name == "Pulse" and schedule.enabled
    assert schedule.policies.risk_tier is RiskTier.HIGH


async def test_tool_rounds_are_bounded(openai_bot: BotHarness) -> None:
    bot = openai_bot
    bot.agent.openai_answer(None, tool_calls=[tool_call("again", "list_schedules")])
    await bot.alice.send("List them, forever.")
    reply = await bot.alice.wait_reply()
    assert text(reply).startswith("Your agent kept calling tools, so I stopped after 3 rounds")
    assert len(bot.agent.requests) == 4  # the question and three rounds of tool results


# --- who may press, and how often ------------------------------------------------------------
async def test_only_an_admins_press_counts_and_only_once(bot: BotHarness) -> None:
    proposal = await propose(bot)
    card = await bot.alice.wait_reply(containing="needs an admin's approval")
    olga_here = bot.server.user(OLGA, "Olga", chat_id=ALICE)

    query = await olga_here.press("Approve", card)
    assert await toast(bot, query) == "Only an admin can approve a proposal."
    query = await olga_here.press("Reject", card)
    assert await toast(bot, query) == "Only an admin can reject a proposal."
    assert (await current(bot, proposal)).status is ProposalStatus.PENDING
    assert await bot.services.service.list_schedules(ALICE) == []
    assert bot.alice.buttons(card) == card.buttons  # untouched

    data = card.callback_data("Approve") or ""
    query = await bot.alice.press("Approve", card)
    assert await toast(bot, query) == "Approved."
    await bot.alice.wait_edit(card.message_id)
    for again in (data, card.callback_data("Reject") or ""):
        query = await bot.alice.press_data(again, card.message_id)
        assert await toast(bot, query) == "That proposal is already approved."
    assert len(await bot.services.service.list_schedules(ALICE)) == 1
    decided = await current(bot, proposal)
    assert (decided.status, decided.decided_by) == (ProposalStatus.ACTIVE, ALICE)


async def test_a_press_after_expiry_is_answered_and_changes_nothing(bot: BotHarness) -> None:
    proposal = await propose(bot)
    card = await bot.alice.wait_reply(containing="needs an admin's approval")
    await bot.clock.advance(timedelta(hours=73))
    expired = await bot.alice.wait_edit(card.message_id)
    assert "⌛ Expired: no admin answered within 72 hours; nothing was created." in text(expired)
    assert expired.buttons == []
    query = await bot.alice.press_data(card.callback_data("Approve") or "", card.message_id)
    assert await toast(bot, query) == "That proposal is already expired."
    assert (await current(bot, proposal)).status is ProposalStatus.EXPIRED
    assert await bot.services.store.schedules.list_for_chat(ALICE, include_archived=True) == []


async def test_a_forged_press_for_another_chats_proposal_finds_nothing(bot: BotHarness) -> None:
    olgas = await propose(bot, chat=OLGA)
    await bot.olga.wait_reply(containing="needs an admin's approval")
    await bot.alice.send("/schedules")
    listing = await bot.alice.wait_reply()
    for action in ("approve", "reject", "undo"):
        query = await bot.alice.press_data(f"p:{action}:{olgas.id}", listing.message_id)
        assert await toast(bot, query) == "That proposal does not exist here."
    query = await bot.alice.press_data("p:approve:", listing.message_id)
    assert await toast(bot, query) == "That button is out of date; send the command again."
    assert (await current(bot, olgas)).status is ProposalStatus.PENDING
    assert await bot.services.store.schedules.list_for_chat(OLGA, include_archived=True) == []
    assert await bot.services.store.schedules.list_for_chat(ALICE, include_archived=True) == []


async def test_a_low_proposal_is_active_at_once_and_undo_archives_it(bot: BotHarness) -> None:
    daily = TriggerSpec(kind="cron", cron="0 18 * * *")  # the chat's zone is filled in
    proposal = await propose(bot, trigger=daily, kind=ActionKind.REMINDER)
    card = await bot.alice.wait_reply(containing="Your agent added a schedule")
    assert "It is active now; Undo removes it." in text(card)
    assert "Does: sends you the reminder “Check my inbox.”" in text(card)
    assert "Risk: 🟢 low" in text(card) and "Mon 23 Nov 18:00 (+01:00)" in text(card)
    assert card.button_labels() == ["Undo"]
    assert proposal.schedule_id is not None
    assert (await bot.services.service.get_schedule(ALICE, proposal.schedule_id)).enabled

    query = await bot.alice.press("Undo", card)
    assert await toast(bot, query) == "Undone."
    edited = await bot.alice.wait_edit(card.message_id)
    assert "↩️ Undone by Alice; Inbox pulse is archived" in text(edited)
    assert await bot.services.service.list_schedules(ALICE) == []
    query = await bot.alice.press_data(f"p:undo:{proposal.id}", card.message_id)
    assert await toast(bot, query) == "That proposal is already undone."


async def test_a_proposed_task_says_it_is_a_task_for_the_operator(bot: BotHarness) -> None:
    daily = TriggerSpec(kind="cron", cron="0 18 * * *")
    await propose(bot, trigger=daily, kind=ActionKind.TASK)
    card = await bot.alice.wait_reply(containing="Your agent")
    assert "Does: puts a task for you on /today, due at each fire: “Check my inbox.”" in text(card)
    assert "asks your agent" not in text(card)


# --- runs that wait for approval -------------------------------------------------------------
async def _careful_daily(bot: BotHarness) -> str:
    schedule = await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name="Careful brief",
        trigger=TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin"),
        action=Action(text="Prepare my brief."),
        policies=Policies(requires_run_approval=True),
    )
    return schedule.id


async def _statuses(bot: BotHarness, sid: str) -> list[tuple[RunStatus, str | None]]:
    return [(r.status, r.error) for r in await bot.services.service.history(ALICE, sid)]


async def _until(check: Any, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def test_a_run_that_needs_approval_runs_once_skips_or_passes_its_deadline(
    bot: BotHarness,
) -> None:
    sid = await _careful_daily(bot)

    # Day 1: approved, dispatched once.
    await bot.clock.set(NINE_BERLIN)
    ask = await bot.alice.wait_reply(containing="wants to run")
    assert text(ask).startswith(
        "✋ Careful brief wants to run for Mon 23 Nov 09:00 (+01:00): approve?"
    )
    assert "Unanswered, it is skipped at Tue 24 Nov 09:00 (+01:00)." in text(ask)
    assert ask.button_labels() == ["Approve", "Skip"]
    assert bot.agent.requests == []
    query = await bot.alice.press("Approve", ask)
    assert await toast(bot, query) == "Approved."
    await bot.agent.wait_for_requests(1)
    await _until(lambda: _done(bot, sid, [RunStatus.SUCCEEDED]))
    query = await bot.alice.press_data(ask.callback_data("Approve") or "", ask.message_id)
    assert await toast(bot, query) == "That run is already succeeded."

    # Day 2: skipped by Alice.
    await bot.clock.set(NINE_BERLIN + timedelta(days=1))
    ask = await bot.alice.wait_reply(containing="wants to run for Tue 24 Nov")
    query = await bot.alice.press("Skip", ask)
    assert await toast(bot, query) == "Skipped."
    assert (await _statuses(bot, sid))[0] == (RunStatus.SKIPPED, "skipped: approval rejected")

    # Day 3: nobody answers; at day 4's fire it is skipped, and day 4 asks again.
    await bot.clock.set(NINE_BERLIN + timedelta(days=2))
    await bot.alice.wait_reply(containing="wants to run for Wed 25 Nov")
    await bot.clock.set(NINE_BERLIN + timedelta(days=3))
    await bot.alice.wait_reply(containing="wants to run for Thu 26 Nov")
    await _until(lambda: _done(bot, sid, [RunStatus.AWAITING_APPROVAL, RunStatus.SKIPPED]))
    assert (await _statuses(bot, sid))[:2] == [
        (RunStatus.AWAITING_APPROVAL, None),
        (RunStatus.SKIPPED, "approval deadline passed"),
    ]
    assert len(bot.agent.requests) == 1


async def _done(bot: BotHarness, sid: str, newest: list[RunStatus]) -> bool:
    statuses = [s for s, _ in await _statuses(bot, sid)]
    return statuses[: len(newest)] == newest


# --- /approve -------------------------------------------------------------------------------
async def test_approve_lists_what_waits_and_approves_a_proposal_or_a_run(bot: BotHarness) -> None:
    await bot.alice.send("/approve")
    assert (await bot.alice.wait_reply()).text == "Nothing is waiting for approval."

    proposal = await propose(bot)  # high (every 30 min): waits for an admin
    sid = await _careful_daily(bot)
    await bot.clock.set(NINE_BERLIN)
    await bot.alice.wait_reply(containing="wants to run")
    [run] = await bot.services.service.history(ALICE, sid)

    await bot.alice.send("/approve")
    listing = await bot.alice.wait_reply(containing="Waiting for approval")
    assert f"• Inbox pulse: your agent's proposal (high), /approve {proposal.id}" in text(listing)
    assert f"• Careful brief: the run of Mon 23 Nov 09:00 (+01:00), /approve {run.id}" in text(
        listing
    )
    assert listing.button_labels() == ["Approve Inbox pulse", "Run Careful brief"]

    # Another chat finds nothing by these ids; nothing changes.
    await bot.olga.send(f"/approve {proposal.id}")
    assert (await bot.olga.wait_reply()).text == (
        f"Nothing waits for approval as '{proposal.id}' here; /approve lists what does."
    )
    await bot.alice.send(f"/approve {run.id}")
    assert "runs now" in text(await bot.alice.wait_reply(containing="Approved"))
    await bot.agent.wait_for_requests(1)
    await bot.alice.send(f"/approve {proposal.id}")
    await bot.alice.wait_reply(containing="Approved by Alice")
    assert (await current(bot, proposal)).status is ProposalStatus.ACTIVE

    await bot.alice.send(f"/approve {proposal.id}")
    again = await bot.alice.wait_reply()
    assert (again.text or "").startswith("That proposal is already")
    await bot.alice.send("/approve nope")
    assert (await bot.alice.wait_reply()).text == (
        "Nothing waits for approval as 'nope' here; /approve lists what does."
    )
