"""The pure renderers behind /schedules, a card, /history and /deadletters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from telegram import InlineKeyboardMarkup

from bot.views_schedules import (
    EMPTY_LIST,
    PAUSED_NOTE,
    archive_question,
    card_keyboard,
    dead_letter,
    dead_letters_header,
    history_page,
    missed_already,
    missed_outcome,
    schedule_card,
    schedules_page,
)
from scheduler.models import Action, Owner, Run, RunStatus, RunTrigger, Schedule
from scheduler.triggers import cron_trigger

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
ULID = "01JD0000000000000000000000"


def schedule(n: int = 0, **changes: object) -> Schedule:
    base = Schedule(
        id=f"{ULID[:-2]}{n:02d}",
        chat_id=1,
        name=f"Brief <{n}>",
        trigger=cron_trigger("0 9 * * *", "Europe/Berlin"),
        action=Action(text="hi"),
        owner=Owner(id=7, first_name="Alice"),
        next_run_at=datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
        created_at=NOW,
        updated_at=NOW,
    )
    return base.model_copy(update=changes)


def run(
    status: RunStatus,
    minutes: int = 0,
    trigger: RunTrigger = RunTrigger.SCHEDULE,
    error: str | None = None,
) -> Run:
    at = NOW - timedelta(minutes=minutes)
    return Run(
        id=f"{ULID[:-4]}R{minutes:03d}",
        schedule_id=schedule().id,
        chat_id=1,
        scheduled_for=at,
        trigger=trigger,
        status=status,
        error=error,
        created_at=at,
        updated_at=at,
    )


def data(markup: InlineKeyboardMarkup | None) -> list[list[tuple[str, str]]]:
    assert markup is not None
    return [[(b.text, str(b.callback_data)) for b in row] for row in markup.inline_keyboard]


def test_the_schedule_list_pages_five_at_a_time() -> None:
    assert schedules_page([], 0, NOW) == (EMPTY_LIST, None, 0)
    seven = [schedule(n) for n in range(7)]
    text, markup, page = schedules_page(seven, 0, NOW)
    assert page == 0 and "page 1 of 2" in text
    assert "Brief &lt;4&gt;" in text and "Brief &lt;5&gt;" not in text  # escaped
    rows = data(markup)
    assert [r[0][1] for r in rows[:5]] == [f"s:show:{s.id}" for s in seven[:5]]
    assert rows[5] == [("Next ▶", "l:1")]
    text, markup, page = schedules_page(seven, 1, NOW)
    assert page == 1 and "Brief &lt;6&gt;" in text and "Brief &lt;4&gt;" not in text
    assert data(markup)[-1] == [("◀ Prev", "l:0")]
    # A page that no longer exists (schedules were archived) shows the last one.
    assert schedules_page(seven, 9, NOW)[2] == 1
    # One page: no navigation row.
    assert len(data(schedules_page(seven[:3], 0, NOW)[1])) == 3


def test_a_card_shows_state_trigger_zone_and_next_fires() -> None:
    card = schedule_card(schedule(), NOW, None)
    assert "<b>Brief &lt;0&gt;</b>" in card
    assert "active" in card and "At 09:00 AM (Europe/Berlin)" in card
    assert "Zone: Europe/Berlin" in card
    assert card.count("(+01:00)") == 3 and "Mon 23 Nov 09:00 (+01:00)" in card
    assert "Last run: none yet" in card and "Failures in a row: 0" in card
    assert "Created by: operator (Alice)" in card

    paused = schedule(enabled=False, paused_by=7, pause_reason="holiday <3")
    card = schedule_card(paused, NOW, run(RunStatus.SUCCEEDED))
    assert "paused (by Alice: holiday &lt;3)" in card and PAUSED_NOTE in card
    assert "(+01:00)" in card  # only the last run's time
    assert "✅" in card
    by_other = schedule_card(schedule(enabled=False, paused_by=9), NOW, None, {9: "Olga"})
    assert "paused (by Olga)" in by_other

    tripped = schedule_card(schedule(tripped=True, consecutive_failures=3), NOW, None)
    assert "tripped" in tripped and "3 failed runs" in tripped and PAUSED_NOTE in tripped


def test_card_buttons_toggle_between_pause_and_resume() -> None:
    s = schedule()
    labels = [label for row in data(card_keyboard(s)) for label, _ in row]
    assert labels == ["Run now", "Pause", "History", "Edit", "Delete", "Policies"]
    assert data(card_keyboard(s))[0][1] == ("Pause", f"s:pause:{s.id}:c")
    for stopped in (schedule(enabled=False), schedule(tripped=True)):
        assert data(card_keyboard(stopped))[0][1] == ("Resume", f"s:resume:{s.id}:c")
    text, markup = archive_question(s)
    assert "history is kept" in text
    assert data(markup) == [[("Archive", f"s:arch:{s.id}"), ("Keep", f"s:keep:{s.id}")]]
    # Telegram's limit on callback data holds with 26-character ids.
    assert all(len(d.encode()) <= 64 for row in data(card_keyboard(s)) for _, d in row)


def test_history_pages_and_empty_states() -> None:
    s = schedule()
    text, markup = history_page(
        [], page=0, has_more=False, zones={}, default_zone="UTC", names={}, schedule=s
    )
    assert text.startswith("No runs yet for this schedule") and markup is None
    text, markup = history_page([], page=0, has_more=False, zones={}, default_zone="UTC", names={})
    assert text.startswith("No runs yet for this chat") and markup is None

    runs = [run(RunStatus.SUCCEEDED, 1), run(RunStatus.DEAD, 2, error="HTTP 500")]
    text, markup = history_page(
        runs,
        page=0,
        has_more=True,
        zones={s.id: "Europe/Berlin"},
        default_zone="UTC",
        names={s.id: s.name},
    )
    assert "1. <b>Brief &lt;0&gt;</b>: ✅" in text and "2. <b>" in text
    assert "dead — HTTP 500" in text
    assert f"/retry <code>{runs[1].id}</code>" in text
    # A button per line opens that run's detail.
    details = [("1", f"r:show:{runs[0].id}"), ("2", f"r:show:{runs[1].id}")]
    assert data(markup) == [details, [("Next ▶", "h:1")]]
    _, markup = history_page(
        runs, page=1, has_more=False, zones={}, default_zone="UTC", names={}, schedule=s
    )
    assert data(markup) == [details, [("◀ Prev", f"s:hist:{s.id}:0")]]


def test_dead_letters_offer_the_right_buttons() -> None:
    assert "Nothing needs you" in dead_letters_header(0, False)
    assert dead_letters_header(1, False).startswith("💀 1 run needs you.")
    assert "10+" in dead_letters_header(10, True)
    dead = run(RunStatus.DEAD, 5, error="boom")
    text, markup = dead_letter(dead, "Brief <x>", "Europe/Berlin")
    assert "Brief &lt;x&gt;" in text and dead.id in text
    assert data(markup) == [[("Retry", f"r:retry:{dead.id}")]]
    unknown = run(RunStatus.UNKNOWN, 6)
    _, markup = dead_letter(unknown, "x", "UTC")
    assert [label for label, _ in data(markup)[0]] == ["Retry", "Mark done", "Drop"]


def test_missed_outcomes_say_what_happened() -> None:
    skipped = run(RunStatus.SKIPPED, 3, error="missed: x")
    pending = run(RunStatus.PENDING, 1, RunTrigger.CATCH_UP)
    assert missed_outcome("latest", [pending, skipped]) == "Running the latest missed fire."
    three = [pending, run(RunStatus.PENDING, 2, RunTrigger.CATCH_UP), pending]
    assert missed_outcome("all", three) == "Running all 3 missed fires."
    assert missed_outcome("all", [pending, skipped]).startswith("Running the newest 1 of 2")
    assert missed_outcome("skip", [skipped]) == "Skipped: nothing will run for that window."
    started = run(RunStatus.SUCCEEDED, 1, RunTrigger.CATCH_UP)
    assert "1 missed fire had already started" in missed_outcome("skip", [started, skipped])
    assert "no longer recorded" in missed_outcome("all", [])


def test_a_second_press_on_missed_fires_says_where_they_stand() -> None:
    ran = [run(RunStatus.SUCCEEDED, 0, RunTrigger.CATCH_UP), run(RunStatus.DEAD, 60)]
    assert (
        missed_already(ran) == "Already done: the 2 missed fires ran. /history shows how they went."
    )
    waiting = [run(RunStatus.PENDING, 0, RunTrigger.CATCH_UP)]
    assert (
        missed_already(waiting) == "Already chosen: the missed fire is running or waiting to run."
    )
    skipped = [run(RunStatus.SKIPPED, 0)]
    assert missed_already(skipped) == (
        "Already settled: those missed fires were skipped; nothing ran."
    )
