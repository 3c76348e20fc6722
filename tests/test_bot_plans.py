"""A plan as the operator meets it in the chat: a failed step is one message naming the
step and the steps skipped; a step that asks first is an Approve/Skip card whose Approve
goes on with the plan; /show lists the steps and /history names each step run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bot.demo_kit.agent_stub import RecordedRequest
from bot.demo_kit.harness import ALICE, BotHarness
from scheduler.models import (
    Action,
    ActionKind,
    Owner,
    Policies,
    RetryPolicy,
    Run,
    RunStatus,
    Step,
)
from scheduler.service import TriggerSpec

#: Tuesday 24 November 2026, 02:00 in Berlin.
TWO_BERLIN = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
NIGHTLY = TriggerSpec(kind="cron", cron="0 2 * * *", timezone="Europe/Berlin")


async def nightly(bot: BotHarness, *steps: Step) -> str:
    schedule = await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name="Nightly digest",
        trigger=NIGHTLY,
        action=Action(kind=ActionKind.PLAN, text="Nightly digest", steps=steps),
        policies=Policies(retry=RetryPolicy(max_attempts=1)),
    )
    return schedule.id


async def runs(bot: BotHarness, sid: str) -> list[Run]:
    found = await bot.services.store.runs.list_for_chat(ALICE, schedule_id=sid, limit=20)
    return sorted(found, key=lambda r: r.scheduled_for)


async def until(predicate: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


COLLECT = Step(title="Collect", text="Collect what changed.")
SUMMARISE = Step(title="Summarise", text="Summarise it.")
PUBLISH = Step(title="Publish", text="Publish it.")


async def test_a_failed_step_is_one_message_naming_the_steps_skipped(bot: BotHarness) -> None:
    def fail_step_2(request: RecordedRequest) -> int:
        return 500 if request.headers["idempotency-key"].endswith("#step-2") else 200

    bot.agent.respond_with(fail_step_2)
    sid = await nightly(bot, COLLECT, SUMMARISE, PUBLISH)
    await bot.clock.set(TWO_BERLIN)

    async def stopped() -> bool:
        return [r.status for r in await runs(bot, sid)] == [
            RunStatus.SUCCEEDED,
            RunStatus.DEAD,
            RunStatus.SKIPPED,
        ]

    await until(stopped)
    alert = await bot.alice.wait_reply(containing="stopped at")
    text = alert.text or ""
    assert "the plan run for Tue 24 Nov 02:00" in text
    assert "stopped at step 2/3 (Summarise), which failed after 1 attempt" in text
    assert "Skipped: step 3/3 (Publish)." in text
    assert alert.button_labels() == ["Retry", "History"]
    await asyncio.sleep(0.3)  # anything else would have been sent by now
    assert [m.text for m in bot.alice.messages] == [alert.text]

    await bot.alice.send(f"/history {sid}")
    history = await bot.alice.wait_reply(containing="History of")
    lines = (history.text or "").splitlines()
    assert any("skipped, step 3/3 (Publish) — step 2 failed" in line for line in lines)
    assert any("dead, step 2/3 (Summarise)" in line for line in lines)

    await bot.alice.send(f"/show {sid}")
    card = await bot.alice.wait_reply(containing="Plan: 3 steps")
    assert "  2. Summarise" in (card.text or "")


async def test_a_step_that_asks_first_goes_on_when_approved(bot: BotHarness) -> None:
    guarded = PUBLISH.model_copy(update={"requires_approval": True})
    sid = await nightly(bot, COLLECT, SUMMARISE, guarded)
    await bot.clock.set(TWO_BERLIN)
    card = await bot.alice.wait_reply(containing="wants to run step 3/3 (Publish) of its plan")
    assert card.button_labels() == ["Approve", "Skip"]
    assert [r.status for r in await runs(bot, sid)] == [
        RunStatus.SUCCEEDED,
        RunStatus.SUCCEEDED,
        RunStatus.AWAITING_APPROVAL,
    ]
    await bot.alice.press("Approve", card)

    async def done() -> bool:
        return [r.status for r in await runs(bot, sid)] == [RunStatus.SUCCEEDED] * 3

    await until(done)
    keys = [r.headers["idempotency-key"] for r in bot.agent.requests]
    assert [k.rsplit("#", 1)[1] for k in keys] == ["step-1", "step-2", "step-3"]


async def test_a_step_that_may_fail_is_announced_and_the_plan_goes_on(bot: BotHarness) -> None:
    def fail_step_2(request: RecordedRequest) -> int:
        return 500 if request.headers["idempotency-key"].endswith("#step-2") else 200

    bot.agent.respond_with(fail_step_2)
    lenient = SUMMARISE.model_copy(update={"continue_on_failure": True})
    sid = await nightly(bot, COLLECT, lenient, PUBLISH)
    await bot.clock.set(TWO_BERLIN)
    alert = await bot.alice.wait_reply(containing="failed after")
    assert "for Tue 24 Nov 02:00 (+01:00), step 2/3 (Summarise), failed after 1 attempt" in (
        alert.text or ""
    )

    async def done() -> bool:
        return [r.status for r in await runs(bot, sid)] == [
            RunStatus.SUCCEEDED,
            RunStatus.DEAD,
            RunStatus.SUCCEEDED,
        ]

    await until(done)
