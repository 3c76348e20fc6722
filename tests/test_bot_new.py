"""/new and /edit as an operator meets them: the guided form, the one-line form,
bad input at each step, Cancel, and changing a schedule afterwards.

The fake clock starts Monday 2026-11-23 07:00 UTC = 08:00 in Berlin.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.demo_kit.harness import ALICE, OLGA, BotHarness
from bot.demo_kit.telegram_server import BotMessage, TgUser
from bot.views_new import EVERY_HELP, ONE_LINE_HELP, TIME_HELP
from bot.views_schedules import EMPTY_LIST
from scheduler.models import Action, ActionKind, Owner, Schedule
from scheduler.service import TriggerSpec
from scheduler.timeutil import format_utc
from scheduler.triggers import CronTrigger, IntervalTrigger, OnceTrigger

LIMIT_5000 = "The prompt is 5000 characters; the limit is 4000."


def text_of(message: BotMessage) -> str:
    return message.text or ""


async def schedules(bot: BotHarness, chat_id: int = ALICE) -> list[Schedule]:
    return await bot.services.store.schedules.list_for_chat(chat_id)


async def answers_once(user: TgUser, text: str) -> str:
    """Send `text`; return the bot's one answer, checking that it sent nothing else.

    A /tz sent afterwards is a barrier: updates are handled in order, so its answer
    comes after everything the bot said about `text`."""
    user.mark_read()
    before = len(user.messages)
    await user.send(text)
    reply = await user.wait_reply()
    await user.send("/tz")
    await user.wait_reply(containing="time zone is")
    assert len(user.messages) == before + 2, [m.text for m in user.messages[before:]]
    return text_of(reply)


async def start_in_berlin(user: TgUser) -> None:
    await user.send("/start")
    await user.wait_reply(containing="/new")
    await user.send("/tz Europe/Berlin")
    await user.wait_reply(containing="Time zone set to Europe/Berlin")


async def guided_until_when(user: TgUser, prompt: str = "Prepare my brief") -> None:
    await user.send("/new")
    await user.wait_reply(containing="What should it do?")
    await user.press("Ask the agent")
    await user.wait_reply(containing="Write the prompt")
    await user.send(prompt)
    await user.wait_reply(containing="When?")


# --- the guided form -------------------------------------------------------------------
async def test_guided_daily_schedule_is_previewed_saved_and_fires(bot: BotHarness) -> None:
    alice = bot.alice
    await start_in_berlin(alice)
    await guided_until_when(alice)
    await alice.press("Daily at…")
    await alice.wait_reply(containing="At what time?")
    await alice.send("09:00")
    await alice.wait_reply(containing="What should it be called?")
    await alice.press("Use “Prepare my brief”")
    preview = text_of(await alice.wait_reply(containing="Next:"))
    assert preview.splitlines() == [
        "Prepare my brief",
        "Asks the agent: “Prepare my brief”",
        "When: At 09:00 AM (Europe/Berlin) — cron 0 9 * * *",
        "Zone: Europe/Berlin",
        "Next:",
        "• Mon 23 Nov 09:00 (+01:00)",
        "• Tue 24 Nov 09:00 (+01:00)",
        "• Wed 25 Nov 09:00 (+01:00)",
    ]
    assert [label for label, _ in alice.buttons()[0]] == ["Save", "Cancel"]
    assert await schedules(bot) == []  # nothing before Save

    await alice.press("Save")
    saved = text_of(await alice.wait_reply(containing="Saved"))
    [schedule] = await schedules(bot)
    assert schedule.id in saved and "Mon 23 Nov 09:00 (+01:00)" in saved
    assert schedule.name == "Prepare my brief"
    assert isinstance(schedule.trigger, CronTrigger)
    assert (schedule.trigger.expr, schedule.trigger.timezone) == ("0 9 * * *", "Europe/Berlin")
    assert schedule.action == Action(kind=ActionKind.AGENT, text="Prepare my brief")
    assert schedule.owner == Owner(id=ALICE, first_name="Alice")
    assert schedule.next_run_at is not None
    assert format_utc(schedule.next_run_at) == "2026-11-23T08:00:00Z"

    await bot.clock.set(schedule.next_run_at)
    [request] = await bot.agent.wait_for_requests(1)
    assert request.json["message"]["text"] == "Prepare my brief"
    assert request.json["message"]["from"]["id"] == ALICE


async def test_guided_weekly_reminder_with_buttons_and_a_typed_name(bot: BotHarness) -> None:
    alice = bot.alice
    await alice.send("/new")
    await alice.wait_reply(containing="What should it do?")
    await alice.press("Remind me")
    await alice.wait_reply(containing="What should the reminder say?")
    await alice.send("Stretch your legs")
    await alice.wait_reply(containing="When?")
    await alice.press("Weekly on…")
    await alice.wait_reply(containing="On which day?")
    await alice.press("Wed")
    await alice.wait_reply(containing="At what time?")
    await alice.press("18:00")
    await alice.wait_reply(containing="What should it be called?")
    await alice.send("Stretch break")
    preview = text_of(await alice.wait_reply(containing="Next:"))
    assert "Reminds you: “Stretch your legs”" in preview
    assert "• Wed 25 Nov 18:00 (+01:00)" in preview
    await alice.press("Save")
    await alice.wait_reply(containing="Saved")
    [schedule] = await schedules(bot)
    assert schedule.name == "Stretch break"
    assert schedule.action.kind is ActionKind.REMINDER
    assert isinstance(schedule.trigger, CronTrigger) and schedule.trigger.expr == "0 18 * * 3"


async def test_guided_monthly_template(bot: BotHarness) -> None:
    alice = bot.alice
    await alice.send("/new")
    await alice.wait_reply(containing="What should it do?")
    await alice.press("Ask the agent")
    await alice.wait_reply(containing="Write the prompt")
    await alice.press("Weekly review")
    await alice.wait_reply(containing="When?")
    await alice.press("Monthly on…")
    await alice.wait_reply(containing="day of the month")
    await alice.press("1")
    await alice.wait_reply(containing="At what time?")
    await alice.send("07:30")
    await alice.wait_reply(containing="What should it be called?")
    await alice.press("Use “Weekly review”")
    preview = text_of(await alice.wait_reply(containing="Next:"))
    assert "template weekly_review" in preview and "• Tue 01 Dec 07:30 (+01:00)" in preview
    await alice.press("Save")
    await alice.wait_reply(containing="Saved")
    [schedule] = await schedules(bot)
    assert schedule.action == Action(kind=ActionKind.AGENT, template="weekly_review")
    assert isinstance(schedule.trigger, CronTrigger) and schedule.trigger.expr == "30 7 1 * *"


async def test_guided_every_n_hours_starts_at_the_next_full_hour(bot: BotHarness) -> None:
    alice = bot.alice
    await guided_until_when(alice, "Check inbox")
    await alice.press("Every N hours")
    await alice.wait_reply(containing="Every how many hours?")
    await alice.press("4")
    await alice.wait_reply(containing="What should it be called?")
    await alice.press("Use “Check inbox”")
    preview = text_of(await alice.wait_reply(containing="Next:"))
    assert "every 4 hours, starting Mon 23 Nov 09:00 (+01:00)" in preview
    await alice.press("Save")
    await alice.wait_reply(containing="Saved")
    [schedule] = await schedules(bot)
    assert isinstance(schedule.trigger, IntervalTrigger)
    assert schedule.trigger.every_seconds == 4 * 3600
    assert format_utc(schedule.trigger.start_at) == "2026-11-23T08:00:00Z"


async def test_guided_once_and_custom_cron_typed(bot: BotHarness) -> None:
    alice = bot.alice
    await guided_until_when(alice, "Follow up with Ana")
    await alice.press("Once at/in…")
    await alice.wait_reply(containing="When exactly?")
    await alice.send("next week sometime")
    assert text_of(await alice.wait_reply()).startswith("Write when as")
    await alice.send("in 3 days")
    await alice.wait_reply(containing="What should it be called?")
    await alice.send("Ana")
    await alice.wait_reply(containing="Next:")
    await alice.press("Save")
    await alice.wait_reply(containing="Saved")

    await guided_until_when(alice, "Standup notes")
    await alice.press("Custom cron")
    await alice.wait_reply(containing="five-field cron")
    await alice.send("0 9 * * 1-5")
    await alice.wait_reply(containing="What should it be called?")
    await alice.send("Standup")
    await alice.wait_reply(containing="Next:")
    await alice.press("Save")
    await alice.wait_reply(containing="Saved")

    by_name = {s.name: s for s in await schedules(bot)}
    once = by_name["Ana"].trigger
    assert isinstance(once, OnceTrigger) and format_utc(once.at) == "2026-11-26T07:00:00Z"
    cron = by_name["Standup"].trigger
    assert isinstance(cron, CronTrigger) and cron.expr == "0 9 * * 1-5"


async def test_bad_input_at_each_step_answers_one_sentence_and_stays(bot: BotHarness) -> None:
    alice = bot.alice
    await alice.send("/new")
    await alice.wait_reply(containing="What should it do?")
    assert (
        await answers_once(alice, "hello")
        == "Press Ask the agent, Remind me or Add a task for me, or /cancel."
    )
    await alice.press("Ask the agent")
    await alice.wait_reply(containing="Write the prompt")
    assert await answers_once(alice, "x" * 5000) == LIMIT_5000
    placeholder = await answers_once(alice, "Use {nope}")
    assert placeholder.startswith("Unknown placeholder {nope} in the prompt")
    await alice.send("Prepare my brief")
    await alice.wait_reply(containing="When?")
    await alice.press("Daily at…")
    await alice.wait_reply(containing="At what time?")
    assert await answers_once(alice, "9 o'clock") == TIME_HELP
    assert await answers_once(alice, "25:00") == TIME_HELP
    await alice.send("09:00")
    await alice.wait_reply(containing="What should it be called?")
    assert await answers_once(alice, "n" * 81) == "The name is 81 characters; the limit is 80."
    assert await schedules(bot) == []


async def test_bad_cron_answers_with_the_services_sentence(bot: BotHarness) -> None:
    alice = bot.alice
    await guided_until_when(alice)
    await alice.press("Custom cron")
    await alice.wait_reply(containing="five-field cron")
    assert await answers_once(alice, "0 9 L * *") == (
        "Unsupported cron syntax 'L' in day-of-month: use five fields (minute hour "
        "day-of-month month day-of-week) with numbers, names, ranges, steps and lists."
    )
    assert await answers_once(alice, "0 9 31 2 *") == (
        "The cron expression '0 9 31 2 *' never fires: February has no day 31."
    )
    # Still at the cron step: a good expression goes on.
    await alice.send("0 9 * * 1-5")
    await alice.wait_reply(containing="What should it be called?")
    assert await schedules(bot) == []


async def test_cancel_at_any_step_creates_nothing(bot: BotHarness) -> None:
    alice = bot.alice
    await guided_until_when(alice)
    await alice.press("Daily at…")
    await alice.wait_reply(containing="At what time?")
    await alice.press("Cancel")
    assert (
        text_of(await alice.wait_reply(containing="Cancelled")) == "Cancelled; nothing was saved."
    )

    await alice.send("/new")
    await alice.wait_reply(containing="What should it do?")
    await alice.press("Ask the agent")
    await alice.wait_reply(containing="Write the prompt")
    assert await answers_once(alice, "/cancel") == "Cancelled; nothing was saved."

    await alice.send("/new daily 09:00 Prepare my brief")
    await alice.wait_reply(containing="Next:")
    await alice.press("Cancel")
    await alice.wait_reply(containing="Cancelled")
    assert await schedules(bot) == []
    # The preview's buttons are gone; a forged press on a closed form changes nothing.
    preview = next(m for m in alice.messages if "Next:" in text_of(m))
    assert preview.buttons == []
    await alice.press_data("n:save:", preview.message_id)
    await alice.send("/tz")
    await alice.wait_reply(containing="time zone is")
    assert bot.server.calls_to("answerCallbackQuery")[-1]["text"] == (
        "This form is closed; start again with /new."
    )
    assert await schedules(bot) == []


async def test_other_commands_pass_an_open_form_by_and_text_still_answers_it(
    bot: BotHarness,
) -> None:
    """The handler order documented in bot.app.handlers: a command in the middle of a
    form goes to its own handler (or the unknown-command answer) and leaves the form
    open; plain text then answers the form, not the agent."""
    alice = bot.alice
    await guided_until_when(alice)
    await alice.press("Custom cron")
    await alice.wait_reply(containing="five-field cron")
    assert await answers_once(alice, "/schedules") == EMPTY_LIST
    assert await answers_once(alice, "/nonsense") == "I don't know that command; /help lists them."
    await alice.send("0 9 * * 1-5")
    await alice.wait_reply(containing="What should it be called?")
    assert bot.agent.requests == []


async def test_an_abandoned_form_times_out_and_stops_capturing_messages(bot: BotHarness) -> None:
    alice = bot.alice
    await alice.send("/new")
    await alice.wait_reply(containing="What should it do?")
    await answers_once(alice, "hello")  # captured by the form: it asks for a button
    assert bot.app.job_queue is not None
    # The form's 30-minute timeout, run now instead of waiting.
    [timeout] = [j for j in bot.app.job_queue.jobs() if j.name == "_trigger_timeout"]
    await timeout.run(bot.app)
    await alice.send("hello again")
    await alice.send("/tz")
    await alice.wait_reply(containing="time zone is")
    asked = [m for m in alice.messages if text_of(m).startswith("Press Ask the agent")]
    assert len(asked) == 1
    await alice.press("Ask the agent")  # the old form's button
    await alice.send("/tz")
    await alice.wait_reply(containing="time zone is")
    assert bot.server.calls_to("answerCallbackQuery")[-1]["text"] == (
        "This form is closed; start again with /new."
    )


async def test_save_twice_creates_one_schedule(bot: BotHarness) -> None:
    alice = bot.alice
    await alice.send("/new every 4h Check inbox")
    preview = await alice.wait_reply(containing="Next:")
    await alice.press("Save")
    await alice.wait_reply(containing="Saved")
    await alice.press_data("n:save:", preview.message_id)
    await alice.send("/tz")
    await alice.wait_reply(containing="time zone is")
    assert len(await schedules(bot)) == 1


async def test_an_earlier_steps_button_is_answered_not_applied(bot: BotHarness) -> None:
    alice = bot.alice
    await guided_until_when(alice)
    await alice.press("Daily at…")
    question = await alice.wait_reply(containing="At what time?")
    await alice.send("09:00")
    await alice.wait_reply(containing="What should it be called?")
    await alice.press_data("n:time:0700", question.message_id)
    await alice.send("Morning")  # still the name step
    preview = text_of(await alice.wait_reply(containing="Next:"))
    assert preview.startswith("Morning") and "09:00 AM" in preview
    answers = [c.get("text") for c in bot.server.calls_to("answerCallbackQuery")]
    assert "That button belongs to an earlier step; answer the latest question, or /cancel." in (
        answers
    )


async def test_dst_warning_in_the_preview(bot: BotHarness) -> None:
    await bot.alice.send("/new daily 02:30 Check the backups")
    preview = text_of(await bot.alice.wait_reply(containing="Next:"))
    assert (
        "Note: on Sun 28 Mar 02:30 does not exist in Europe/Berlin; it runs at 03:00 that day."
        in preview
    )
    assert "Note: on Sun 31 Oct 02:30 happens twice in Europe/Berlin" in preview


# --- the one-line form -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "kind", "text", "trigger", "next_run"),
    [
        (
            "/new daily 09:00 Prepare my brief",
            ActionKind.AGENT,
            "Prepare my brief",
            "cron 0 9 * * *",
            "2026-11-23T08:00:00Z",
        ),
        (
            "/new weekdays 08:30 Standup notes",
            ActionKind.AGENT,
            "Standup notes",
            "cron 30 8 * * 1-5",
            "2026-11-23T07:30:00Z",
        ),
        (
            "/new weekly mon 09:00 Review",
            ActionKind.AGENT,
            "Review",
            "cron 0 9 * * 1",
            "2026-11-23T08:00:00Z",
        ),
        (
            "/new monthly 1 09:00 Invoice",
            ActionKind.AGENT,
            "Invoice",
            "cron 0 9 1 * *",
            "2026-12-01T08:00:00Z",
        ),
        (
            "/new every 4h Check inbox",
            ActionKind.AGENT,
            "Check inbox",
            "interval 14400",
            "2026-11-23T08:00:00Z",
        ),
        (
            "/new in 3d Follow up with Ana",
            ActionKind.AGENT,
            "Follow up with Ana",
            "once",
            "2026-11-26T07:00:00Z",
        ),
        (
            '/new cron "0 9 * * 1-5" Prompt text',
            ActionKind.AGENT,
            "Prompt text",
            "cron 0 9 * * 1-5",
            "2026-11-23T08:00:00Z",
        ),
        (
            "/new remind daily 18:00 Stretch",
            ActionKind.REMINDER,
            "Stretch",
            "cron 0 18 * * *",
            "2026-11-23T17:00:00Z",
        ),
    ],
)
async def test_one_line_forms(
    bot: BotHarness, command: str, kind: ActionKind, text: str, trigger: str, next_run: str
) -> None:
    await bot.alice.send(command)
    preview = text_of(await bot.alice.wait_reply(containing="Next:"))
    assert text in preview and "Zone: Europe/Berlin" in preview
    assert await schedules(bot) == []
    await bot.alice.press("Save")
    await bot.alice.wait_reply(containing="Saved")
    [schedule] = await schedules(bot)
    assert schedule.action == Action(kind=kind, text=text)
    assert schedule.name == text
    assert schedule.next_run_at is not None and format_utc(schedule.next_run_at) == next_run
    built = schedule.trigger
    if isinstance(built, CronTrigger):
        assert f"cron {built.expr}" == trigger and built.timezone == "Europe/Berlin"
    elif isinstance(built, IntervalTrigger):
        assert f"interval {built.every_seconds}" == trigger
    else:
        assert trigger == "once"


@pytest.mark.parametrize(
    ("command", "sentence"),
    [
        ("/new daily 9am Stretch", TIME_HELP),
        ("/new fortnightly Stretch", ONE_LINE_HELP),
        ("/new every 10s Ping", EVERY_HELP),
        (
            '/new cron "0 9 L * *" Prompt',
            "Unsupported cron syntax 'L' in day-of-month: use five fields (minute hour "
            "day-of-month month day-of-week) with numbers, names, ranges, steps and lists.",
        ),
        (
            '/new cron "0 9 31 2 *" Prompt',
            "The cron expression '0 9 31 2 *' never fires: February has no day 31.",
        ),
        ("/new daily 09:00 " + "x" * 5000, LIMIT_5000),
        (
            "/new daily 09:00",
            "Add the prompt after the time, like /new daily 09:00 Prepare my brief.",
        ),
        ("/new every 30s Ping", EVERY_HELP),
        ("/new every 1m Ping", None),
    ],
)
async def test_one_line_bad_input(bot: BotHarness, command: str, sentence: str | None) -> None:
    answer = await answers_once(bot.alice, command)
    if sentence is None:  # a valid form, for contrast: it previews
        assert "Next:" in answer
        return
    assert answer == sentence
    assert await schedules(bot) == []


# --- /edit -----------------------------------------------------------------------------
async def make(bot: BotHarness, chat_id: int = ALICE, *, spec: TriggerSpec | None = None) -> str:
    schedule = await bot.services.service.create_schedule(
        chat_id,
        Owner(id=chat_id, first_name="Someone"),
        name="Brief",
        trigger=spec or TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin"),
        action=Action(text="Prepare my brief"),
    )
    return schedule.id


async def test_edit_changes_one_thing_at_a_time(bot: BotHarness) -> None:
    alice = bot.alice
    sid = await make(bot)

    reply = await answers_once(alice, f"/edit {sid} name Morning brief")
    assert reply == (
        "Updated: Morning brief — At 09:00 AM (Europe/Berlin)\nNext run: Mon 23 Nov 09:00 (+01:00)"
    )
    await answers_once(alice, f"/edit {sid} prompt Prepare my brief, with the weather")
    reply = await answers_once(alice, f"/edit {sid} cron 0 8 * * 1-5")
    assert "Next run: Tue 24 Nov 08:00 (+01:00)" in reply
    reply = await answers_once(alice, f"/edit {sid} tz America/New_York")
    assert "(America/New_York)" in reply and "Next run: Mon 23 Nov 08:00 (-05:00)" in reply

    [schedule] = await schedules(bot)
    assert schedule.name == "Morning brief"
    assert schedule.action == Action(text="Prepare my brief, with the weather")
    assert isinstance(schedule.trigger, CronTrigger)
    assert (schedule.trigger.expr, schedule.trigger.timezone) == ("0 8 * * 1-5", "America/New_York")
    assert schedule.next_run_at == datetime(2026, 11, 23, 13, 0, tzinfo=UTC)

    reply = await answers_once(alice, f"/edit {sid} every 2h")
    assert "every 2 hours" in reply
    [schedule] = await schedules(bot)
    assert isinstance(schedule.trigger, IntervalTrigger)
    assert schedule.trigger.every_seconds == 7200
    assert schedule.next_run_at == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


async def test_edit_errors_are_one_sentence(bot: BotHarness) -> None:
    alice = bot.alice
    sid = await make(bot)
    interval = await make(bot, spec=TriggerSpec(kind="interval", every_seconds=3600))
    cases = {
        "/edit": "Write /edit ID followed by a setting (name, prompt, cron, tz, every, or a "
        "policy such as overlap) and the new value, like /edit ID every 2h.",
        "/edit NOPE name X": "There is no schedule 'NOPE' here; /schedules lists them.",
        f"/edit {sid} colour red": "I can change name, prompt, cron, tz, every, missed, "
        "catchup, overlap, attempts, backoff, backoff_cap, timeout, on_timeout, approval, "
        "budget_runs, budget_tokens, "
        f"proof, assignee or instructions, as in /edit {sid} name Morning brief.",
        f"/edit {sid} name": f"Write the new value after 'name', like /edit {sid} name "
        "Morning brief.",
        f"/edit {sid} cron 0 9 L * *": "Unsupported cron syntax 'L' in day-of-month: use five "
        "fields (minute hour day-of-month month day-of-week) with numbers, names, ranges, "
        "steps and lists.",
        f"/edit {sid} cron 0 9 31 2 *": "The cron expression '0 9 31 2 *' never fires: "
        "February has no day 31.",
        f"/edit {sid} tz Europe/Berlinn": "Unknown time zone 'Europe/Berlinn'. "
        "Did you mean Europe/Berlin?",
        f"/edit {sid} every soon": EVERY_HELP,
        f"/edit {sid} prompt " + "x" * 5000: LIMIT_5000,
        f"/edit {interval} tz Europe/Pariss": "Unknown time zone 'Europe/Pariss'. "
        "Did you mean Europe/Paris?",
    }
    for command, sentence in cases.items():
        assert await answers_once(alice, command) == sentence, command
    for schedule in await schedules(bot):
        assert schedule.name == "Brief" and schedule.action.text == "Prepare my brief"


async def test_edit_of_another_chats_schedule_looks_like_no_schedule(bot: BotHarness) -> None:
    olgas = await make(bot, OLGA)
    reply = await answers_once(bot.alice, f"/edit {olgas} name Mine now")
    assert reply == f"There is no schedule '{olgas}' here; /schedules lists them."
    reply = await answers_once(bot.alice, f"/edit {olgas} colour red")
    assert reply == f"There is no schedule '{olgas}' here; /schedules lists them."
    [schedule] = await schedules(bot, OLGA)
    assert schedule.name == "Brief"
