"""/template as an operator meets it: the guided form for a workflow template driven end
to end against the strict Bot API server, what is saved in the real SQLite store, bad
input at each step, Remove last, /cancel, the service's refusal at Save, a stranger.

The fake clock starts Monday 2026-11-23 07:00 UTC = 08:00 in Berlin (the chat's zone).
No template fires here: what a fire makes (the bundle) is not this form's.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pytest

from bot.access import REFUSAL
from bot.commands import COMMANDS
from bot.demo_kit.harness import ALICE, BotHarness
from bot.demo_kit.telegram_server import BotMessage, TgUser
from bot.handlers.template import WHEN_TYPED_HELP
from bot.render import MAX_MESSAGE
from bot.views_schedules import schedule_card
from bot.views_template import (
    LEAD_DAYS_HELP,
    OFFSET_HELP,
    confirm_text,
    offset_words,
    parse_offset,
    template_lines,
)
from scheduler.cron import load_zone
from scheduler.errors import InvalidSchedule
from scheduler.models import Action, ActionKind, Owner, Schedule, Step, StepKind
from scheduler.service import TriggerSpec
from scheduler.specs import Limits
from scheduler.timeutil import format_utc
from scheduler.triggers import CronTrigger, cron_trigger
from scheduler.workflow_steps import MAX_STEP_TITLE, MAX_STEPS, anchor_date

CANCELLED = "Cancelled; nothing was saved."


def text_of(message: BotMessage) -> str:
    return message.text or ""


async def schedules(bot: BotHarness, chat_id: int = ALICE) -> list[Schedule]:
    return await bot.services.store.schedules.list_for_chat(chat_id)


async def answers_once(user: TgUser, text: str) -> str:
    """Send `text`; return the bot's one answer, checking that it sent nothing else (a
    /tz sent afterwards is a barrier: updates are handled in order)."""
    user.mark_read()
    before = len(user.messages)
    await user.send(text)
    reply = await user.wait_reply()
    await user.send("/tz")
    await user.wait_reply(containing="time zone is")
    assert len(user.messages) == before + 2, [m.text for m in user.messages[before:]]
    return text_of(reply)


async def until_steps(user: TgUser, name: str = "Monthly close") -> None:
    """/template through name, monthly on the 1st at 09:00 and 7 lead days."""
    await user.send("/template")
    await user.wait_reply(containing="What is the template called?")
    await user.send(name)
    await user.wait_reply(containing="When does the template fire?")
    await user.press("Monthly on…")
    await user.wait_reply(containing="On which day of the month?")
    await user.press("1")
    await user.wait_reply(containing="At what time?")
    await user.send("09:00")
    await user.wait_reply(containing="lead days")
    await user.press("7")
    await user.wait_reply(containing="No steps yet")


async def add_task(user: TgUser, title: str, offset: str, proof: str = "Nothing") -> None:
    """A task step with no assignee and no instructions."""
    await user.press("Add task")
    await user.wait_reply(containing="a task: what is it?")
    await user.send(title)
    await user.wait_reply(containing="in days from the anchor date")
    await user.send(offset)
    await user.wait_reply(containing="What must marking it done include?")
    await user.press(proof)
    await user.wait_reply(containing="Who is it for?")
    await user.press("Skip")
    await user.wait_reply(containing="Any instructions")
    await user.press("Skip")
    await user.wait_reply(containing="Add another step")


# --- the whole form ----------------------------------------------------------------------
async def test_a_template_is_guided_end_to_end_and_saved_with_its_steps(bot: BotHarness) -> None:
    alice = bot.alice
    await alice.send("/template")
    assert text_of(await alice.wait_reply()) == (
        "What is the template called? Write a name, like Monthly invoicing."
    )
    await alice.send("Monthly close")
    when = await alice.wait_reply()
    assert text_of(when) == (
        "When does the template fire? Each fire makes one bundle of its steps. "
        "(times are Europe/Berlin)"
    )
    assert [label for row in alice.buttons(when) for label, _ in row] == [
        "Daily at…",
        "Weekdays at…",
        "Weekly on…",
        "Monthly on…",
        "Custom cron",
        "Cancel",
    ]
    await alice.press("Monthly on…")
    await alice.wait_reply(containing="On which day of the month? (1 to 28)")
    await alice.press("1")
    await alice.wait_reply(containing="At what time? Write it as HH:MM")
    await alice.send("09:00")
    lead = text_of(await alice.wait_reply(containing="lead days"))
    assert lead == (
        "How many days before its anchor date should each bundle be made (lead days)? "
        "With 7, the fire on Tue 01 Dec makes the bundle for Tue 08 Dec. "
        "Write a number from 0 to 366, or press one."
    )
    await alice.press("7")
    empty = await alice.wait_reply(containing="No steps yet")
    assert text_of(empty) == "No steps yet. Add a task or an agent prompt."
    assert [label for row in alice.buttons(empty) for label, _ in row] == [
        "Add task",
        "Add agent prompt",
        "Cancel",
    ]

    # Step 1: a task with everything.
    await alice.press("Add task")
    assert text_of(await alice.wait_reply(containing="Step 1")) == (
        "Step 1, a task: what is it? Write its title, like Collect the receipts."
    )
    await alice.send("Collect the receipts")
    offset = await alice.wait_reply(containing="When is step 1 due")
    assert text_of(offset) == (
        "When is step 1 due, in days from the anchor date? Write -3 or 3 before, 2 after, "
        "or 0 for on the day, or press one."
    )
    assert [label for row in alice.buttons(offset) for label, _ in row] == [
        "7 days before",
        "3 days before",
        "1 day before",
        "On the day",
        "1 day after",
        "3 days after",
        "Cancel",
    ]
    await alice.send("3 before")
    await alice.wait_reply(containing="What must marking it done include?")
    await alice.press("A file")
    await alice.wait_reply(containing="Who is it for? Write a name, or press Skip.")
    await alice.send("Bob")
    await alice.wait_reply(containing="Any instructions to show with it?")
    await alice.send("Scan every receipt")
    summary = await alice.wait_reply(containing="Add another step")
    assert text_of(summary).splitlines() == [
        "Steps:",
        "1. Task “Collect the receipts” — 3 days before; proof: file; for Bob; "
        "instructions: Scan every receipt",
        "",
        "Add another step, or press Done.",
    ]
    assert [label for row in alice.buttons(summary) for label, _ in row] == [
        "Add task",
        "Add agent prompt",
        "Remove last",
        "Done",
        "Cancel",
    ]

    # Step 2: an agent prompt on the day, by button.
    await alice.press("Add agent prompt")
    assert text_of(await alice.wait_reply(containing="Step 2")) == (
        "Step 2, an agent prompt: what should the agent do? Write the prompt."
    )
    await alice.send("Draft the monthly report for {date}")
    await alice.wait_reply(containing="When is step 2 due")
    await alice.press("On the day")
    await alice.wait_reply(containing="Add another step")

    # Step 3: a task two days after, proof a link, nobody named, no instructions.
    await add_task(alice, "Send the invoice", "2 after", proof="A link")

    await alice.press("Done")
    card = await alice.wait_reply(containing="Workflow template")
    assert text_of(card).splitlines() == [
        "Monthly close",
        "Workflow template: one bundle of 3 steps per anchor date",
        "When: At 09:00 AM, on day 1 of the month (Europe/Berlin) — cron 0 9 1 * *",
        "Zone: Europe/Berlin",
        "Next fires → the anchor date of the bundle each makes:",
        "• Tue 01 Dec 09:00 (+01:00) → Tue 08 Dec 2026",
        "• Fri 01 Jan 09:00 (+01:00) → Fri 08 Jan 2027",
        "• Mon 01 Feb 09:00 (+01:00) → Mon 08 Feb 2027",
        "Lead days: 7 (each bundle is made 7 days before its anchor date)",
        "Steps:",
        "1. Task “Collect the receipts” — 3 days before; proof: file; for Bob; "
        "instructions: Scan every receipt",
        "2. Agent prompt “Draft the monthly report for {date}” — on the day",
        "3. Task “Send the invoice” — 2 days after; proof: link",
    ]
    assert [label for row in alice.buttons(card) for label, _ in row] == ["Save", "Cancel"]
    assert await schedules(bot) == []  # nothing before Save

    await alice.press("Save")
    saved = text_of(await alice.wait_reply(containing="Saved"))
    [schedule] = await schedules(bot)
    assert schedule.id in saved and "Next run: Tue 01 Dec 09:00 (+01:00)" in saved
    assert schedule.name == "Monthly close"
    assert schedule.owner == Owner(id=ALICE, first_name="Alice")
    assert isinstance(schedule.trigger, CronTrigger)
    assert (schedule.trigger.expr, schedule.trigger.timezone) == ("0 9 1 * *", "Europe/Berlin")
    assert schedule.next_run_at is not None
    assert format_utc(schedule.next_run_at) == "2026-12-01T08:00:00Z"
    assert schedule.action == Action(
        kind=ActionKind.BUNDLE,
        lead_days=7,
        steps=(
            Step(
                kind=StepKind.TASK,
                title="Collect the receipts",
                offset_days=-3,
                proof="file",
                assignee="Bob",
                instructions="Scan every receipt",
            ),
            Step(
                kind=StepKind.AGENT,
                title="Draft the monthly report for {date}",
                text="Draft the monthly report for {date}",
                offset_days=0,
            ),
            Step(kind=StepKind.TASK, title="Send the invoice", offset_days=2, proof="link"),
        ),
    )

    # Its card lists the lead days and the steps with their offsets.
    await alice.send(f"/show {schedule.ref}")
    shown = text_of(await alice.wait_reply(containing="Lead days"))
    lines = shown.splitlines()
    start = lines.index("Lead days: 7 (each bundle is made 7 days before its anchor date)")
    assert lines[start : start + 5] == [
        "Lead days: 7 (each bundle is made 7 days before its anchor date)",
        "Steps:",
        "1. Task “Collect the receipts” — 3 days before; proof: file; for Bob; "
        "instructions: Scan every receipt",
        "2. Agent prompt “Draft the monthly report for {date}” — on the day",
        "3. Task “Send the invoice” — 2 days after; proof: link",
    ]
    # The form is closed: a second Save creates nothing more.
    await alice.press_data("tm:save:", card.message_id)
    await alice.send("/tz")
    await alice.wait_reply(containing="time zone is")
    assert bot.server.calls_to("answerCallbackQuery")[-1]["text"] == (
        "This form is closed; start again with /template."
    )
    assert len(await schedules(bot)) == 1


async def test_a_weekly_template_typed_out_with_a_name_on_the_command(bot: BotHarness) -> None:
    """`/template NAME` skips the name; a schedule written out answers When?; 0 lead days."""
    alice = bot.alice
    await alice.send("/template Weekly review")
    await alice.wait_reply(containing="When does the template fire?")
    assert await answers_once(alice, "every 4h") == WHEN_TYPED_HELP
    assert await answers_once(alice, "in 3 days") == WHEN_TYPED_HELP
    await alice.send("weekly fri 16:00")
    await alice.wait_reply(containing="lead days")
    await alice.send("0")
    await alice.wait_reply(containing="No steps yet")
    await alice.press("Add agent prompt")
    await alice.wait_reply(containing="what should the agent do?")
    await alice.send("Summarise the week")
    await alice.wait_reply(containing="When is step 1 due")
    await alice.send("on the day")
    await alice.wait_reply(containing="Add another step")
    await alice.press("Done")
    card = text_of(await alice.wait_reply(containing="Workflow template"))
    assert "When: At 04:00 PM, only on Friday (Europe/Berlin) — cron 0 16 * * 5" in card
    assert "• Fri 27 Nov 16:00 (+01:00) → Fri 27 Nov 2026" in card
    assert "Lead days: 0 (each bundle is made on its anchor date)" in card
    assert "1. Agent prompt “Summarise the week” — on the day" in card
    await alice.press("Save")
    await alice.wait_reply(containing="Saved")
    [schedule] = await schedules(bot)
    assert schedule.name == "Weekly review"
    assert isinstance(schedule.trigger, CronTrigger) and schedule.trigger.expr == "0 16 * * 5"
    assert schedule.action.lead_days == 0
    assert [(s.kind, s.text, s.offset_days) for s in schedule.action.steps] == [
        (StepKind.AGENT, "Summarise the week", 0)
    ]


# --- bad input ---------------------------------------------------------------------------
async def test_bad_offsets_answer_one_sentence_and_the_form_stays(bot: BotHarness) -> None:
    alice = bot.alice
    await until_steps(alice)
    await alice.press("Add task")
    await alice.wait_reply(containing="a task: what is it?")
    await alice.send("Collect the receipts")
    await alice.wait_reply(containing="in days from the anchor date")
    assert await answers_once(alice, "next week") == OFFSET_HELP
    assert await answers_once(alice, "-3 after") == OFFSET_HELP
    assert await answers_once(alice, "400 before") == (
        "Step 1's offset is -400 days; keep it within 366 days of the anchor date."
    )
    # Still at the offset question: a good one goes on.
    await alice.send("-3")
    await alice.wait_reply(containing="What must marking it done include?")
    assert await answers_once(alice, "a file") == (
        "Press Nothing, A link, A file or A note, or /cancel."
    )
    await alice.press("A note")
    await alice.wait_reply(containing="Who is it for?")
    assert await answers_once(alice, "B" * 81) == (
        "Step 1's assignee is 81 characters; the limit is 80."
    )
    await alice.press("Skip")
    await alice.wait_reply(containing="Any instructions")
    await alice.press("Skip")
    await alice.wait_reply(containing="Add another step")
    assert await answers_once(alice, "done") == (
        "Press Add task, Add agent prompt, Remove last or Done, or /cancel."
    )
    await alice.press("Done")
    await alice.wait_reply(containing="Workflow template")
    assert await answers_once(alice, "yes") == "Press Save to create the template, or Cancel."
    await alice.press("Save")
    await alice.wait_reply(containing="Saved")
    [schedule] = await schedules(bot)
    assert schedule.action.steps == (
        Step(kind=StepKind.TASK, title="Collect the receipts", offset_days=-3, proof="note"),
    )


async def test_an_empty_or_long_title_and_a_bad_prompt_are_refused(bot: BotHarness) -> None:
    alice = bot.alice
    await until_steps(alice)
    await alice.press("Add task")
    await alice.wait_reply(containing="a task: what is it?")
    assert await answers_once(alice, "   ") == "Step 1 is a task without a title."
    assert await answers_once(alice, "t" * (MAX_STEP_TITLE + 1)) == (
        f"Step 1's title is {MAX_STEP_TITLE + 1} characters; the limit is {MAX_STEP_TITLE}."
    )
    await alice.send("Collect the receipts")
    await alice.wait_reply(containing="in days from the anchor date")
    await alice.press("Cancel")
    assert text_of(await alice.wait_reply(containing="Cancelled")) == CANCELLED

    await until_steps(alice)
    await alice.press("Add agent prompt")
    await alice.wait_reply(containing="what should the agent do?")
    refused = await answers_once(alice, "Use {nope}")
    assert refused.startswith("Unknown placeholder {nope} in the prompt")
    assert await answers_once(alice, "x" * 5000) == (
        "The prompt is 5000 characters; the limit is 4000."
    )
    assert await schedules(bot) == []


async def test_bad_name_when_and_lead_days_stay_at_their_question(bot: BotHarness) -> None:
    alice = bot.alice
    await alice.send("/template")
    await alice.wait_reply(containing="What is the template called?")
    assert await answers_once(alice, "n" * 81) == "The name is 81 characters; the limit is 80."
    await alice.send("Close")
    await alice.wait_reply(containing="When does the template fire?")
    await alice.press("Custom cron")
    await alice.wait_reply(containing="five-field cron")
    assert await answers_once(alice, "0 9 31 2 *") == (
        "The cron expression '0 9 31 2 *' never fires: February has no day 31."
    )
    await alice.send("0 9 * * 1")
    await alice.wait_reply(containing="lead days")
    assert await answers_once(alice, "soon") == LEAD_DAYS_HELP
    assert await answers_once(alice, "400") == "Lead days must be between 0 and 366."
    await alice.send("3 days")
    await alice.wait_reply(containing="No steps yet")
    assert await schedules(bot) == []


# --- Remove last, cancel, refusals ------------------------------------------------------
async def test_remove_last_takes_the_newest_step_away(bot: BotHarness) -> None:
    alice = bot.alice
    await until_steps(alice)
    await add_task(alice, "Collect the receipts", "3 before")
    await add_task(alice, "Send the invoice", "2 after")
    await alice.press("Remove last")
    summary = await alice.wait_reply(containing="Removed")
    assert text_of(summary).splitlines() == [
        "Removed step 2 (Send the invoice).",
        "Steps:",
        "1. Task “Collect the receipts” — 3 days before; proof: none",
        "",
        "Add another step, or press Done.",
    ]
    await alice.press("Remove last")
    empty = await alice.wait_reply(containing="Removed step 1")
    assert text_of(empty).splitlines() == [
        "Removed step 1 (Collect the receipts).",
        "No steps yet. Add a task or an agent prompt.",
    ]
    # No steps: no Done to press.
    assert [label for row in alice.buttons(empty) for label, _ in row] == [
        "Add task",
        "Add agent prompt",
        "Cancel",
    ]
    await add_task(alice, "Book the accountant", "7 before")
    await alice.press("Done")
    card = text_of(await alice.wait_reply(containing="Workflow template"))
    assert "1. Task “Book the accountant” — 7 days before; proof: none" in card
    assert "Send the invoice" not in card
    await alice.press("Save")
    await alice.wait_reply(containing="Saved")
    [schedule] = await schedules(bot)
    assert schedule.action.steps == (
        Step(kind=StepKind.TASK, title="Book the accountant", offset_days=-7),
    )


async def test_twenty_steps_is_the_limit(bot: BotHarness) -> None:
    alice = bot.alice
    await until_steps(alice)
    for n in range(1, MAX_STEPS + 1):
        await alice.press("Add agent prompt")
        await alice.wait_reply(containing=f"Step {n}, an agent prompt")
        await alice.send(f"Prompt {n}")
        await alice.wait_reply(containing=f"When is step {n} due")
        await alice.press("1 day before")
        await alice.wait_reply(containing=f"{n}. Agent prompt “Prompt {n}” — 1 day before")
    await alice.press("Add task")
    assert text_of(await alice.wait_reply(containing="limit")) == (
        f"The template has {MAX_STEPS} steps, the limit; press Done."
    )
    await alice.press("Remove last")
    removed = text_of(await alice.wait_reply(containing="Removed"))
    assert removed.startswith(f"Removed step {MAX_STEPS} (Prompt {MAX_STEPS}).")
    await alice.press("Done")
    await alice.wait_reply(containing="Workflow template")
    await alice.press("Save")
    await alice.wait_reply(containing="Saved")
    [schedule] = await schedules(bot)
    assert [s.text for s in schedule.action.steps] == [f"Prompt {n}" for n in range(1, MAX_STEPS)]


async def test_cancel_at_any_point_saves_nothing(bot: BotHarness) -> None:
    alice = bot.alice
    await alice.send("/template")
    await alice.wait_reply(containing="What is the template called?")
    assert await answers_once(alice, "/cancel") == CANCELLED

    await until_steps(alice)
    await add_task(alice, "Collect the receipts", "3 before")
    await alice.press("Add task")
    await alice.wait_reply(containing="a task: what is it?")
    assert await answers_once(alice, "/cancel") == CANCELLED
    # The form is closed: text goes to the agent again, not to the form.
    await alice.send("Hello agent")
    [request] = await bot.agent.wait_for_requests(1)
    assert request.json["message"]["text"] == "Hello agent"

    await until_steps(alice)
    await add_task(alice, "Collect the receipts", "3 before")
    await alice.press("Done")
    await alice.wait_reply(containing="Workflow template")
    await alice.press("Cancel")
    assert text_of(await alice.wait_reply(containing="Cancelled")) == CANCELLED
    assert await schedules(bot) == []


async def test_the_services_refusal_at_save_is_its_sentence(
    bot: BotHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = bot.services.service
    monkeypatch.setattr(service, "limits", Limits(max_schedules_per_chat=2))
    alice = bot.alice
    await until_steps(alice)
    await add_task(alice, "Collect the receipts", "3 before")
    await alice.press("Done")
    await alice.wait_reply(containing="Workflow template")
    # Meanwhile the chat reached its limit.
    for name in ("One", "Two"):
        await service.create_schedule(
            ALICE,
            Owner(id=ALICE, first_name="Alice"),
            name=name,
            trigger=TriggerSpec(kind="cron", cron="0 9 * * *"),
            action=Action(text="Prepare my brief"),
        )
    await alice.press("Save")
    assert text_of(await alice.wait_reply(containing="This chat")) == (
        "This chat already has 2 schedules, the limit; archive one with /delete first."
    )
    assert sorted(s.name for s in await schedules(bot)) == ["One", "Two"]


async def test_a_stranger_is_refused(bot: BotHarness) -> None:
    mallory = bot.mallory
    await mallory.send("/template")
    assert text_of(await mallory.wait_reply()) == REFUSAL
    await mallory.send("Monthly close")
    assert text_of(await mallory.wait_reply()) == REFUSAL
    assert len(mallory.messages) == 2
    assert await schedules(bot, mallory.chat_id) == []


async def test_one_form_at_a_time_new_and_template_end_each_other(bot: BotHarness) -> None:
    """Starting /template in the middle of /new closes /new (and the other way round), so
    a typed answer always reaches the form asked last."""
    alice = bot.alice
    await alice.send("/new")
    await alice.wait_reply(containing="What should it do?")
    await alice.send("/template")
    await alice.wait_reply(containing="What is the template called?")
    await alice.send("Monthly close")
    await alice.wait_reply(containing="When does the template fire?")
    await alice.send("/new")
    await alice.wait_reply(containing="What should it do?")
    await alice.press("Ask the agent")
    await alice.wait_reply(containing="Write the prompt")
    await alice.send("Prepare my brief")
    await alice.wait_reply(containing="When?")
    assert bot.agent.requests == []


async def test_an_abandoned_template_times_out(bot: BotHarness) -> None:
    alice = bot.alice
    await until_steps(alice)
    await alice.send("/tz")  # a barrier: the form's last update is fully handled
    await alice.wait_reply(containing="time zone is")
    assert bot.app.job_queue is not None
    # The forms' 30-minute timeout, run now instead of waiting.
    [timeout] = [j for j in bot.app.job_queue.jobs() if j.name == "_trigger_timeout"]
    await timeout.run(bot.app)
    await alice.send("Hello agent")  # no longer captured by the form
    [request] = await bot.agent.wait_for_requests(1)
    assert request.json["message"]["text"] == "Hello agent"
    await alice.press("Add task")  # the closed form's button
    await alice.send("/tz")
    await alice.wait_reply(containing="time zone is")
    assert bot.server.calls_to("answerCallbackQuery")[-1]["text"] == (
        "This form is closed; start again with /template."
    )
    assert await schedules(bot) == []


async def test_template_is_in_the_menu_and_in_help(bot: BotHarness) -> None:
    assert ("template", dict(COMMANDS)["template"]) in [
        (c["command"], c["description"]) for c in bot.server.commands
    ]
    await bot.alice.send("/help")
    assert "/template" in text_of(await bot.alice.wait_reply())


# --- pure parts ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("-3", -3),
        ("3 before", -3),
        ("3 days before", -3),
        ("3d before", -3),
        ("1 day before", -1),
        ("2 after", 2),
        ("2 days after", 2),
        ("+2", 2),
        ("2", 2),
        ("0", 0),
        ("-0", 0),
        ("on the day", 0),
        ("On the day.", 0),
        ("  3   BEFORE ", -3),
        ("400 before", -400),  # parsed; the service refuses the range
    ],
)
def test_parse_offset(text: str, days: int) -> None:
    assert parse_offset(text) == days


@pytest.mark.parametrize(
    "text", ["", "soon", "3 weeks before", "-3 after", "+2 before", "before", "3 before after"]
)
def test_parse_offset_refuses_with_what_it_accepts(text: str) -> None:
    with pytest.raises(InvalidSchedule) as refused:
        parse_offset(text)
    assert str(refused.value) == OFFSET_HELP


@pytest.mark.parametrize(
    ("fire", "zone", "lead_days", "anchor"),
    [
        ("2026-12-01T08:00:00+00:00", "Europe/Berlin", 7, "2026-12-08"),
        # 00:30 on 1 December in Berlin is still 30 November in UTC: the zone's date counts.
        ("2026-11-30T23:30:00+00:00", "Europe/Berlin", 0, "2026-12-01"),
        ("2026-12-01T03:00:00+00:00", "America/New_York", 1, "2026-12-01"),
        ("2026-12-31T12:00:00+00:00", "Europe/Berlin", 366, "2028-01-01"),
    ],
)
def test_the_anchor_date_is_the_fires_local_date_plus_lead_days(
    fire: str, zone: str, lead_days: int, anchor: str
) -> None:
    day = anchor_date(datetime.fromisoformat(fire), load_zone(zone), lead_days)
    assert day.isoformat() == anchor


def test_offset_words() -> None:
    assert [offset_words(d) for d in (-3, -1, 0, 1, 2)] == [
        "3 days before",
        "1 day before",
        "on the day",
        "1 day after",
        "2 days after",
    ]


def visible(card: str) -> str:
    """An HTML message as Telegram counts it: tags out, entities resolved."""
    return html.unescape(re.sub(r"<[^>]+>", "", card))


def test_the_cards_of_the_largest_template_fit_one_message() -> None:
    """Twenty steps with the longest title, assignee and instructions, all of them `&`
    (escaped to five characters each): the card before Save and the /show card still
    fit Telegram's 4096."""
    step = Step(
        kind=StepKind.TASK,
        title="&" * MAX_STEP_TITLE,
        assignee="&" * 80,
        instructions="&" * 4000,
        proof="link",
        offset_days=-366,
    )
    action = Action(kind=ActionKind.BUNDLE, lead_days=366, steps=(step,) * MAX_STEPS)
    card = confirm_text(
        name="&" * 80,
        action=action,
        trigger=cron_trigger("0 9 1 * *", "Europe/Berlin"),
        now=datetime(2026, 11, 23, 7, 0, tzinfo=UTC),
    )
    assert len(visible(card)) <= MAX_MESSAGE
    assert len(template_lines(action)) == 2 + MAX_STEPS
    now = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
    schedule = Schedule(
        id="01JD0000000000000000000000",
        chat_id=ALICE,
        name="&" * 80,
        trigger=cron_trigger("0 9 1 * *", "Europe/Berlin"),
        action=action,
        owner=Owner(id=ALICE, first_name="&" * 64),
        next_run_at=datetime(2026, 12, 1, 8, 0, tzinfo=UTC),
        created_at=now,
        updated_at=now,
    )
    assert len(visible(schedule_card(schedule, now, None))) <= MAX_MESSAGE
