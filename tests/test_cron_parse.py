"""Cron expressions: grammar, validation sentences, the day-field rule, DST transitions.

DST cases use real zones; each class comment gives the transition it exercises.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from itertools import islice
from zoneinfo import ZoneInfo

import pytest

from scheduler.cron import CronExpression, load_zone
from scheduler.errors import InvalidSchedule
from scheduler.timeutil import format_utc

SUPPORTED = (
    "use five fields (minute hour day-of-month month day-of-week) "
    "with numbers, names, ranges, steps and lists."
)


def fires(expr: str, zone: str, after: str, count: int = 5) -> list[str]:
    cron = CronExpression.parse(expr)
    start = datetime.fromisoformat(after)
    return [format_utc(fire) for fire in islice(cron.iter_after(start, load_zone(zone)), count)]


class TestParse:
    def test_whitespace_is_normalised(self) -> None:
        assert CronExpression.parse("  0   9 *\t* 1-5 ").expr == "0 9 * * 1-5"
        assert str(CronExpression.parse("0 9 * * 1-5")) == "0 9 * * 1-5"

    def test_parse_is_stable_and_immutable(self) -> None:
        cron = CronExpression.parse("0 9 * * 1-5")
        assert cron == CronExpression.parse("0  9 * * 1-5")
        with pytest.raises(dataclasses.FrozenInstanceError):
            cron.expr = "* * * * *"  # type: ignore[misc]

    def test_names_are_case_insensitive(self) -> None:
        weekdays = fires("0 9 * * 1-5", "UTC", "2026-01-01T00:00:00Z")
        assert fires("0 9 * * mon-FRI", "UTC", "2026-01-01T00:00:00Z") == weekdays
        assert fires("0 0 1 Jan,JUL *", "UTC", "2026-01-01T00:00:00Z", 2) == [
            "2026-07-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
        ]

    def test_sunday_is_0_and_7(self) -> None:
        sundays = fires("0 0 * * 0", "UTC", "2026-01-01T00:00:00Z")
        assert fires("0 0 * * 7", "UTC", "2026-01-01T00:00:00Z") == sundays
        assert fires("0 0 * * SUN", "UTC", "2026-01-01T00:00:00Z") == sundays
        assert sundays[0] == "2026-01-04T00:00:00Z"

    def test_day_of_week_range_may_end_in_sunday_as_0(self) -> None:
        # cronie reads `5-0` as 5-7 (Fri-Sun); 2026-01-02 is a Friday.
        weekend = fires("0 0 * * 5-0", "UTC", "2026-01-01T00:00:00Z", 4)
        assert weekend == [
            "2026-01-02T00:00:00Z",
            "2026-01-03T00:00:00Z",
            "2026-01-04T00:00:00Z",
            "2026-01-09T00:00:00Z",
        ]
        assert fires("0 0 * * fri-sun", "UTC", "2026-01-01T00:00:00Z", 4) == weekend
        assert fires("0 0 * * sat-sun", "UTC", "2026-01-01T00:00:00Z", 3) == [
            "2026-01-03T00:00:00Z",
            "2026-01-04T00:00:00Z",
            "2026-01-10T00:00:00Z",
        ]
        sundays = fires("0 0 * * 0", "UTC", "2026-01-01T00:00:00Z")
        assert fires("0 0 * * 0-0", "UTC", "2026-01-01T00:00:00Z") == sundays
        assert fires("0 0 * * 7-0", "UTC", "2026-01-01T00:00:00Z") == sundays
        assert fires("0 0 * * 1,6-0", "UTC", "2026-01-01T00:00:00Z", 3) == [
            "2026-01-03T00:00:00Z",
            "2026-01-04T00:00:00Z",
            "2026-01-05T00:00:00Z",
        ]
        # The expression is kept as the user wrote it.
        assert CronExpression.parse("0 0 * * 5-0").expr == "0 0 * * 5-0"

    def test_equal_range_is_one_value(self) -> None:
        # croniter 7 reads 5-5 as the whole field.
        assert fires("5-5 * * * *", "UTC", "2026-01-01T00:00:00Z", 2) == [
            "2026-01-01T00:05:00Z",
            "2026-01-01T01:05:00Z",
        ]

    def test_steps_lists_and_ranges(self) -> None:
        assert fires("1-30/10 * * * *", "UTC", "2026-01-01T00:00:00Z", 4) == [
            "2026-01-01T00:01:00Z",
            "2026-01-01T00:11:00Z",
            "2026-01-01T00:21:00Z",
            "2026-01-01T01:01:00Z",
        ]
        assert fires("0 8-9,14 * * *", "UTC", "2026-01-01T00:00:00Z", 4) == [
            "2026-01-01T08:00:00Z",
            "2026-01-01T09:00:00Z",
            "2026-01-01T14:00:00Z",
            "2026-01-02T08:00:00Z",
        ]
        assert fires("*/15 * * * *", "UTC", "2026-01-01T00:00:00Z", 2) == [
            "2026-01-01T00:15:00Z",
            "2026-01-01T00:30:00Z",
        ]

    @pytest.mark.parametrize(
        ("shortcut", "fields", "fixed"),
        [
            ("@hourly", ("0", "*", "*", "*", "*"), False),
            ("@daily", ("0", "0", "*", "*", "*"), True),
            ("@midnight", ("0", "0", "*", "*", "*"), True),
            ("@weekly", ("0", "0", "*", "*", "0"), True),
            ("@monthly", ("0", "0", "1", "*", "*"), True),
            ("@yearly", ("0", "0", "1", "1", "*"), True),
            ("@annually", ("0", "0", "1", "1", "*"), True),
            ("@DAILY", ("0", "0", "*", "*", "*"), True),
        ],
    )
    def test_shortcuts(self, shortcut: str, fields: tuple[str, ...], fixed: bool) -> None:
        cron = CronExpression.parse(shortcut)
        assert cron.expr == shortcut
        assert cron.fields == fields
        assert cron.is_fixed_time is fixed

    @pytest.mark.parametrize(
        ("expr", "fixed"),
        [
            ("30 2 * * *", True),
            ("0 0-23/2 * * *", True),
            ("30 1-23/2 * * *", True),
            ("0,30 2 * * *", True),
            ("0 * * * *", False),
            ("0 */2 * * *", False),
            ("*/15 2 * * *", False),
            ("* 2 * * *", False),
            ("5-5 * * * *", False),
        ],
    )
    def test_fixed_time_follows_cronie_star_flags(self, expr: str, fixed: bool) -> None:
        assert CronExpression.parse(expr).is_fixed_time is fixed

    def test_instant_must_be_aware(self) -> None:
        with pytest.raises(ValueError, match="aware"):
            CronExpression.parse("0 9 * * *").next_after(datetime(2026, 1, 1), ZoneInfo("UTC"))

    def test_result_is_utc_and_strictly_after(self) -> None:
        cron = CronExpression.parse("0 9 * * *")
        berlin = load_zone("Europe/Berlin")
        at_fire = datetime(2026, 1, 5, 9, tzinfo=berlin)
        following = cron.next_after(at_fire, berlin)
        assert following.tzinfo is UTC
        assert format_utc(following) == "2026-01-06T08:00:00Z"
        just_before = at_fire - timedelta(microseconds=1)
        assert cron.next_after(just_before, berlin) == at_fire
        # Any aware input works, whatever its own offset.
        plus_five = datetime(2026, 1, 5, 13, 1, tzinfo=timezone(timedelta(hours=5)))
        assert format_utc(cron.next_after(plus_five, berlin)) == "2026-01-06T08:00:00Z"

    def test_iter_after_is_successive_next_after(self) -> None:
        cron = CronExpression.parse("*/10 * * * *")
        zone = load_zone("Europe/Berlin")
        start = datetime(2026, 3, 29, 0, 45, tzinfo=UTC)
        stepped = [cron.next_after(start, zone)]
        for _ in range(4):
            stepped.append(cron.next_after(stepped[-1], zone))
        assert list(islice(cron.iter_after(start, zone), 5)) == stepped


class TestDayFields:
    """cronie's rule: OR when both day fields are restricted, AND when either starts with `*`."""

    def test_star_step_in_day_of_month_ands(self) -> None:
        # Odd days of the month that are also Mondays.
        assert fires("0 0 */2 * 1", "UTC", "2026-01-01T00:00:00Z") == [
            "2026-01-05T00:00:00Z",
            "2026-01-19T00:00:00Z",
            "2026-02-09T00:00:00Z",
            "2026-02-23T00:00:00Z",
            "2026-03-09T00:00:00Z",
        ]

    def test_both_restricted_ors(self) -> None:
        # 2026-01-01 is a Thursday: Mondays, plus Sunday 1 February.
        assert fires("0 0 1 * 1", "UTC", "2026-01-01T00:00:00Z", 6) == [
            "2026-01-05T00:00:00Z",
            "2026-01-12T00:00:00Z",
            "2026-01-19T00:00:00Z",
            "2026-01-26T00:00:00Z",
            "2026-02-01T00:00:00Z",
            "2026-02-02T00:00:00Z",
        ]

    def test_star_step_in_day_of_week_ands(self) -> None:
        # `*/7` is Sunday (0 and 7): the 1st of months that start on a Sunday.
        assert fires("0 0 1 * */7", "UTC", "2026-01-01T00:00:00Z", 3) == [
            "2026-02-01T00:00:00Z",
            "2026-03-01T00:00:00Z",
            "2026-11-01T00:00:00Z",
        ]

    def test_plain_star_leaves_the_other_field_alone(self) -> None:
        assert fires("0 0 1 * *", "UTC", "2026-01-01T00:00:00Z", 2) == [
            "2026-02-01T00:00:00Z",
            "2026-03-01T00:00:00Z",
        ]

    def test_february_29_fires_in_leap_years(self) -> None:
        assert fires("0 9 29 2 *", "Europe/Berlin", "2026-01-01T00:00:00Z", 3) == [
            "2028-02-29T08:00:00Z",
            "2032-02-29T08:00:00Z",
            "2036-02-29T08:00:00Z",
        ]

    def test_day_31_of_february_fires_on_the_weekday_when_ored(self) -> None:
        # Both fields restricted: Mondays in February, although no 31 February exists.
        assert fires("0 0 31 2 1", "UTC", "2026-01-01T00:00:00Z", 2) == [
            "2026-02-02T00:00:00Z",
            "2026-02-09T00:00:00Z",
        ]


