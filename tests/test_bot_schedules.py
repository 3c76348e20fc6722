"""Managing schedules and runs from the chat: /schedules, a schedule's card and its
buttons, /pause /resume /delete /runnow, /history, /deadletters, /retry, the buttons
on alerts, and one chat never reaching another chat's schedules or runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.demo_kit.harness import ALICE, OLGA, BotHarness
from bot.demo_kit.telegram_server import BotMessage, TgUser
from scheduler.models import Action, Owner, Policies, RetryPolicy, Run, RunStatus, Schedule
from scheduler.service import TriggerSpec

DAILY_9 = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")
NOT_HERE = "There is no schedule '{}' here; /schedules lists them."


async def seed(
    bot: BotHarness,
    name: str = "Daily brief",
    *,
    chat: int = ALICE,
    policies: Policies | None = None,
) -> Schedule:
    owner = Owner(id=chat, first_name="Alice" if chat == ALICE else "Olga")
    return await bot.services.service.create_schedule(
        chat,
        owner,
        name=name,
        trigger=DAILY_9,
        action=Action(text="Prepare the brief."),
        policies=policies,
    )


def text(message: BotMessage) -> str:
    return message.text or ""


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 1.5) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def a_marker_run_reached_the_agent(bot: BotHarness) -> None:
    """Run another schedule now and wait until the agent has its request: runs started
    before it (one sent twice by mistake) have reached the agent by then."""
    marker = await seed(bot, "Marker")
    await bot.services.service.run_now(ALICE, marker.id)

    async def arrived() -> bool:
        return any(r.headers["idempotency-key"].startswith(marker.id) for r in bot.agent.requests)

    await eventually(arrived)


async def runs_of(bot: BotHarness, schedule: Schedule) -> list[Run]:
    return await bot.services.store.runs.list_for_chat(schedule.chat_id, schedule_id=schedule.id)


async def toast(bot: BotHarness, query_id: str) -> str:
    answer = await bot.server.wait_answered(query_id)
    return str(answer.get("text") or "")


async def open_card(user: TgUser, schedule: Schedule) -> BotMessage:
    await user.send(f"/show {schedule.id}")
    return await user.wait_reply()


# --- /schedules ---------------------------------------------------------------------------
async def test_schedules_lists_five_a_page_and_pages_in_place(bot: BotHarness) -> None:
    await bot.alice.send("/schedules")
    assert text(await bot.alice.wait_reply()) == "No schedules yet. Create one with /new."

    for n in range(1, 8):
        await seed(bot, f"Brief {n}")
    await bot.alice.send("/schedules")
    first = await bot.alice.wait_reply()
    assert "page 1 of 2" in text(first)
    assert all(f"Brief {n}" in text(first) for n in range(1, 6))
    assert "Brief 6" not in text(first)
    assert first.button_labels() == [f"#{n} Brief {n}" for n in range(1, 6)] + ["Next ▶"]
    # Each line has the schedule's number and its next fire, local time with the offset.
    assert "#1 Brief 1 — At 09:00 AM (Europe/Berlin)\n    Next: Mon 23 Nov 09:00 (+01:00)" in (
        text(first)
    )

    await bot.alice.press("Next ▶")
    second = await bot.alice.wait_edit(first.message_id)
    assert "page 2 of 2" in text(second)
    assert "Brief 6" in text(second) and "Brief 7" in text(second)
    assert "Brief 5" not in text(second)
    assert second.button_labels() == ["#6 Brief 6", "#7 Brief 7", "◀ Prev"]

    await bot.alice.press("◀ Prev")
    again = await bot.alice.wait_edit(first.message_id)
    assert text(again) == text(first)

    # A schedule's button opens its card.
    await bot.alice.press("#2 Brief 2")
    card = await bot.alice.wait_reply()
    assert text(card).startswith("Brief 2") and "Status: ▶️ active" in text(card)


# --- the card -----------------------------------------------------------------------------
async def test_the_card_pauses_and_resumes_in_place(bot: BotHarness) -> None:
    schedule = await seed(bot)
    card = await open_card(bot.alice, schedule)
    body = text(card)
    assert body.startswith("Daily brief") and "Status: ▶️ active" in body
    assert "At 09:00 AM (Europe/Berlin)" in body and "Zone: Europe/Berlin" in body
    # The next three fires, local time with the UTC offset.
    assert "Mon 23 Nov 09:00 (+01:00)" in body and "Wed 25 Nov 09:00 (+01:00)" in body
    assert "Last run: none yet" in body and "Created by: operator (Alice)" in body
    assert card.button_labels() == ["Run now", "Pause", "History", "Edit", "Delete", "Policies"]

    query = await bot.alice.press("Pause", card)
    assert await toast(bot, query) == "Paused 'Daily brief'."
    paused = await bot.alice.wait_edit(card.message_id)
    assert "paused (by Alice)" in text(paused)
    assert "Paused: no fires until resumed." in text(paused) and "(+01:00)" not in text(paused)
    assert "Resume" in paused.button_labels()

    # A day passes while paused: resume runs nothing for it and says so.
    await bot.clock.advance(timedelta(days=1))
    query = await bot.alice.press("Resume", card)
    assert await toast(bot, query) == "Resumed 'Daily brief'. 1 passed window recorded as skipped."
    resumed = await bot.alice.wait_edit(card.message_id)
    assert "Status: ▶️ active" in text(resumed)
    assert "• Tue 24 Nov 09:00 (+01:00)" in text(resumed) and "• Mon" not in text(resumed)
    assert "Last run: ⏭ Mon 23 Nov 09:00 (+01:00) skipped — schedule was paused" in text(resumed)
    assert "Pause" in resumed.button_labels()
    await a_marker_run_reached_the_agent(bot)
    assert len(bot.agent.requests) == 1  # the marker's: nothing ran for the passed window

    await bot.alice.press("Edit", card)
    how = await bot.alice.wait_reply()
    assert "/edit #1 field value" in text(how)


async def test_pause_and_resume_by_command(bot: BotHarness) -> None:
    schedule = await seed(bot)
    await bot.alice.send(f"/pause {schedule.id} on holiday")
    assert "Paused Daily brief" in text(await bot.alice.wait_reply())
    await bot.alice.send(f"/pause {schedule.id}")
    assert text(await bot.alice.wait_reply()) == (
        "'Daily brief' is already paused; /resume starts it again."
    )
    card = await open_card(bot.alice, schedule)
    assert "paused (by Alice: on holiday)" in text(card)

    await bot.clock.advance(timedelta(days=2))
    await bot.alice.send(f"/resume {schedule.id}")
    reply = text(await bot.alice.wait_reply())
    assert reply.startswith("▶️ Resumed Daily brief. Next fire: Wed 25 Nov 09:00 (+01:00).")
    assert "2 windows that passed while it was paused were recorded as skipped" in reply
    await bot.alice.send(f"/resume {schedule.id}")
    assert text(await bot.alice.wait_reply()) == "'Daily brief' is not paused."


# --- ids a thumb can type -----------------------------------------------------------------
async def test_a_schedule_is_named_by_its_number_or_a_short_prefix_of_its_id(
    bot: BotHarness,
) -> None:
    service, owner = bot.services.service, Owner(id=ALICE, first_name="Alice")

    async def add(sid: str, name: str) -> Schedule:
        return await service.create_schedule(
            ALICE, owner, name=name, trigger=DAILY_9, action=Action(text="Go."), schedule_id=sid
        )

    brief = await add("BRIEF-0001", "Daily brief")
    await add("BRIEF-0002", "Evening brief")
    sponsors = await add("ZQ7X-SPONSORS", "Sponsors")
    assert (brief.ref, sponsors.ref) == ("#1", "#3")

    await bot.alice.send("/pause #1")
    assert text(await bot.alice.wait_reply()) == (
        "⏸ Paused Daily brief. It will not fire until /resume #1; its history is kept."
    )
    await bot.alice.send("/resume 1")
    assert text(await bot.alice.wait_reply()).startswith("▶️ Resumed Daily brief.")
    # Four characters of the id, in whatever case the phone typed them.
    await bot.alice.send("/pause zq7x")
    assert text(await bot.alice.wait_reply()).startswith("⏸ Paused Sponsors.")
    await bot.alice.send("/show zq7x")
    assert "ID: #3 (ZQ7X-SPONSORS)" in text(await bot.alice.wait_reply())

    # A prefix two schedules share names neither; the answer lists both.
    await bot.alice.send("/pause brie")
    assert text(await bot.alice.wait_reply()) == (
        "'brie' matches more than one schedule (#1 Daily brief (BRIEF-0001), "
        "#2 Evening brief (BRIEF-0002)); type more of the id, or the number."
    )
    # Three characters are too few to guess from, and a number not in this chat is unknown.
    for ref in ("zq7", "#9"):
        await bot.alice.send(f"/pause {ref}")
        assert text(await bot.alice.wait_reply()) == NOT_HERE.format(ref)
    assert (await service.get_schedule(ALICE, "BRIEF-0002")).enabled
    # Olga's chat numbers its own schedules, and Alice's numbers mean nothing there.
    await bot.olga.send("/pause 1")
    assert text(await bot.olga.wait_reply()) == NOT_HERE.format("1")

    # An archived schedule's number is never given again.
    await service.archive(ALICE, "#3")
    fourth = await add("LATER-0004", "Later")
    assert fourth.ref == "#4"
    await bot.alice.send("/show 3")
    assert text(await bot.alice.wait_reply()) == NOT_HERE.format("3")


# --- runs -----------------------------------------------------------------------------------
async def test_run_now_from_the_card_then_history_shows_it(bot: BotHarness) -> None:
    schedule = await seed(bot)
    await bot.alice.send("/history")
    assert text(await bot.alice.wait_reply()).startswith("No runs yet for this chat.")

    card = await open_card(bot.alice, schedule)
    query = await bot.alice.press("Run now", card)
    assert await toast(bot, query) == "Sent to your agent."
    await bot.agent.wait_for_requests(1)

    async def succeeded() -> bool:
        runs = await runs_of(bot, schedule)
        return bool(runs) and runs[0].status is RunStatus.SUCCEEDED

    await eventually(succeeded)
    await bot.alice.send("/history")
    reply = await bot.alice.wait_reply(containing="Recent runs")
    assert "Daily brief: ✅" in text(reply) and "succeeded (manual)" in text(reply)
    await bot.alice.send(f"/history {schedule.id}")
    reply = await bot.alice.wait_reply(containing="History of Daily brief")
    assert "succeeded (manual)" in text(reply)

    await bot.clock.advance(timedelta(seconds=1))  # a run now is keyed by its instant
    await bot.alice.send(f"/runnow {schedule.id}")
    assert "Sending Daily brief to your agent now" in text(
        await bot.alice.wait_reply(containing="Sending")
    )
    await bot.agent.wait_for_requests(2)


# In telegram mode (the default) the agent answers the chat through its own bot: Tickler
# says where the run went, then confirms in place whether the agent took it.
SENDING = (
    "▶️ Sending Daily brief to your agent now ({}); its answer comes from the agent itself, "
    "not from me."
)


async def test_run_now_in_telegram_mode_is_confirmed_in_place_when_delivered(
    bot: BotHarness,
) -> None:
    await seed(bot)
    await bot.clock.advance(timedelta(seconds=3))
    await bot.alice.send("/runnow #1")
    sent = await bot.alice.wait_reply()
    assert text(sent) == SENDING.format("08:00:03")
    await bot.agent.wait_for_requests(1)
    delivered = await bot.alice.wait_edit(sent.message_id)
    assert text(delivered) == SENDING.format("08:00:03") + (
        "\n✅ Delivered: your agent took it at 08:00:03."
    )
    # The agent answers through its own bot: nothing else comes from Tickler.
    assert [m.message_id for m in bot.alice.messages][-1] == sent.message_id


async def test_run_now_in_telegram_mode_is_confirmed_in_place_when_it_fails(
    bot: BotHarness,
) -> None:
    bot.agent.respond_with(500)
    schedule = await seed(bot, policies=Policies(retry=RetryPolicy(max_attempts=2)))
    await bot.alice.send("/runnow 1")
    sent = await bot.alice.wait_reply()
    assert text(sent) == SENDING.format("08:00:00")
    retrying = text(await bot.alice.wait_edit(sent.message_id))
    assert retrying.startswith(
        SENDING.format("08:00:00")
        + "\n🔁 Attempt 1 failed (The agent answered HTTP 500); trying again at 08:0"
    )
    [run] = await runs_of(bot, schedule)
    assert run.status is RunStatus.FAILED and run.next_attempt_at is not None
    await bot.clock.advance(run.next_attempt_at - bot.clock.now())
    failed = await bot.alice.wait_edit(sent.message_id)
    assert text(failed) == SENDING.format("08:00:00") + (
        "\n❌ Failed: not delivered after 2 attempts (The agent answered HTTP 500). "
        "/deadletters has it."
    )
    assert len(bot.agent.requests) == 2


async def test_run_now_while_a_run_is_in_progress_says_it_is_queued_behind_it(
    bot: BotHarness,
) -> None:
    gate = asyncio.Event()

    async def held(_: object) -> int:
        await gate.wait()
        return 200

    bot.agent.respond_with(held)
    await seed(bot)
    await bot.alice.send("/runnow 1")
    await bot.alice.wait_reply()
    await bot.agent.wait_for_requests(1)  # the agent holds it: the run is in progress
    await bot.clock.advance(timedelta(seconds=5))
    await bot.alice.send("/runnow 1")
    queued = await bot.alice.wait_reply()
    assert text(queued) == (
        "⏳ Daily brief is already running (since 08:00:00); this run is queued behind it "
        "and starts when it finishes; its answer comes from the agent itself, not from me."
    )
    assert len(bot.agent.requests) == 1
    gate.set()
    await bot.agent.wait_for_requests(2)  # then it runs
    delivered = await bot.alice.wait_edit(queued.message_id)
    assert text(delivered).endswith("✅ Delivered: your agent took it at 08:00:05.")


async def test_history_pages_with_buttons(bot: BotHarness) -> None:
    schedule = await seed(bot)
    # Twelve days of fires recorded as skipped while paused.
    await bot.services.service.pause(ALICE, schedule.id, by=ALICE)
    await bot.clock.advance(timedelta(days=12))
    await bot.services.service.resume(ALICE, schedule.id)

    await bot.alice.send(f"/history {schedule.id}")
    first = await bot.alice.wait_reply()
    assert "page 1" in text(first) and text(first).count("skipped") == 10
    assert first.button_labels() == [str(n) for n in range(1, 11)] + ["Next ▶"]
    await bot.alice.press("Next ▶", first)
    second = await bot.alice.wait_edit(first.message_id)
    assert "page 2" in text(second) and text(second).count("skipped") == 2
    assert second.button_labels() == ["1", "2", "◀ Prev"]

    # The chat-wide history pages the same way.
    await bot.alice.send("/history")
    chat_wide = await bot.alice.wait_reply()
    await bot.alice.press("Next ▶", chat_wide)
    assert "page 2" in text(await bot.alice.wait_edit(chat_wide.message_id))


async def test_a_runs_detail_shows_attempts_error_output_tokens_and_its_key(
    openai_bot: BotHarness,
) -> None:
    bot = openai_bot
    bot.agent.script([500])
    bot.agent.openai_answer("All quiet today.", {"prompt_tokens": 10, "total_tokens": 14})
    schedule = await seed(bot, policies=Policies(retry=RetryPolicy(max_attempts=2)))
    run = await bot.services.service.run_now(ALICE, schedule.id)

    async def status_is(status: RunStatus) -> bool:
        return (await bot.services.service.get_run(ALICE, run.id)).status is status

    await eventually(lambda: status_is(RunStatus.FAILED))
    failed = await bot.services.service.get_run(ALICE, run.id)
    assert failed.next_attempt_at is not None
    await bot.clock.advance(failed.next_attempt_at - bot.clock.now())
    await eventually(lambda: status_is(RunStatus.SUCCEEDED))
    again = failed.next_attempt_at.astimezone(ZoneInfo("Europe/Berlin"))

    await bot.alice.send("/history #1")
    page = await bot.alice.wait_reply(containing="History of")
    assert "1. ✅ Mon 23 Nov 08:00 (+01:00) succeeded (manual)" in text(page)
    await bot.alice.press("1", page)
    detail = text(await bot.alice.wait_reply(containing="Run of"))
    assert detail.startswith(f"Run of Daily brief\nID: {run.id}\nStatus: ✅ Mon 23 Nov 08:00")
    assert (
        "Attempts: 2:\n"
        "  1. failed at Mon 23 Nov 08:00 (+01:00) — The agent answered HTTP 500.\n"
        f"  2. succeeded at Mon 23 Nov {again:%H:%M} (+01:00)\n"
    ) in detail
    assert "Tokens: prompt 10, total 14" in detail
    assert f"Idempotency key: {schedule.id}:2026-11-23T07:00:00Z" in detail
    assert detail.endswith("Output:\nAll quiet today.")

    await bot.alice.send(f"/run {run.id}")
    assert text(await bot.alice.wait_reply()) == detail
    await bot.alice.send("/run NOPE")
    assert text(await bot.alice.wait_reply()) == "There is no run 'NOPE' here; /history lists them."


async def make_dead_run(bot: BotHarness) -> tuple[Schedule, Run]:
    bot.agent.respond_with(500)
    schedule = await seed(bot, policies=Policies(retry=RetryPolicy(max_attempts=1)))
    await bot.services.service.run_now(ALICE, schedule.id)

    async def dead() -> bool:
        runs = await runs_of(bot, schedule)
        return bool(runs) and runs[0].status is RunStatus.DEAD

    await eventually(dead)
    return schedule, (await runs_of(bot, schedule))[0]


async def test_a_dead_run_is_retried_once_from_the_dead_letters(bot: BotHarness) -> None:
    await bot.alice.send("/deadletters")
    assert "Nothing needs you" in text(await bot.alice.wait_reply())

    _, run = await make_dead_run(bot)
    await bot.alice.wait_reply(containing="failed after 1 attempt")  # the alert
    await bot.alice.send("/deadletters")
    header = await bot.alice.wait_reply()
    assert text(header).startswith("💀 1 run needs you.")
    letter = await bot.alice.wait_reply()
    assert "Daily brief" in text(letter) and run.id in text(letter)
    assert letter.buttons == [[("Retry", f"r:retry:{run.id}")]]

    bot.agent.respond_with(200)
    query = await bot.alice.press("Retry", letter)
    assert await toast(bot, query) == "Sent again."
    edited = await bot.alice.wait_edit(letter.message_id)
    assert "Sent again by Alice" in text(edited) and edited.buttons == []
    await bot.agent.wait_for_requests(2)

    # Pressed again (a double tap): nothing is sent twice.
    query = await bot.alice.press_data(f"r:retry:{run.id}", letter.message_id)
    assert (await toast(bot, query)).startswith("That run is already ")

    async def succeeded() -> bool:
        return (await bot.services.service.get_run(ALICE, run.id)).status is RunStatus.SUCCEEDED

    await eventually(succeeded)
    await bot.alice.send("/history")
    history = await bot.alice.wait_reply(containing="Recent runs")
    assert "succeeded (retry)" in text(history)
    await a_marker_run_reached_the_agent(bot)
    assert len(bot.agent.requests) == 3  # the attempt, the retry, the marker

    await bot.alice.send(f"/retry {run.id}")
    assert "only dead runs can be retried" in text(await bot.alice.wait_reply())


async def test_retry_by_command_and_from_the_alert(bot: BotHarness) -> None:
    schedule, run = await make_dead_run(bot)
    alert = await bot.alice.wait_reply(containing="failed after 1 attempt")
    bot.agent.respond_with(200)
    await bot.alice.send(f"/retry {run.id}")
    sent = await bot.alice.wait_reply()
    assert text(sent) == (
        f"🔁 Sending run {run.id} again with the same idempotency key; its answer comes "
        "from the agent itself, not from me."
    )
    await bot.agent.wait_for_requests(2)
    # Telegram mode: the message says, in place, that the agent took it.
    delivered = await bot.alice.wait_edit(sent.message_id)
    assert text(delivered).endswith("\n✅ Delivered: your agent took it at 08:00:00.")
    # The alert's Retry now answers with the run's state; its History still works.
    query = await bot.alice.press("Retry", alert)
    assert (await toast(bot, query)).startswith("That run is already ")
    await bot.alice.press("History", alert)
    assert "History of Daily brief" in text(await bot.alice.wait_reply(containing="History"))
    assert schedule.id


async def test_uncertain_runs_offer_mark_done_and_drop(bot: BotHarness) -> None:
    schedule = await seed(bot)
    store, now = bot.services.store, bot.clock.now()
    runs = []
    for _ in range(2):
        run = await bot.services.service.run_now(ALICE, schedule.id)
        await store.runs.transition(
            ALICE,
            run.id,
            expected=[RunStatus.PENDING],
            changes={"status": RunStatus.UNKNOWN, "error": "timed out"},
            now=now,
        )
        runs.append(run)
        await bot.clock.advance(timedelta(seconds=1))
    await bot.alice.send("/deadletters")
    assert text(await bot.alice.wait_reply()).startswith("💀 2 runs need you.")
    letters = [await bot.alice.wait_reply(), await bot.alice.wait_reply()]
    assert all(m.button_labels() == ["Retry", "Mark done", "Drop"] for m in letters)

    done_id, dropped_id = (next(r.id for r in runs if r.id in text(m)) for m in letters)
    query = await bot.alice.press("Mark done", letters[0])
    assert await toast(bot, query) == "Marked done."
    edited = await bot.alice.wait_edit(letters[0].message_id)
    assert "Marked done by Alice" in text(edited) and edited.buttons == []
    query = await bot.alice.press("Drop", letters[1])
    assert await toast(bot, query) == "Dropped."
    # Pressed again: applied once, and the answer says why.
    query = await bot.alice.press_data(f"r:drop:{dropped_id}", letters[1].message_id)
    assert await toast(bot, query) == "That run is already cancelled."
    query = await bot.alice.press_data(f"r:done:{done_id}", letters[0].message_id)
    assert await toast(bot, query) == "That run is already succeeded."
    statuses = {r.id: r.status for r in await runs_of(bot, schedule)}
    assert statuses == {done_id: RunStatus.SUCCEEDED, dropped_id: RunStatus.CANCELLED}
    await a_marker_run_reached_the_agent(bot)
    assert len(bot.agent.requests) == 1  # the marker's: neither run was sent


# --- /delete --------------------------------------------------------------------------------
async def test_delete_asks_first_and_archives_keeping_history(bot: BotHarness) -> None:
    schedule = await seed(bot)
    await bot.services.service.run_now(ALICE, schedule.id)
    await bot.alice.send(f"/delete {schedule.id}")
    question = await bot.alice.wait_reply()
    assert "Archive Daily brief?" in text(question) and "history is kept" in text(question)
    assert question.button_labels() == ["Archive", "Keep"]

    await bot.alice.press("Keep", question)
    assert "Kept Daily brief; nothing changed." in text(
        await bot.alice.wait_edit(question.message_id)
    )
    card = await open_card(bot.alice, schedule)
    await bot.alice.press("Delete", card)
    question = await bot.alice.wait_reply(containing="Archive")
    query = await bot.alice.press("Archive", question)
    assert await toast(bot, query) == "Archived."
    assert "Archived Daily brief" in text(await bot.alice.wait_edit(question.message_id))

    await bot.alice.send("/schedules")
    assert text(await bot.alice.wait_reply()) == "No schedules yet. Create one with /new."
    assert len(await runs_of(bot, schedule)) == 1  # history kept
    await bot.alice.send(f"/show {schedule.id}")
    assert text(await bot.alice.wait_reply()) == NOT_HERE.format(schedule.id)


# --- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ("/show", "Which schedule? Use /show ID; /schedules lists them."),
        ("/pause", "Which schedule? Use /pause ID; /schedules lists them."),
        ("/resume", "Which schedule? Use /resume ID; /schedules lists them."),
        ("/delete", "Which schedule? Use /delete ID; /schedules lists them."),
        ("/runnow", "Which schedule? Use /runnow ID; /schedules lists them."),
        ("/history", None),
        ("/retry", "Which run? Use /retry RUN_ID; /deadletters lists them."),
    ],
)
async def test_commands_without_an_id_or_with_a_wrong_one(
    bot: BotHarness, command: str, usage: str | None
) -> None:
    await bot.alice.send(command)
    reply = text(await bot.alice.wait_reply())
    if usage is not None:
        assert reply == usage
    await bot.alice.send(f"{command} NOPE<b>")
    wrong = text(await bot.alice.wait_reply())
    if command == "/retry":
        assert wrong == "There is no run 'NOPE<b>' here; /history lists them."
    else:
        assert wrong == NOT_HERE.format("NOPE<b>")


async def test_stale_or_forged_buttons_get_a_plain_answer(bot: BotHarness) -> None:
    await bot.alice.send("/schedules")
    message = await bot.alice.wait_reply()
    for data in ("l:x", "s:nope:ID", "s:pause", "r:zap:ID", "m:latest:ID:x:1", "h:-"):
        query = await bot.alice.press_data(data, message.message_id)
        assert await toast(bot, query) == "That button is out of date; send the command again."
    query = await bot.alice.press_data("s:pause:NOPE:c", message.message_id)
    assert await toast(bot, query) == NOT_HERE.format("NOPE")


# --- one chat, one tenant -------------------------------------------------------------------
async def test_olga_cannot_see_or_touch_alices_schedule(bot: BotHarness) -> None:
    schedule = await seed(bot)
    _, dead = await make_dead_run(bot)
    sid = schedule.id
    await bot.olga.send("/schedules")
    listing = await bot.olga.wait_reply()
    assert text(listing) == "No schedules yet. Create one with /new."
    for command in ("/show", "/pause", "/resume", "/delete", "/runnow", "/history"):
        await bot.olga.send(f"{command} {sid}")
        assert text(await bot.olga.wait_reply()) == NOT_HERE.format(sid)
    await bot.olga.send(f"/retry {dead.id}")
    assert (
        text(await bot.olga.wait_reply())
        == f"There is no run '{dead.id}' here; /history lists them."
    )
    await bot.olga.send("/deadletters")
    assert "Nothing needs you" in text(await bot.olga.wait_reply())

    # Forged buttons answer exactly like an unknown id, and change nothing.
    for action in ("show", "pause", "resume", "run", "hist", "edit", "del", "arch", "keep"):
        data = f"s:{action}:{sid}" + (":c" if action in ("pause", "resume", "run") else "")
        query = await bot.olga.press_data(data, listing.message_id)
        assert await toast(bot, query) == NOT_HERE.format(sid)
    for action in ("retry", "done", "drop", "approve", "skip"):
        query = await bot.olga.press_data(f"r:{action}:{dead.id}", listing.message_id)
        assert await toast(bot, query) == f"There is no run '{dead.id}' here; /history lists them."
    for choice in ("latest", "all", "skip"):
        query = await bot.olga.press_data(f"m:{choice}:{sid}:0:1", listing.message_id)
        assert await toast(bot, query) == NOT_HERE.format(sid)
    # ...even on a message id of Alice's chat.
    query = await bot.olga.press_data(f"s:pause:{sid}:c", 1)
    assert await toast(bot, query) == NOT_HERE.format(sid)

    current = await bot.services.service.get_schedule(ALICE, sid)
    assert current.enabled and current.archived_at is None
    assert await runs_of(bot, schedule) == []
    assert (await bot.services.service.get_run(ALICE, dead.id)).status is RunStatus.DEAD
    assert len(bot.agent.requests) == 1  # only the dead run's one attempt
    assert all(m.chat_id == OLGA for m in bot.olga.messages)


# --- missed fires ---------------------------------------------------------------------------
async def test_run_all_missed_fires_from_the_alert(bot: BotHarness) -> None:
    schedule = await seed(bot)
    # Tickler "was down" for three days: the engine catches up once and asks.
    await bot.clock.advance(timedelta(days=3))
    alert = await bot.alice.wait_reply(containing="missed between")
    assert alert.button_labels() == ["Run latest", "Run all", "Skip"]
    await bot.agent.wait_for_requests(1)  # the policy's catch-up run

    query = await bot.alice.press("Run all", alert)
    assert await toast(bot, query) == "Running all 3 missed fires."
    edited = await bot.alice.wait_edit(alert.message_id)
    assert "Running all 3 missed fires. (chosen by Alice)" in text(edited) and edited.buttons == []
    await bot.agent.wait_for_requests(3)

    async def all_ran() -> bool:
        return all(r.status is RunStatus.SUCCEEDED for r in await runs_of(bot, schedule))

    await eventually(all_ran)
    # A second press changes nothing, and says the fires already ran.
    query = await bot.alice.press_data(alert.callback_data("Run all") or "", alert.message_id)
    assert await toast(bot, query) == (
        "Already done: the 3 missed fires ran. /history shows how they went."
    )
    await a_marker_run_reached_the_agent(bot)
    assert len(bot.agent.requests) == 4  # the 3 missed fires, the marker
    assert len(await runs_of(bot, schedule)) == 3


async def test_skip_missed_fires_that_wait_for_approval(bot: BotHarness) -> None:
    schedule = await seed(bot, policies=Policies(requires_run_approval=True))
    await bot.clock.advance(timedelta(days=3))
    alert = await bot.alice.wait_reply(containing="missed between")
    [waiting] = [r for r in await runs_of(bot, schedule) if r.status is RunStatus.AWAITING_APPROVAL]
    query = await bot.alice.press("Skip", alert)
    assert await toast(bot, query) == "Skipped: nothing will run for that window."
    await bot.alice.wait_edit(alert.message_id)
    assert all(r.status is RunStatus.SKIPPED for r in await runs_of(bot, schedule))
    # The approval buttons for that run now say what it already is.
    query = await bot.alice.press_data(f"r:approve:{waiting.id}", alert.message_id)
    assert await toast(bot, query) == "That run is already skipped."
    await a_marker_run_reached_the_agent(bot)
    assert len(bot.agent.requests) == 1  # the marker's: the skipped run was not sent
