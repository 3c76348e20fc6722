"""Spend and volume control as the chat meets it: a schedule with a budget of 10 runs a
week pauses on the 11th fire with one notice and its buttons, [Run once more] lets one
more run through, [Raise to 20] doubles the budget; a token budget pauses the same way;
/budget shows the use."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from bot.demo_kit.harness import ALICE, OLGA, START, BotHarness
from scheduler.models import (
    Action,
    Owner,
    PauseKind,
    Policies,
    Run,
    RunStatus,
    Schedule,
    SkipReason,
)
from scheduler.service import TriggerSpec

HOURLY = TriggerSpec(kind="interval", every_seconds=3600, start_at=START + timedelta(hours=1))
NOTICE = "reached its budget"


async def hourly(bot: BotHarness, policies: Policies, name: str = "Nightly report") -> Schedule:
    return await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name=name,
        trigger=HOURLY,
        action=Action(text="Write the report for {date}."),
        policies=policies,
    )


async def history(bot: BotHarness, sid: str) -> list[Run]:
    """Oldest first."""
    return list(reversed(await bot.services.service.history(ALICE, sid, limit=50)))


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


async def fire(bot: BotHarness, sid: str, hour: int, runs: int) -> None:
    """Move the clock to the `hour`-th fire (0-based) and wait until `runs` runs are
    recorded and none is open."""
    await bot.clock.set(START + timedelta(hours=1 + hour))

    async def recorded() -> bool:
        got = await history(bot, sid)
        return len(got) == runs and all(
            r.status in (RunStatus.SUCCEEDED, RunStatus.SKIPPED) for r in got
        )

    await until(recorded)


def notices(bot: BotHarness) -> list[str]:
    return [m.text or "" for m in bot.alice.messages if NOTICE in (m.text or "")]


async def test_a_schedule_with_a_budget_of_10_runs_a_week_pauses_on_the_11th_with_the_notice(
    bot: BotHarness,
) -> None:
    schedule = await hourly(bot, Policies(budget_runs_per_week=10))
    sid = schedule.id
    for hour in range(10):
        await fire(bot, sid, hour, hour + 1)
    assert [r.status for r in await history(bot, sid)] == [RunStatus.SUCCEEDED] * 10

    # The 11th fire is not sent: it is recorded skipped with the reason, the schedule paused.
    await fire(bot, sid, 10, 11)
    notice = await bot.alice.wait_reply(containing=NOTICE)
    assert (notice.text or "").startswith(
        "⏸ 'Nightly report' reached its budget: 10 runs this week."
    )
    assert notice.button_labels() == ["Raise to 20", "Run once more", "Keep paused"]
    eleventh = (await history(bot, sid))[-1]
    assert eleventh.status is RunStatus.SKIPPED
    assert eleventh.skip_reason is SkipReason.BUDGET
    assert eleventh.error == "budget: 10 runs this week reached"
    paused = await bot.services.service.get_schedule(ALICE, sid)
    assert not paused.enabled and paused.pause_kind is PauseKind.BUDGET
    assert paused.pause_reason == "budget: 10 runs this week reached"
    assert len(bot.agent.requests) == 10

    # Paused, it fires no more; and the chat was told exactly once.
    await bot.clock.set(START + timedelta(hours=14))
    await asyncio.sleep(0.2)
    assert len(await history(bot, sid)) == 11
    assert len(notices(bot)) == 1

    # An operator who is not an admin cannot answer it (her press, from her own chat,
    # is refused before anything is looked up).
    await bot.clock.set(START + timedelta(hours=14, minutes=30))
    olga_try = await bot.olga.press_data(
        notice.callback_data("Run once more") or "", notice.message_id
    )
    answer = await bot.server.wait_answered(olga_try)
    assert answer.get("text")
    assert not (await bot.services.service.get_schedule(ALICE, sid)).enabled

    # [Run once more]: exactly one more run, then it pauses again.
    once = await bot.alice.press("Run once more", notice)
    assert (await bot.server.wait_answered(once)).get("text") == "Resumed for one more run."
    edited = await bot.alice.wait_edit(notice.message_id)
    assert "runs once more" in (edited.text or "") and edited.button_labels() == []
    assert (await bot.services.service.get_schedule(ALICE, sid)).enabled
    # The three fires that passed while it was paused are recorded skipped, as /resume does.
    assert [r.skip_reason for r in await history(bot, sid)][-3:] == [SkipReason.PAUSED] * 3
    await fire(bot, sid, 14, 15)
    assert (await history(bot, sid))[-1].status is RunStatus.SUCCEEDED
    assert len(bot.agent.requests) == 11
    await fire(bot, sid, 15, 16)
    again = await bot.alice.wait_reply(containing=NOTICE)
    assert (await history(bot, sid))[-1].skip_reason is SkipReason.BUDGET
    assert not (await bot.services.service.get_schedule(ALICE, sid)).enabled
    assert len(bot.agent.requests) == 11

    # The first notice's button, pressed again, is answered and changes nothing.
    stale = await bot.alice.press_data(
        notice.callback_data("Run once more") or "", notice.message_id
    )
    stale_answer = await bot.server.wait_answered(stale)
    assert "Already answered" in (stale_answer.get("text") or "")
    assert not (await bot.services.service.get_schedule(ALICE, sid)).enabled

    # [Raise to 20]: the budget doubled, and it fires again.
    await bot.alice.press("Raise to 20", again)
    raised = await bot.alice.wait_edit(again.message_id)
    assert "raised to 20 runs" in (raised.text or "")
    resumed = await bot.services.service.get_schedule(ALICE, sid)
    assert resumed.enabled and resumed.policies.budget_runs_per_week == 20
    await fire(bot, sid, 16, 17)
    assert (await history(bot, sid))[-1].status is RunStatus.SUCCEEDED
    assert len(bot.agent.requests) == 12
    # Pressing it twice is answered, not applied twice.
    twice = await bot.alice.press_data(again.callback_data("Raise to 20") or "", again.message_id)
    assert "Already answered" in ((await bot.server.wait_answered(twice)).get("text") or "")
    assert (await bot.services.service.get_schedule(ALICE, sid)).policies.budget_runs_per_week == 20


async def test_keep_paused_removes_the_buttons_and_leaves_it_paused(bot: BotHarness) -> None:
    schedule = await hourly(bot, Policies(budget_runs_per_week=1))
    await fire(bot, schedule.id, 0, 1)
    await fire(bot, schedule.id, 1, 2)
    notice = await bot.alice.wait_reply(containing=NOTICE)
    assert "1 run this week" in (notice.text or "")
    await bot.alice.press("Keep paused", notice)
    kept = await bot.alice.wait_edit(notice.message_id)
    assert kept.button_labels() == [] and "stays paused" in (kept.text or "")
    assert not (await bot.services.service.get_schedule(ALICE, schedule.id)).enabled


async def test_a_token_budget_pauses_when_the_weeks_runs_used_it(openai_bot: BotHarness) -> None:
    bot = openai_bot
    bot.agent.openai_answer("Report done.", usage={"total_tokens": 50_000})
    schedule = await hourly(bot, Policies(budget_tokens_per_week=120_000))
    sid = schedule.id
    for hour in range(3):  # 50k, 100k, 150k: the third run starts under 120k, ends over
        await fire(bot, sid, hour, hour + 1)
    await fire(bot, sid, 3, 4)
    notice = await bot.alice.wait_reply(containing=NOTICE)
    assert (notice.text or "").startswith(
        "⏸ 'Nightly report' reached its budget: 120,000 tokens this week."
    )
    assert notice.button_labels() == ["Raise to 240,000", "Run once more", "Keep paused"]
    last = (await history(bot, sid))[-1]
    assert last.skip_reason is SkipReason.BUDGET
    assert last.error == "budget: 120,000 tokens this week reached"

    await bot.alice.send("/budget")
    screen = await bot.alice.wait_reply(containing="Budget")
    assert "week 3 runs, 150,000 tokens" in (screen.text or "")
    assert "limit: 120,000 tokens/week" in (screen.text or "")


async def test_budget_sets_the_chats_limit_and_refuses_nonsense(bot: BotHarness) -> None:
    await bot.alice.send("/budget runs 50")
    reply = await bot.alice.wait_reply()
    assert "50 runs/week" in (reply.text or "")
    await bot.alice.send("/budget tokens lots")
    refusal = await bot.alice.wait_reply()
    assert "'lots' is not a number" in (refusal.text or "")
    prefs = await bot.services.store.chats.get(ALICE)
    assert prefs.budget_runs_per_week == 50 and prefs.budget_tokens_per_week is None
    # An operator sees the use but may not lift the limit the admin's buttons guard.
    await bot.olga.send("/budget off")
    assert "Only an admin" in ((await bot.olga.wait_reply()).text or "")


async def test_edit_sets_a_budget_shown_on_the_card_and_refuses_nonsense(bot: BotHarness) -> None:
    schedule = await hourly(bot, Policies())
    await bot.alice.send(f"/edit {schedule.ref} budget_runs 10")
    changed = await bot.alice.wait_reply()
    assert "Budget: 10 runs/week (last 7 days)" in (changed.text or "")
    await bot.alice.send(f"/edit {schedule.ref} budget_tokens lots")
    refusal = await bot.alice.wait_reply()
    assert refusal.text == (
        "The tokens budget must be a whole number per week from 1 to 10,000,000,000, or off."
    )
    # An operator, even on a schedule of her own chat, may not change a spending limit.
    hers = await bot.services.service.create_schedule(
        OLGA,
        Owner(id=OLGA, first_name="Olga"),
        name="Olga's report",
        trigger=HOURLY,
        action=Action(text="Report."),
    )
    await bot.olga.send(f"/edit {hers.ref} budget_runs 5")
    assert (await bot.olga.wait_reply()).text == "Only an admin can change a schedule's budget."
    await bot.alice.send(f"/edit {schedule.ref} budget_runs off")
    await bot.alice.wait_reply()
    current = await bot.services.service.get_schedule(ALICE, schedule.id)
    assert current.policies.budget_runs_per_week is None
    assert current.policies.budget_tokens_per_week is None


async def test_a_chats_budget_pauses_the_schedule_that_reaches_it_and_raise_doubles_it(
    bot: BotHarness,
) -> None:
    first = await hourly(bot, Policies(), name="First")
    second = await hourly(bot, Policies(), name="Second")
    third = await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name="Third",
        trigger=TriggerSpec(kind="once", at=START + timedelta(hours=2, seconds=10)),
        action=Action(text="Once."),
    )
    await bot.alice.send("/budget runs 3")
    await bot.alice.wait_reply(containing="3 runs/week")
    await fire(bot, first.id, 0, 1)
    await fire(bot, first.id, 1, 2)

    notice = await bot.alice.wait_reply(containing="reached this chat's budget: 3 runs this week")
    assert notice.button_labels() == ["Raise to 6", "Run once more", "Keep paused"]
    schedules = [await bot.services.service.get_schedule(ALICE, s.id) for s in (first, second)]
    [paused] = [s for s in schedules if not s.enabled]
    assert paused.pause_reason == "chat budget: 3 runs this week reached"

    await bot.alice.send("/budget")
    screen = await bot.alice.wait_reply(containing="Budget")
    assert "This chat's limit: 3 runs/week" in (screen.text or "")
    assert "week 3 runs, 0 tokens" in (screen.text or "")
    assert "⏸ paused at its budget" in (screen.text or "")

    await bot.alice.press("Raise to 6", notice)
    raised = await bot.alice.wait_edit(notice.message_id)
    assert "This chat's budget raised to 6 runs a week" in (raised.text or "")
    prefs = await bot.services.store.chats.get(ALICE)
    assert prefs.budget_runs_per_week == 6
    assert (await bot.services.service.get_schedule(ALICE, paused.id)).enabled

    # A fire ten seconds after the raise runs on the raised budget, though the engine
    # read the chat's budget at the fire before (and keeps what it read a while).
    await bot.clock.set(START + timedelta(hours=2, seconds=10))
    await until(lambda: ran(bot, third.id, 1))
    for schedule in (first, second, third):
        assert (await bot.services.service.get_schedule(ALICE, schedule.id)).enabled


async def ran(bot: BotHarness, sid: str, count: int) -> bool:
    return [r.status for r in await history(bot, sid)].count(RunStatus.SUCCEEDED) == count


def listening(name: str, policies: Policies, trigger: TriggerSpec) -> dict[str, object]:
    return {
        "name": name,
        "trigger": trigger,
        "action": Action(text="React to {event}."),
        "policies": policies,
    }


async def test_an_event_schedule_pauses_at_its_budget_instead_of_running_on(
    bot: BotHarness,
) -> None:
    service = bot.services.service
    schedule = await service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        **listening(
            "On deploy", Policies(budget_runs_per_week=2), TriggerSpec(kind="event", name="deploy")
        ),  # type: ignore[arg-type]
    )
    for n in (1, 2):
        await service.emit_event([ALICE], "deploy", {"n": n}, caller="api")
        await until(lambda n=n: ran(bot, schedule.id, n))  # type: ignore[misc]

    third = await service.emit_event([ALICE], "deploy", {"n": 3}, caller="api")
    [run] = third.runs
    assert run.status is RunStatus.SKIPPED and run.skip_reason is SkipReason.BUDGET
    notice = await bot.alice.wait_reply(containing=NOTICE)
    assert (notice.text or "").startswith("⏸ 'On deploy' reached its budget: 2 runs this week.")
    assert "the run an event fired at" in (notice.text or "")
    assert notice.button_labels() == ["Raise to 4", "Run once more", "Keep paused"]
    paused = await service.get_schedule(ALICE, schedule.id)
    assert not paused.enabled and paused.pause_kind is PauseKind.BUDGET
    # Paused, the next event fires nothing; the agent saw two runs, the chat one notice.
    assert (await service.emit_event([ALICE], "deploy", {"n": 4}, caller="api")).runs == []
    await asyncio.sleep(0.2)
    assert len(bot.agent.requests) == 2
    assert len(notices(bot)) == 1

    # [Run once more] lets exactly the next event's run through.
    await bot.alice.press("Run once more", notice)
    await bot.alice.wait_edit(notice.message_id)
    await service.emit_event([ALICE], "deploy", {"n": 5}, caller="api")
    await until(lambda: ran(bot, schedule.id, 3))
    assert len(bot.agent.requests) == 3


async def test_a_burst_of_events_waiting_for_approval_stays_within_the_budget(
    bot: BotHarness,
) -> None:
    """Runs waiting to start (here: for approval) count: five events at once on a
    schedule with a budget of 2 make two runs to approve, and the third pauses it."""
    service = bot.services.service
    schedule = await service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        **listening(
            "On deploy",
            Policies(budget_runs_per_week=2, requires_run_approval=True),
            TriggerSpec(kind="event", name="deploy"),
        ),  # type: ignore[arg-type]
    )
    fired = [
        (await service.emit_event([ALICE], "deploy", {"n": n}, caller="api")).runs for n in range(5)
    ]
    assert [len(runs) for runs in fired] == [1, 1, 1, 0, 0]
    statuses = [runs[0].status for runs in fired[:3]]
    assert statuses == [RunStatus.AWAITING_APPROVAL] * 2 + [RunStatus.SKIPPED]
    assert fired[2][0].skip_reason is SkipReason.BUDGET
    assert not (await service.get_schedule(ALICE, schedule.id)).enabled
    await bot.alice.wait_reply(containing=NOTICE)
    # The schedule is paused, so approving its waiting runs sends nothing either, as
    # for any paused schedule; [Raise] (or /resume) is the way on.
    for runs in fired[:2]:
        await service.approve_run(ALICE, runs[0].id)

    async def closed() -> bool:
        return all(r.status is RunStatus.SKIPPED for r in await history(bot, schedule.id))

    await until(closed)
    reasons = [r.skip_reason for r in await history(bot, schedule.id)]
    assert reasons.count(SkipReason.PAUSED) == 2 and reasons.count(SkipReason.BUDGET) == 1
    assert len(bot.agent.requests) == 0


async def test_a_schedule_chained_after_another_pauses_at_its_budget(bot: BotHarness) -> None:
    upstream = await hourly(bot, Policies(), name="Build")
    follower = await bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        **listening(
            "Announce",
            Policies(budget_runs_per_week=1),
            TriggerSpec.model_validate({"kind": "after", "schedule": upstream.id, "on": "success"}),
        ),  # type: ignore[arg-type]
    )
    await fire(bot, upstream.id, 0, 1)
    await until(lambda: ran(bot, follower.id, 1))
    await fire(bot, upstream.id, 1, 2)
    notice = await bot.alice.wait_reply(containing=NOTICE)
    assert (notice.text or "").startswith("⏸ 'Announce' reached its budget: 1 run this week.")
    [first, second] = await history(bot, follower.id)
    assert first.status is RunStatus.SUCCEEDED
    assert second.status is RunStatus.SKIPPED and second.skip_reason is SkipReason.BUDGET
    assert not (await bot.services.service.get_schedule(ALICE, follower.id)).enabled
    # Two builds and one announcement reached the agent.
    assert len(bot.agent.requests) == 3