class TestValidation:
    @pytest.mark.parametrize(
        ("text", "sentence"),
        [
            ("0 0 L * *", f"Unsupported cron syntax 'L' in day-of-month: {SUPPORTED}"),
            ("0 0 15W * *", f"Unsupported cron syntax '15W' in day-of-month: {SUPPORTED}"),
            ("0 0 LW * *", f"Unsupported cron syntax 'LW' in day-of-month: {SUPPORTED}"),
            ("0 0 * * 5L", f"Unsupported cron syntax '5L' in day-of-week: {SUPPORTED}"),
            ("0 0 * * 1#2", f"Unsupported cron syntax '1#2' in day-of-week: {SUPPORTED}"),
            ("0 0 ? * 1", f"Unsupported cron syntax '?' in day-of-month: {SUPPORTED}"),
            ("0 0 * * ?", f"Unsupported cron syntax '?' in day-of-week: {SUPPORTED}"),
            ("0 MON * * *", f"Unsupported cron syntax 'MON' in hour: {SUPPORTED}"),
            ("0 0 1,,2 * *", f"Unsupported cron syntax '(empty)' in day-of-month: {SUPPORTED}"),
            ("*-5 * * * *", f"Unsupported cron syntax '*-5' in minute: {SUPPORTED}"),
            ("~ * * * *", f"Unsupported cron syntax '~' in minute: {SUPPORTED}"),
            ("٣ * * * *", f"Unsupported cron syntax '٣' in minute: {SUPPORTED}"),
            (
                "5/15 * * * *",
                "Unsupported cron syntax '5/15' in minute: "
                "a step goes after * or a range, as in */15 or 5-59/15.",
            ),
            (
                "@reboot",
                "Unsupported cron shortcut '@reboot': use @hourly, @daily, @midnight, @weekly, "
                "@monthly, @yearly or @annually, or five fields (minute hour day-of-month month "
                "day-of-week).",
            ),
            (
                "@daily 0",
                "The cron shortcut '@daily' stands alone: remove what follows it, or use five "
                "fields (minute hour day-of-month month day-of-week).",
            ),
            (
                "0 0 9 * * *",
                "The cron expression '0 0 9 * * *' has 6 fields: use five fields (minute hour "
                "day-of-month month day-of-week), e.g. '0 9 * * 1-5'; seconds and years are "
                "not supported.",
            ),
            (
                "0 9 * *",
                "The cron expression '0 9 * *' has 4 fields: use five fields (minute hour "
                "day-of-month month day-of-week), e.g. '0 9 * * 1-5'.",
            ),
            (
                "   ",
                "The cron expression is empty: use five fields (minute hour day-of-month month "
                "day-of-week), e.g. '0 9 * * 1-5', or @hourly, @daily, @weekly, @monthly or "
                "@yearly.",
            ),
            ("60 * * * *", "Value 60 is out of range in minute: minute takes 0-59."),
            ("0 24 * * *", "Value 24 is out of range in hour: hour takes 0-23."),
            ("0 0 0 * *", "Value 0 is out of range in day-of-month: day-of-month takes 1-31."),
            ("0 0 32 * *", "Value 32 is out of range in day-of-month: day-of-month takes 1-31."),
            ("0 0 1 13 *", "Value 13 is out of range in month: month takes 1-12 or JAN-DEC."),
            (
                "0 0 * * 8",
                "Value 8 is out of range in day-of-week: day-of-week takes 0-7 "
                "(0 and 7 are Sunday) or SUN-SAT.",
            ),
            ("0 0 * FOO *", "Unknown name 'FOO' in month: month takes 1-12 or JAN-DEC."),
            (
                "0 0 * * MONDAY",
                "Unknown name 'MONDAY' in day-of-week: day-of-week takes 0-7 "
                "(0 and 7 are Sunday) or SUN-SAT.",
            ),
            (
                "5-2 * * * *",
                "Range 5-2 in minute goes backwards: write the smaller value first, since a "
                "range cannot wrap around; minute takes 0-59.",
            ),
            (
                "0 0 * * FRI-MON",
                "Range FRI-MON in day-of-week goes backwards: write the smaller value first, "
                "since a range cannot wrap around; day-of-week takes 0-7 (0 and 7 are Sunday) "
                "or SUN-SAT.",
            ),
            (
                "0 0 * * 5-0/2",
                "Range 5-0/2 in day-of-week ends in Sunday as 0 before a step, which cron reads "
                "as no day at all: write Sunday as 7 there, as in 5-7/2.",
            ),
            (
                "0 5-0 * * *",
                "Range 5-0 in hour goes backwards: write the smaller value first, since a "
                "range cannot wrap around; hour takes 0-23.",
            ),
            (
                "*/0 * * * *",
                "Step 0 in minute is not allowed: use a step of 1 or more, as in */15.",
            ),
            (
                "*/90 * * * *",
                "Step 90 in minute is too large: a step there can be at most 59; for longer "
                "periods use an interval schedule.",
            ),
            (
                "0 9 31 2 *",
                "The cron expression '0 9 31 2 *' never fires: February has no day 31.",
            ),
            (
                "0 0 30 2 *",
                "The cron expression '0 0 30 2 *' never fires: February has no day 30.",
            ),
            (
                "0 0 31 4,6,9,11 *",
                "The cron expression '0 0 31 4,6,9,11 *' never fires: April, June, September "
                "and November have no day 31.",
            ),
            (
                "0 0 31 2 */2",
                "The cron expression '0 0 31 2 */2' never fires: February has no day 31.",
            ),
            (
                "0 0 * * " + "1," * 200 + "1",
                "The cron expression is too long: keep it under 256 characters.",
            ),
        ],
    )
    def test_refused_with_one_sentence(self, text: str, sentence: str) -> None:
        with pytest.raises(InvalidSchedule) as caught:
            CronExpression.parse(text)
        assert str(caught.value) == sentence
        assert "\n" not in sentence

    def test_invalid_schedule_is_a_value_error(self) -> None:
        with pytest.raises(ValueError):
            CronExpression.parse("0 0 L * *")

    @pytest.mark.parametrize(
        "text",
        [
            "0 9 29 2 *",
            "0 0 30 1-12 *",
            "59 23 31 12 7",
            "0-59/59 0-23/23 1-31/30 1-12/11 0-7/7",
            "0 0 * * 0-7",
            "0 0 1 jan-dec sun-sat",
            "00 09 * * 01",
        ],
    )
    def test_accepted(self, text: str) -> None:
        CronExpression.parse(text)


