"""The pure half of /new and /edit: parsing what people write, previews and DST notes.

DST dates used below (tzdata):
  Europe/Berlin       2027-03-28 02:00 -> 03:00 (+01 -> +02); 2027-10-31 03:00 -> 02:00
  America/New_York    2027-03-14 02:00 -> 03:00 (-05 -> -04)
  Australia/Lord_Howe 2027-10-03 02:00 -> 02:30 (+10:30 -> +11)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.demo_kit.telegram_server import parse_entities
from bot.views_new import (
    CRON_HELP,
    DAY_OF_MONTH_HELP,
    EVERY_HELP,
    ONCE_HELP,
    ONE_LINE_HELP,
    TIME_HELP,
    WEEKDAY_HELP,
    default_name,
    dst_notes,
    every_spec,
    parse_day_of_month,
    parse_duration,
    parse_once,
    parse_one_line,
    parse_time,
    parse_weekdays,
    preset_cron,
    preview_text,
    upcoming,
)
from scheduler.errors import InvalidSchedule
from scheduler.models import Action, ActionKind
from scheduler.timeutil import format_utc
from scheduler.triggers import cron_trigger, interval_trigger, once_trigger

#: Monday 23 November 2026, 07:00 UTC = 08:00 in Berlin (the bot harness's start).
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
BERLIN = "Europe/Berlin"


class TestPieces:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [("09:00", (9, 0)), ("9:05", (9, 5)), (" 23:59 ", (23, 59)), ("7.30", (7, 30))],
    )
    def test_times(self, text: str, expected: tuple[int, int]) -> None:
        assert parse_time(text) == expected

    @pytest.mark.parametrize("text", ["9", "24:00", "9am", "09:60", "", "nine"])
    def test_bad_times_say_how_to_write_one(self, text: str) -> None:
        with pytest.raises(InvalidSchedule, match=r"^Write the time as HH:MM, like 09:00\.$"):
            parse_time(text)

    def test_weekdays_use_cron_numbers_with_sunday_zero(self) -> None:
        assert parse_weekdays("mon") == [1]
        assert parse_weekdays("Sunday") == [0]
        assert parse_weekdays("mon,wed,fri") == [1, 3, 5]
        with pytest.raises(InvalidSchedule) as error:
            parse_weekdays("funday")
        assert str(error.value) == WEEKDAY_HELP

    def test_days_of_month_stop_at_28(self) -> None:
        assert parse_day_of_month("1") == 1
        assert parse_day_of_month("28th") == 28
        for bad in ("0", "29", "31", "first"):
            with pytest.raises(InvalidSchedule) as error:
                parse_day_of_month(bad)
            assert str(error.value) == DAY_OF_MONTH_HELP

    @pytest.mark.parametrize(
        ("text", "seconds"),
        [("4h", 14400), ("4 hours", 14400), ("30m", 1800), ("2d", 172800), ("1w", 604800)],
    )
    def test_durations(self, text: str, seconds: int) -> None:
        assert parse_duration(text) == seconds

    def test_a_bare_number_needs_a_unit_unless_one_is_implied(self) -> None:
        assert parse_duration("4", bare_unit=3600) == 14400
        for bad in ("4", "0h", "4 fortnights", "soon"):
            with pytest.raises(InvalidSchedule) as error:
                parse_duration(bad)
            assert str(error.value) == EVERY_HELP


class TestOnce:
    def test_relative_and_local_forms(self) -> None:
        assert format_utc(parse_once("in 3 days", NOW, BERLIN)) == "2026-11-26T07:00:00Z"
        assert format_utc(parse_once("in 2 hours", NOW, BERLIN)) == "2026-11-23T09:00:00Z"
        assert format_utc(parse_once("in 45m", NOW, BERLIN)) == "2026-11-23T07:45:00Z"
        assert format_utc(parse_once("tomorrow 09:00", NOW, BERLIN)) == "2026-11-24T08:00:00Z"
        assert format_utc(parse_once("today 18:00", NOW, BERLIN)) == "2026-11-23T17:00:00Z"
        assert format_utc(parse_once("2026-12-01 09:00", NOW, BERLIN)) == "2026-12-01T08:00:00Z"
        # Summer time: the same wall time is an hour earlier in UTC.
        assert format_utc(parse_once("2027-07-01 09:00", NOW, BERLIN)) == "2027-07-01T07:00:00Z"

    def test_a_wall_time_skipped_by_spring_forward_is_refused(self) -> None:
        with pytest.raises(InvalidSchedule, match="does not exist in Europe/Berlin"):
            parse_once("2027-03-28 02:30", NOW, BERLIN)

    def test_a_repeated_wall_time_means_the_first_one(self) -> None:
        assert format_utc(parse_once("2027-10-31 02:30", NOW, BERLIN)) == "2027-10-31T00:30:00Z"

    @pytest.mark.parametrize("text", ["next week", "in a while", "2026-13-01 09:00", "tomorrow"])
    def test_unreadable_forms(self, text: str) -> None:
        with pytest.raises(InvalidSchedule) as error:
            parse_once(text, NOW, BERLIN)
        assert str(error.value) in (ONCE_HELP, EVERY_HELP, TIME_HELP)


class TestOneLine:
    @pytest.mark.parametrize(
        ("text", "cron"),
        [
            ("daily 09:00 Prepare my brief", "0 9 * * *"),
            ("weekdays 08:30 Standup notes", "30 8 * * 1-5"),
            ("weekly mon 09:00 Review", "0 9 * * 1"),
            ("weekly mon,thu at 09:00 Review", "0 9 * * 1,4"),
            ("monthly 1 09:00 Invoice", "0 9 1 * *"),
            ('cron "0 9 * * 1-5" Prompt text', "0 9 * * 1-5"),
            ("cron “0 9 * * 1-5” Prompt text", "0 9 * * 1-5"),
            ("cron 0 9 * * 1-5 Prompt text", "0 9 * * 1-5"),
            ("cron @daily Prompt text", "@daily"),
        ],
    )
    def test_cron_forms_use_the_chat_zone(self, text: str, cron: str) -> None:
        line = parse_one_line(text, NOW, BERLIN)
        assert (line.kind, line.trigger.kind) == (ActionKind.AGENT, "cron")
        assert (line.trigger.cron, line.trigger.timezone) == (cron, BERLIN)
        assert line.text == text.removeprefix(text[: text.index(line.text)])

    def test_every_starts_at_the_next_full_hour(self) -> None:
        line = parse_one_line("every 4h Check inbox", NOW, BERLIN)
        assert line.trigger.every_seconds == 4 * 3600
        assert line.trigger.start_at is not None
        assert format_utc(line.trigger.start_at) == "2026-11-23T08:00:00Z"
        assert line.text == "Check inbox"

    def test_in_is_a_one_time_schedule(self) -> None:
        line = parse_one_line("in 3d Follow up with Ana", NOW, BERLIN)
        assert line.trigger.kind == "once" and line.trigger.at is not None
        assert format_utc(line.trigger.at) == "2026-11-26T07:00:00Z"
        assert line.text == "Follow up with Ana"

    def test_remind_makes_a_reminder_and_the_text_keeps_its_lines(self) -> None:
        line = parse_one_line("remind daily 18:00 Stretch\nand drink water", NOW, BERLIN)
        assert line.kind is ActionKind.REMINDER
        assert line.trigger.cron == "0 18 * * *"
        assert line.text == "Stretch\nand drink water"

    @pytest.mark.parametrize(
        ("text", "sentence"),
        [
            ("fortnightly Prepare", ONE_LINE_HELP),
            ("daily 9am Prepare", TIME_HELP),
            ("weekly someday 09:00 Review", WEEKDAY_HELP),
            ("monthly 31 09:00 Invoice", DAY_OF_MONTH_HELP),
            ("every often Check", EVERY_HELP),
            ("cron 0 9 *", CRON_HELP),
            (
                "daily 09:00",
                "Add the prompt after the time, like /new daily 09:00 Prepare my brief.",
            ),
        ],
    )
    def test_bad_forms_answer_one_sentence(self, text: str, sentence: str) -> None:
        with pytest.raises(InvalidSchedule) as error:
            parse_one_line(text, NOW, BERLIN)
        assert str(error.value) == sentence


class TestPresets:
    def test_presets_map_to_cron(self) -> None:
        assert preset_cron("daily", 9, 0) == "0 9 * * *"
        assert preset_cron("weekdays", 8, 30) == "30 8 * * 1-5"
        assert preset_cron("weekly", 9, 0, weekdays=[0]) == "0 9 * * 0"
        assert preset_cron("monthly", 9, 0, day=15) == "0 9 15 * *"

    def test_intervals_anchor_at_a_round_time(self) -> None:
        late = NOW + timedelta(minutes=7, seconds=13)
        hourly = every_spec(3 * 3600, late, BERLIN)
        assert hourly.start_at is not None and format_utc(hourly.start_at) == "2026-11-23T08:00:00Z"
        quarter = every_spec(900, late, BERLIN)
        assert (
            quarter.start_at is not None and format_utc(quarter.start_at) == "2026-11-23T07:15:00Z"
        )
        # A half-hour zone: the next full hour is local, not UTC.
        kolkata = every_spec(3600, NOW, "Asia/Kolkata")
        assert kolkata.start_at is not None
        assert format_utc(kolkata.start_at) == "2026-11-23T07:30:00Z"

    def test_default_names(self) -> None:
        assert default_name(Action(text="Prepare my brief")) == "Prepare my brief"
        long = default_name(Action(text="Prepare my daily brief with all the news and weather"))
        assert long == "Prepare my daily brief with all the…" and len(long) <= 40
        assert default_name(Action(text="First line\nsecond line")) == "First line"
        assert default_name(Action(template="daily_brief")) == "Daily brief"


class TestDstNotes:
    def test_a_skipped_and_a_repeated_wall_time_within_a_year(self) -> None:
        notes = dst_notes(cron_trigger("30 2 * * *", BERLIN), NOW)
        assert notes == [
            "Note: on Sun 28 Mar 02:30 does not exist in Europe/Berlin; it runs at 03:00 that day.",
            "Note: on Sun 31 Oct 02:30 happens twice in Europe/Berlin; "
            "it runs once, at the first (+02:00).",
        ]

    def test_only_transitions_inside_the_window_count(self) -> None:
        trigger = cron_trigger("30 2 * * *", BERLIN)
        assert dst_notes(trigger, NOW, days=30) == []
        near = datetime(2027, 3, 20, 12, 0, tzinfo=UTC)
        assert dst_notes(trigger, near, days=30) == [
            "Note: on Sun 28 Mar 02:30 does not exist in Europe/Berlin; it runs at 03:00 that day."
        ]

    def test_a_time_clear_of_the_transition_has_no_note(self) -> None:
        assert dst_notes(cron_trigger("0 9 * * *", BERLIN), NOW) == []
        # Sundays only at 02:30, but not in March: the transition day does not fire.
        assert dst_notes(cron_trigger("30 2 * 4-9 0", BERLIN), NOW) == []

    def test_other_zones(self) -> None:
        assert dst_notes(cron_trigger("30 2 * * 0", "America/New_York"), NOW) == [
            "Note: on Sun 14 Mar 02:30 does not exist in America/New_York; "
            "it runs at 03:00 that day."
        ]
        assert dst_notes(cron_trigger("15 2 * * *", "Australia/Lord_Howe"), NOW) == [
            "Note: on Sun 03 Oct 02:15 does not exist in Australia/Lord_Howe; "
            "it runs at 02:30 that day."
        ]

    def test_wildcard_jobs_follow_cronie(self) -> None:
        notes = dst_notes(cron_trigger("*/15 * * * *", BERLIN), NOW)
        assert notes == [
            "Note: on Sun 28 Mar the clocks jump from 02:00 to 03:00 in Europe/Berlin, "
            "so the 4 runs from 02:00 to 02:45 are skipped.",
            "Note: on Sun 31 Oct the clocks go back from 03:00 to 02:00 in Europe/Berlin, "
            "so the 4 runs from 02:00 to 02:45 happen twice.",
        ]

    def test_instants_have_no_notes(self) -> None:
        assert dst_notes(interval_trigger(3600, NOW), NOW) == []
        assert dst_notes(once_trigger(NOW + timedelta(days=1)), NOW) == []


class TestPreview:
    def test_preview_across_the_spring_transition(self) -> None:
        now = datetime(2027, 3, 26, 12, 0, tzinfo=UTC)
        text = preview_text(
            name="Backups <nightly>",
            action=Action(text="Check the backups & report"),
            trigger=cron_trigger("30 2 * * *", BERLIN),
            now=now,
        )
        plain, _ = parse_entities(text, "HTML")  # well-formed for Telegram
        assert plain.splitlines() == [
            "Backups <nightly>",
            "Asks the agent: “Check the backups & report”",
            "When: At 02:30 AM (Europe/Berlin) — cron 30 2 * * *",
            "Zone: Europe/Berlin",
            "Next:",
            "• Sat 27 Mar 02:30 (+01:00)",
            "• Sun 28 Mar 03:00 (+02:00)",
            "• Mon 29 Mar 02:30 (+02:00)",
            "Note: on Sun 28 Mar 02:30 does not exist in Europe/Berlin; it runs at 03:00 that day.",
            "Note: on Sun 31 Oct 02:30 happens twice in Europe/Berlin; "
            "it runs once, at the first (+02:00).",
        ]

    def test_interval_and_once_previews_show_local_times(self) -> None:
        trigger = interval_trigger(4 * 3600, datetime(2026, 11, 23, 8, 0, tzinfo=UTC), BERLIN)
        plain, _ = parse_entities(
            preview_text(
                name="Inbox",
                action=Action(kind=ActionKind.REMINDER, text="Check inbox"),
                trigger=trigger,
                now=NOW,
            ),
            "HTML",
        )
        assert "Reminds you: “Check inbox”" in plain
        assert "When: every 4 hours, starting Mon 23 Nov 09:00 (+01:00)" in plain
        assert "• Mon 23 Nov 13:00 (+01:00)" in plain
        assert upcoming(trigger, NOW) == [
            datetime(2026, 11, 23, h, 0, tzinfo=UTC) for h in (8, 12, 16)
        ]

    def test_a_long_prompt_is_cut_in_the_preview(self) -> None:
        text = preview_text(
            name="Long",
            action=Action(text="x" * 3999),
            trigger=cron_trigger("0 9 * * *", BERLIN),
            now=NOW,
        )
        assert len(text) < 1000
