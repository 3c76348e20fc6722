"""Every policy, and a task's proof, assignee and instructions, reachable from the chat:
/edit changes each (refusing a bad value with one sentence and changing nothing), /show
lists them, the card's [Policies] menu sets the enumerated ones, and the guided /new
makes a task schedule.

The fake clock starts Monday 2026-11-23 07:00 UTC = 08:00 in Berlin.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.demo_kit.harness import ALICE, OLGA, BotHarness
from scheduler.models import (
    Action,
    ActionKind,
    MissedRunPolicy,
    OverlapPolicy,
    Owner,
    Policies,
    RetryPolicy,
    RunStatus,
    Schedule,
    TimeoutPolicy,
)
from scheduler.service import TriggerSpec
from tests.test_bot_new import answers_once, start_in_berlin

DAILY_9 = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")


async def _seed(bot: BotHarness, kind: ActionKind = ActionKind.TASK) -> Schedule:
    return await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name="Pay rent",
        trigger=DAILY_9,
        action=Action(kind=kind, text="Pay the rent"),
    )


async def _stored(bot: BotHarness, schedule: Schedule) -> Schedule:
    found = await bot.services.store.schedules.get(ALICE, schedule.id)
    assert found is not None
    return found


async def _card(bot: BotHarness, schedule: Schedule) -> list[str]:
    await bot.alice.send(f"/show {schedule.id}")
    return ((await bot.alice.wait_reply(containing="Run approval:")).text or "").splitlines()


async def test_show_lists_every_policy_and_edit_changes_each(bot: BotHarness) -> None:
    alice = bot.alice
    schedule = await _seed(bot)
    sid = schedule.id
    card = await _card(bot, schedule)
    assert [line for line in card if line.split(":")[0] in _POLICY_LABELS] == [
        "Missed runs: catch_up_once",
        "Overlap: skip",
        "Retries: 3 attempts, backoff 30s doubling up to 15m",
        "Timeout: 5m, then retry",
        "Run approval: off",
        "Proof: none",
        "Assignee: none",
        "Instructions: none",
    ]

    edits = {
        "missed catch_up_all": "Missed runs: catch_up_all (up to 10)",
        "catchup 20": "Missed runs: catch_up_all (up to 20)",
        "overlap queue": "Overlap: queue",
        "attempts 5": "Retries: 5 attempts, backoff 30s doubling up to 15m",
        "backoff 1m": "Retries: 5 attempts, backoff 1m doubling up to 15m",
        "backoff_cap 30m": "Retries: 5 attempts, backoff 1m doubling up to 30m",
        "timeout 10m": "Timeout: 10m, then retry",
        "on_timeout ask": "Timeout: 10m, then ask you",
        "approval on": "Run approval: on",
        "proof file": "Proof: file",
        "assignee Sam": "Assignee: Sam",
        "instructions Attach the bank's receipt": "Instructions: Attach the bank's receipt",
    }
    for command, line in edits.items():
        reply = await answers_once(alice, f"/edit {sid} {command}")
        assert reply == f"Updated: Pay rent — {line}.", command

    stored = await _stored(bot, schedule)
    assert stored.policies == Policies(
        missed_run=MissedRunPolicy.CATCH_UP_ALL,
        catch_up_cap=20,
        overlap=OverlapPolicy.QUEUE,
        retry=RetryPolicy(max_attempts=5, base_seconds=60, cap_seconds=1800),
        timeout_seconds=600,
        timeout_policy=TimeoutPolicy.ASK,
        requires_run_approval=True,
    )
    assert (stored.action.proof, stored.action.assignee, stored.action.instructions) == (
        "file",
        "Sam",
        "Attach the bank's receipt",
    )
    card = await _card(bot, schedule)
    assert set(edits.values()) - {
        "Missed runs: catch_up_all (up to 10)",
        "Retries: 5 attempts, backoff 30s doubling up to 15m",
        "Retries: 5 attempts, backoff 1m doubling up to 15m",
        "Timeout: 10m, then retry",
    } <= set(card)

    # The policy is obeyed: with approval on, the 09:00 fire waits for the operator.
    await bot.clock.set(datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
    await alice.wait_reply(containing="wants to run")
    [run] = await bot.services.store.runs.list_for_chat(ALICE, schedule_id=sid)
    assert run.status is RunStatus.AWAITING_APPROVAL


_POLICY_LABELS = {
    "Missed runs",
    "Overlap",
    "Retries",
    "Timeout",
    "Run approval",
    "Proof",
    "Assignee",
    "Instructions",
}


async def test_a_bad_policy_value_is_one_sentence_and_changes_nothing(bot: BotHarness) -> None:
    schedule = await _seed(bot)
    agent = await _seed(bot, ActionKind.AGENT)
    sid = schedule.id
    cases = {
        f"/edit {sid} overlap sometimes": "Overlap must be skip, queue or allow.",
        f"/edit {sid} missed later": "Missed runs must be skip, catch_up_once or catch_up_all.",
        f"/edit {sid} catchup 0": "The catch-up cap must be a whole number from 1 to 1000.",
        f"/edit {sid} attempts 21": "Attempts must be a whole number from 1 to 20.",
        f"/edit {sid} attempts three": "Attempts must be a whole number from 1 to 20.",
        f"/edit {sid} backoff 2h": "The backoff base must be a duration more than 0s and at "
        "most 1h, like 30s.",
        f"/edit {sid} backoff_cap 0s": "The backoff cap must be a duration more than 0s and at "
        "most 24h, like 15m.",
        f"/edit {sid} timeout soon": "The timeout must be a duration more than 0s and at most "
        "1h, like 5m.",
        f"/edit {sid} on_timeout drop": "On timeout must be retry or ask.",
        f"/edit {sid} approval maybe": "Run approval must be on or off.",
        f"/edit {sid} proof photo": "Proof must be link, file or none.",
        f"/edit {sid} assignee {'x' * 81}": "The assignee is 81 characters; the limit is 80.",
        f"/edit {agent.id} proof link": "Proof belongs to a task; this schedule asks the agent.",
        f"/edit {sid} overlap": f"Write the new value after 'overlap', like /edit {sid} "
        "overlap queue.",
    }
    for command, sentence in cases.items():
        assert await answers_once(bot.alice, command) == sentence, command
    assert await _stored(bot, schedule) == schedule
    assert await _stored(bot, agent) == agent


async def test_the_policies_button_sets_the_enumerated_ones_in_place(bot: BotHarness) -> None:
    alice = bot.alice
    schedule = await _seed(bot)
    await alice.send(f"/show {schedule.id}")
    card = await alice.wait_reply(containing="Run approval:")
    await alice.press("Policies", card)
    menu = await alice.wait_reply(containing="Policies of Pay rent")
    assert menu.button_labels() == [
        "Missed: skip",
        "✓ Missed: latest",
        "Missed: all",
        "✓ Overlap: skip",
        "Overlap: queue",
        "Overlap: allow",
        "✓ On timeout: retry",
        "On timeout: ask",
        "✓ Proof: none",
        "Proof: link",
        "Proof: file",
        "Ask me before each run",
    ]
    await alice.press("Overlap: allow", menu)
    edited = await alice.wait_edit(menu.message_id)
    assert "Overlap: allow" in (edited.text or "") and "✓ Overlap: allow" in edited.button_labels()
    await alice.press("Proof: link", menu)
    await alice.wait_edit(menu.message_id)
    await alice.press("Ask me before each run", menu)
    edited = await alice.wait_edit(menu.message_id)
    assert "Stop asking before each run" in edited.button_labels()

    stored = await _stored(bot, schedule)
    assert stored.policies.overlap is OverlapPolicy.ALLOW
    assert stored.policies.requires_run_approval and stored.action.proof == "link"


async def test_guided_new_creates_a_task_with_instructions_assignee_and_proof(
    bot: BotHarness,
) -> None:
    alice = bot.alice
    await start_in_berlin(alice)
    await alice.send("/new")
    await alice.wait_reply(containing="What should it do?")
    await alice.press("Add a task for me")
    await alice.wait_reply(containing="What is the task?")
    await alice.send("Water the plants")
    await alice.wait_reply(containing="Any instructions")
    await alice.send("Only the ones on the balcony")
    await alice.wait_reply(containing="Who is it for?")
    assert await answers_once(alice, "x" * 81) == "The assignee is 81 characters; the limit is 80."
    await alice.send("Sam")
    await alice.wait_reply(containing="What must marking it done include?")
    await alice.press("A file")
    await alice.wait_reply(containing="When?")
    await alice.press("Daily at…")
    await alice.wait_reply(containing="At what time?")
    await alice.send("09:00")
    await alice.wait_reply(containing="What should it be called?")
    await alice.send("Plants")
    preview = (await alice.wait_reply(containing="Next:")).text or ""
    assert preview.splitlines()[:5] == [
        "Plants",
        "Adds a task to /today: “Water the plants”",
        "Instructions: Only the ones on the balcony",
        "For: Sam",
        "Proof: file",
    ]
    await alice.press("Save")
    await alice.wait_reply(containing="Saved")

    [schedule] = await bot.services.store.schedules.list_for_chat(ALICE)
    assert schedule.action == Action(
        kind=ActionKind.TASK,
        text="Water the plants",
        instructions="Only the ones on the balcony",
        assignee="Sam",
        proof="file",
    )
    card = await _card(bot, schedule)
    assert {"Proof: file", "Assignee: Sam", "Instructions: Only the ones on the balcony"} <= set(
        card
    )


async def test_a_forged_budget_press_on_the_policies_menu_is_an_admins_only(
    bot: BotHarness,
) -> None:
    """The menu has no budget button; data forged for one is held to /edit's rule."""
    olga = bot.olga
    schedule = await bot.services.service.create_schedule(
        OLGA,
        Owner(id=OLGA, first_name="Olga"),
        name="Olga's brief",
        trigger=DAILY_9,
        action=Action(text="Prepare the brief."),
    )
    await olga.send(f"/show {schedule.id}")
    card = await olga.wait_reply(containing="Run approval:")
    query = await olga.press_data(f"o:set:{schedule.id}:budget_runs:100000", card.message_id)
    answer = await bot.server.wait_answered(query)
    assert answer.get("text") == "Only an admin can change a schedule's budget."
    found = await bot.services.store.schedules.get(OLGA, schedule.id)
    assert found is not None and found.policies.budget_runs_per_week is None