class TestZones:
    def test_known_zone(self) -> None:
        assert load_zone("Europe/Berlin") is ZoneInfo("Europe/Berlin")
        assert load_zone(" UTC ").key == "UTC"

    @pytest.mark.parametrize(
        ("name", "sentence"),
        [
            ("Europe/Berlinn", "Unknown time zone 'Europe/Berlinn'. Did you mean Europe/Berlin?"),
            ("europe/berlin", "Unknown time zone 'europe/berlin'. Did you mean Europe/Berlin?"),
            (
                "America/New_Yrok",
                "Unknown time zone 'America/New_Yrok'. Did you mean America/New_York?",
            ),
            (
                "Mars/Olympus_Mons_Base",
                "Unknown time zone 'Mars/Olympus_Mons_Base': use an IANA name such as "
                "Europe/Berlin or America/New_York.",
            ),
            ("", "The time zone is empty: use an IANA name such as Europe/Berlin or UTC."),
            ("  ", "The time zone is empty: use an IANA name such as Europe/Berlin or UTC."),
            (
                "../../etc/passwd",
                "Unknown time zone '../../etc/passwd': use an IANA name such as "
                "Europe/Berlin or America/New_York.",
            ),
        ],
    )
    def test_unknown_zone(self, name: str, sentence: str) -> None:
        with pytest.raises(InvalidSchedule) as caught:
            load_zone(name)
        assert str(caught.value) == sentence


class TestDstTransitions:
    class TestNewYork:
        """2026-03-08 02:00 EST -> 03:00 EDT (07:00Z);
        2026-11-01 02:00 EDT -> 01:00 EST (06:00Z)."""

        def test_fixed_job_in_the_gap_runs_at_the_jump(self) -> None:
            assert fires("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 2) == [
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z",
            ]

        def test_wildcard_job_in_the_gap_does_not_run(self) -> None:
            assert fires("*/30 2 * * *", "America/New_York", "2026-03-08T00:00:00Z", 2) == [
                "2026-03-09T06:00:00Z",
                "2026-03-09T06:30:00Z",
            ]

        def test_same_hours_differ_by_star(self) -> None:
            after = "2026-03-08T04:30:00Z"
            assert fires("0 */2 * * *", "America/New_York", after, 3) == [
                "2026-03-08T05:00:00Z",
                "2026-03-08T08:00:00Z",
                "2026-03-08T10:00:00Z",
            ]
            assert fires("0 0-23/2 * * *", "America/New_York", after, 3) == [
                "2026-03-08T05:00:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-08T08:00:00Z",
            ]

        def test_skipped_match_and_first_minute_after_the_jump_fire_once(self) -> None:
            assert fires("0 2,3 * * *", "America/New_York", "2026-03-08T00:00:00Z", 3) == [
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:00:00Z",
                "2026-03-09T07:00:00Z",
            ]

        def test_fixed_job_in_the_repeat_runs_at_first_occurrence_only(self) -> None:
            assert fires("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2) == [
                "2026-11-01T05:30:00Z",
                "2026-11-02T06:30:00Z",
            ]
            # Asked between the two passes, the second pass is still not a fire.
            assert fires("30 1 * * *", "America/New_York", "2026-11-01T05:45:00Z", 1) == [
                "2026-11-02T06:30:00Z"
            ]

        def test_wildcard_job_runs_in_both_passes(self) -> None:
            # 01:45 EDT, then the clock falls back: 01:30 EST is still ahead.
            assert fires("30 * * * *", "America/New_York", "2026-11-01T05:45:00Z", 2) == [
                "2026-11-01T06:30:00Z",
                "2026-11-01T07:30:00Z",
            ]
            assert fires("*/15 * * * *", "America/New_York", "2026-11-01T06:05:00Z", 2) == [
                "2026-11-01T06:15:00Z",
                "2026-11-01T06:30:00Z",
            ]

    class TestBerlin:
        """2026-03-29 02:00 CET -> 03:00 CEST (01:00Z);
        2026-10-25 03:00 CEST -> 02:00 CET (01:00Z)."""

        def test_wildcard_hour_in_the_gap_is_skipped(self) -> None:
            assert fires("*/20 2 * * *", "Europe/Berlin", "2026-03-29T00:00:00Z", 2) == [
                "2026-03-30T00:00:00Z",
                "2026-03-30T00:20:00Z",
            ]

        def test_fixed_job_on_fall_back_day_runs_in_summer_time(self) -> None:
            assert fires("15 2 * * *", "Europe/Berlin", "2026-10-24T22:00:00Z", 2) == [
                "2026-10-25T00:15:00Z",
                "2026-10-26T01:15:00Z",
            ]

        def test_hourly_job_runs_in_both_passes(self) -> None:
            assert fires("15 * * * *", "Europe/Berlin", "2026-10-24T23:30:00Z", 3) == [
                "2026-10-25T00:15:00Z",
                "2026-10-25T01:15:00Z",
                "2026-10-25T02:15:00Z",
            ]

    class TestLordHowe:
        """30-minute shifts: 2026-10-04 02:00 +10:30 -> 02:30 +11 (2026-10-03T15:30Z);
        2026-04-05 02:00 +11 -> 01:30 +10:30 (2026-04-04T15:00Z)."""

        def test_fixed_job_in_the_half_hour_gap_runs_at_the_jump(self) -> None:
            assert fires("15 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00:00Z", 2) == [
                "2026-10-03T15:30:00Z",
                "2026-10-04T15:15:00Z",
            ]

        def test_skipped_matches_collapse_with_the_first_minute_after(self) -> None:
            assert fires("0,15,30 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00:00Z", 4) == [
                "2026-10-03T15:30:00Z",
                "2026-10-04T15:00:00Z",
                "2026-10-04T15:15:00Z",
                "2026-10-04T15:30:00Z",
            ]

        def test_fixed_job_in_the_half_hour_repeat_runs_once(self) -> None:
            assert fires("40 1 * * *", "Australia/Lord_Howe", "2026-04-04T12:00:00Z", 2) == [
                "2026-04-04T14:40:00Z",
                "2026-04-05T15:10:00Z",
            ]

    class TestChatham:
        """45-minute offsets: 2026-09-27 02:45 +12:45 -> 03:45 +13:45 (2026-09-26T14:00Z);
        2026-04-05 03:45 +13:45 -> 02:45 +12:45 (2026-04-04T14:00Z)."""

        def test_fixed_job_in_the_gap_runs_at_the_jump(self) -> None:
            assert fires("30 3 * * *", "Pacific/Chatham", "2026-09-26T12:00:00Z", 2) == [
                "2026-09-26T14:00:00Z",
                "2026-09-27T13:45:00Z",
            ]

        def test_fixed_job_in_the_repeat_runs_once(self) -> None:
            assert fires("0 3 * * *", "Pacific/Chatham", "2026-04-04T12:00:00Z", 2) == [
                "2026-04-04T13:15:00Z",
                "2026-04-05T14:15:00Z",
            ]

        def test_quarter_hours_on_an_ordinary_day(self) -> None:
            # cronsim's own zone handling misses fires at +12:45; naive matching does not.
            assert fires("*/15 * * * *", "Pacific/Chatham", "2026-06-01T00:07:00Z", 3) == [
                "2026-06-01T00:15:00Z",
                "2026-06-01T00:30:00Z",
                "2026-06-01T00:45:00Z",
            ]

    class TestKolkata:
        """+05:30 all year, no DST: plain wall-clock matching."""

        def test_weekdays(self) -> None:
            assert fires("0 9 * * 1-5", "Asia/Kolkata", "2026-03-06T00:00:00Z", 3) == [
                "2026-03-06T03:30:00Z",
                "2026-03-09T03:30:00Z",
                "2026-03-10T03:30:00Z",
            ]


# --- An independent model of cronie's minute loop, to cross-check the DST mapping. ---

_FIELD_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _field_values(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        body, _, step = item.partition("/")
        if body == "*":
            first, last = low, high
        else:
            first_text, _, last_text = body.partition("-")
            first = int(first_text)
            last = int(last_text) if last_text else first
        values.update(range(first, last + 1, int(step or 1)))
    return values


def _wall_matcher(expr: str) -> Callable[[datetime], bool]:
    parts = expr.split()
    minutes, hours, doms, months, dows = (
        _field_values(text, low, high)
        for text, (low, high) in zip(parts, _FIELD_BOUNDS, strict=True)
    )
    dows = {day % 7 for day in dows}
    day_and = parts[2].startswith("*") or parts[4].startswith("*")

    def matches(wall: datetime) -> bool:
        if wall.minute not in minutes or wall.hour not in hours or wall.month not in months:
            return False
        dom, dow = wall.day in doms, (wall.weekday() + 1) % 7 in dows
        return (dom and dow) if day_and else (dom or dow)

    return matches


def _cronie_minute_loop(
    expr: str, zone: ZoneInfo, start: datetime, end: datetime
) -> list[datetime]:
    """Step real minutes; run jobs the way cronie's main loop does around clock changes."""
    matches = _wall_matcher(expr)
    fixed = CronExpression.parse(expr).is_fixed_time
    minute = timedelta(minutes=1)
    instant = start - timedelta(hours=10)
    previous: datetime | None = None
    latest: datetime | None = None
    out: list[datetime] = []
    while instant <= end:
        wall = instant.astimezone(zone).replace(tzinfo=None)
        if latest is not None and wall <= latest:
            runs = not fixed and matches(wall)  # repeated wall time: virtual time is frozen
        elif previous is not None and wall > previous + minute and fixed:
            skipped = (previous + minute * k for k in range(1, (wall - previous) // minute + 1))
            runs = any(matches(moment) for moment in skipped)  # DST-begins branch
        else:
            runs = matches(wall)
        if runs and instant > start:
            out.append(instant)
        previous = wall
        latest = wall if latest is None or wall > latest else latest
        instant += minute
    return out


_MODEL_EXPRESSIONS = (
    "30 2 * * *",
    "0 * * * *",
    "*/15 * * * *",
    "0 0-23/2 * * *",
    "0 */2 * * *",
    "45 * * * *",
    "0,30 2 * * *",
    "* 2 * * *",
    "2-58/7 0-4 * * *",
    "0 2,3 * * *",
)
_TRANSITIONS = (
    ("America/New_York", "2026-03-08T07:00:00Z"),
    ("America/New_York", "2026-11-01T06:00:00Z"),
    ("Europe/Berlin", "2026-03-29T01:00:00Z"),
    ("Europe/Berlin", "2026-10-25T01:00:00Z"),
    ("Australia/Lord_Howe", "2026-10-03T15:30:00Z"),
    ("Australia/Lord_Howe", "2026-04-04T15:00:00Z"),
    ("Pacific/Chatham", "2026-09-26T14:00:00Z"),
    ("Pacific/Chatham", "2026-04-04T14:00:00Z"),
    ("America/Santiago", "2026-04-05T03:00:00Z"),
)


class TestAgainstCronieModel:
    @pytest.mark.parametrize(("zone_name", "transition"), _TRANSITIONS)
    @pytest.mark.parametrize("expr", _MODEL_EXPRESSIONS)
    def test_matches_minute_loop(self, expr: str, zone_name: str, transition: str) -> None:
        zone = load_zone(zone_name)
        cron = CronExpression.parse(expr)
        for lead in (timedelta(hours=3), timedelta(minutes=50), timedelta(minutes=1)):
            start = datetime.fromisoformat(transition) - lead
            end = start + timedelta(hours=6)
            expected = _cronie_minute_loop(expr, zone, start, end)
            actual: list[datetime] = []
            for fire in cron.iter_after(start, zone):
                if fire > end:
                    break
                actual.append(fire)
            assert [format_utc(f) for f in actual] == [format_utc(f) for f in expected]
