"""Triggers (cron, interval, once), their factories' sentences, and the UTC text helpers."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter, ValidationError

from scheduler.errors import InvalidSchedule
from scheduler.timeutil import format_utc, parse_utc
from scheduler.triggers import (
    CronTrigger,
    IntervalTrigger,
    OnceTrigger,
    Trigger,
    cron_trigger,
    interval_trigger,
    make_trigger,
    once_trigger,
)

START = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class TestCronTrigger:
    def test_next_after_uses_zone_and_dst_rules(self) -> None:
        trigger = cron_trigger("30 2 * * *", "America/New_York")
        first = trigger.next_after(datetime(2026, 3, 7, 12, tzinfo=UTC))
        assert first is not None
        assert format_utc(first) == "2026-03-08T07:00:00Z"

    def test_normalises_input(self) -> None:
        trigger = cron_trigger("  0  9 * *   1-5 ", " Europe/Berlin ")
        assert trigger == CronTrigger(expr="0 9 * * 1-5", timezone="Europe/Berlin")
        assert trigger.model_dump() == {
            "kind": "cron",
            "expr": "0 9 * * 1-5",
            "timezone": "Europe/Berlin",
        }

    def test_describe(self) -> None:
        assert (
            cron_trigger("0 9 * * 1-5", "Europe/Berlin").describe()
            == "At 09:00 AM, Monday through Friday (Europe/Berlin)"
        )
        assert cron_trigger("@daily").describe() == "At 12:00 AM (UTC)"

    def test_describe_reads_sunday_as_0_at_a_range_end(self) -> None:
        assert cron_trigger("0 9 * * 5-0").describe() == "At 09:00 AM, Friday through Sunday (UTC)"
        assert cron_trigger("0 9 * * sat-sun").describe() == (
            "At 09:00 AM, Saturday through Sunday (UTC)"
        )

    def test_describe_follows_cronie_day_rule(self) -> None:
        # Both day fields restricted: OR. One starts with `*`: AND.
        assert "or on Monday" in cron_trigger("0 0 1 * 1").describe()
        assert "and only on Monday" in cron_trigger("0 0 */2 * 1").describe()

    def test_frozen(self) -> None:
        trigger = cron_trigger("0 9 * * *")
        with pytest.raises(ValidationError):
            trigger.expr = "0 10 * * *"  # type: ignore[misc]

    def test_bad_input_raises_one_sentence(self) -> None:
        with pytest.raises(InvalidSchedule) as caught:
            cron_trigger("0 0 L * *", "UTC")
        assert str(caught.value).startswith("Unsupported cron syntax 'L' in day-of-month:")
        with pytest.raises(InvalidSchedule) as caught:
            cron_trigger("0 9 * * *", "Europe/Berlinn")
        assert (
            str(caught.value) == "Unknown time zone 'Europe/Berlinn'. Did you mean Europe/Berlin?"
        )

    def test_model_validation_still_refuses(self) -> None:
        with pytest.raises(ValidationError):
            CronTrigger(expr="0 9 31 2 *", timezone="UTC")


class TestIntervalTrigger:
    def test_no_drift_at_the_thousandth_fire(self) -> None:
        trigger = interval_trigger(7200, START)
        fire = trigger.next_after(START - timedelta(days=1))
        assert fire == START
        for _ in range(1000):
            assert fire is not None
            fire = trigger.next_after(fire)
        assert fire == START + 1000 * timedelta(hours=2)
        assert format_utc(fire) == "2027-02-15T15:00:00Z"

    def test_next_after_is_anchored_and_strict(self) -> None:
        trigger = interval_trigger(3600, START)
        assert trigger.next_after(START) == START + timedelta(hours=1)
        assert trigger.next_after(START - timedelta(microseconds=1)) == START
        late = START + timedelta(hours=5, minutes=59, seconds=59, microseconds=999999)
        assert trigger.next_after(late) == START + timedelta(hours=6)
        # Far ahead, the grid still holds: one closed-form step, no accumulated error.
        far = START + timedelta(days=3650, minutes=17)
        assert trigger.next_after(far) == START + timedelta(days=3650, hours=1)

    def test_odd_interval_keeps_its_grid(self) -> None:
        trigger = interval_trigger(61, START)
        fire = trigger.next_after(START + timedelta(seconds=61 * 999 + 30))
        assert fire == START + timedelta(seconds=61 * 1000)

    def test_input_normalised_to_utc(self) -> None:
        berlin_morning = datetime(2026, 11, 24, 8, 0, tzinfo=timezone(timedelta(hours=1)))
        trigger = interval_trigger(3600, berlin_morning)
        assert trigger.start_at == START
        assert trigger.start_at.tzinfo is UTC

    @pytest.mark.parametrize(
        ("seconds", "text"),
        [
            (60, "every minute"),
            (900, "every 15 minutes"),
            (3600, "every hour"),
            (7200, "every 2 hours"),
            (5400, "every 90 minutes"),
            (86400, "every day"),
            (3 * 86400, "every 3 days"),
            (61, "every 61 seconds"),
        ],
    )
    def test_describe(self, seconds: int, text: str) -> None:
        assert interval_trigger(seconds, START).describe() == f"{text} from 2026-11-24T07:00:00Z"

    @pytest.mark.parametrize("seconds", [0, -60, 1, 59])
    def test_interval_below_a_minute_is_refused(self, seconds: int) -> None:
        with pytest.raises(InvalidSchedule) as caught:
            interval_trigger(seconds, START)
        assert str(caught.value) == "The interval must be at least 1 minute."

    def test_interval_above_a_year_is_refused(self) -> None:
        with pytest.raises(InvalidSchedule) as caught:
            interval_trigger(367 * 86400, START)
        assert str(caught.value) == "The interval must be at most 366 days."

    def test_naive_start_is_refused(self) -> None:
        with pytest.raises(InvalidSchedule) as caught:
            interval_trigger(3600, datetime(2026, 11, 24, 7))
        assert str(caught.value) == (
            "The start time 2026-11-24T07:00:00 has no UTC offset: add Z or an offset, "
            "as in 2026-03-08T07:00:00Z."
        )

    def test_naive_instant_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError, match="naive"):
            interval_trigger(3600, START).next_after(datetime(2026, 11, 24, 8))


class TestOnceTrigger:
    def test_fires_once(self) -> None:
        at = datetime(2026, 11, 27, 9, tzinfo=UTC)
        trigger = once_trigger(at, now=NOW)
        assert trigger.next_after(NOW) == at
        assert trigger.next_after(at - timedelta(seconds=1)) == at
        assert trigger.next_after(at) is None
        assert trigger.next_after(at + timedelta(days=1)) is None

    def test_describe(self) -> None:
        at = datetime(2026, 11, 27, 10, tzinfo=timezone(timedelta(hours=1)))
        assert once_trigger(at).describe() == "once at 2026-11-27T09:00:00Z"

    def test_past_is_refused_relative_to_now(self) -> None:
        with pytest.raises(InvalidSchedule) as caught:
            once_trigger(datetime(2026, 11, 20, 9, tzinfo=UTC), now=NOW)
        assert str(caught.value) == (
            "That time is in the past: 2026-11-20T09:00:00Z is not after now "
            "(2026-11-24T12:00:00Z); pick a later time."
        )
        with pytest.raises(InvalidSchedule, match="in the past"):
            once_trigger(NOW, now=NOW)

    def test_past_is_fine_without_now(self) -> None:
        # Loading a stored trigger must not depend on the clock.
        trigger = once_trigger(datetime(2020, 1, 1, tzinfo=UTC))
        assert trigger.next_after(NOW) is None

    def test_naive_is_refused(self) -> None:
        with pytest.raises(InvalidSchedule, match="has no UTC offset"):
            once_trigger(datetime(2026, 11, 27, 9))


class TestMakeTrigger:
    def test_round_trip_through_json(self) -> None:
        adapter: TypeAdapter[Trigger] = TypeAdapter(Trigger)
        for trigger in (
            cron_trigger("0 9 * * 1-5", "Europe/Berlin"),
            interval_trigger(3600, START),
            once_trigger(START),
        ):
            data = trigger.model_dump(mode="json")
            assert make_trigger(data) == trigger
            assert adapter.validate_json(trigger.model_dump_json()) == trigger

    def test_kinds(self) -> None:
        assert isinstance(
            make_trigger({"kind": "cron", "expr": "@daily", "timezone": "UTC"}), CronTrigger
        )
        interval = make_trigger(
            {"kind": "interval", "every_seconds": 600, "start_at": "2026-11-24T07:00:00Z"}
        )
        assert isinstance(interval, IntervalTrigger)
        assert interval.start_at == START
        once = make_trigger({"kind": "once", "at": "2026-11-24T08:00:00+01:00"})
        assert isinstance(once, OnceTrigger)
        assert once.at == START

    @pytest.mark.parametrize(
        ("data", "sentence"),
        [
            (
                {"kind": "weekly"},
                "Unknown trigger kind 'weekly': use cron, interval, once, event, startup or after.",
            ),
            ({}, "Unknown trigger kind: use cron, interval, once, event, startup or after."),
            (
                {"kind": "interval", "start_at": "2026-11-24T07:00:00Z"},
                "The interval trigger needs 'every_seconds'.",
            ),
            (
                {"kind": "interval", "every_seconds": 30, "start_at": "2026-11-24T07:00:00Z"},
                "The interval must be at least 1 minute.",
            ),
            (
                {"kind": "interval", "every_seconds": "x", "start_at": "2026-11-24T07:00:00Z"},
                "The 'every_seconds' of the interval trigger is invalid: input should be a "
                "valid integer, unable to parse string as an integer.",
            ),
            (
                {"kind": "once", "at": "2026-11-27T09:00:00"},
                "The time 2026-11-27T09:00:00 has no UTC offset: add Z or an offset, "
                "as in 2026-03-08T07:00:00Z.",
            ),
            (
                {"kind": "once", "at": "2026-11-27T09:00:00Z", "repeat": True},
                "Unknown field 'repeat' in the once trigger: it takes at, kind, timezone.",
            ),
            (
                {"kind": "cron", "expr": "0 0 * * * *", "timezone": "UTC"},
                "The cron expression '0 0 * * * *' has 6 fields: use five fields (minute hour "
                "day-of-month month day-of-week), e.g. '0 9 * * 1-5'; seconds and years are "
                "not supported.",
            ),
            (
                {"kind": "cron", "expr": "0 9 * * *", "timezone": ""},
                "The time zone is empty: use an IANA name such as Europe/Berlin or UTC.",
            ),
            (
                {"kind": "once", "at": "2026-11-20T09:00:00Z"},
                "That time is in the past: 2026-11-20T09:00:00Z is not after now "
                "(2026-11-24T12:00:00Z); pick a later time.",
            ),
        ],
    )
    def test_errors_are_one_sentence(self, data: dict[str, object], sentence: str) -> None:
        with pytest.raises(InvalidSchedule) as caught:
            make_trigger(data, now=NOW)
        assert str(caught.value) == sentence


class TestFires:
    """`fires(after)`: the walk every caller uses, one `next_after` after another."""

    def test_cron_walks_through_both_dst_changes_in_its_zone(self) -> None:
        # New York, 2026: clocks spring forward on 8 March (02:00 -> 03:00) and fall
        # back on 1 November (02:00 -> 01:00). As in cronie, the skipped 02:30 runs
        # when the clock jumps, and the repeated 01:30 runs once, on its first pass.
        trigger = cron_trigger("30 1,2 * * *", "America/New_York")
        walked = list(itertools.islice(trigger.fires(datetime(2026, 3, 7, 12, tzinfo=UTC)), 4))
        assert [format_utc(fire) for fire in walked] == [
            "2026-03-08T06:30:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-09T05:30:00Z",
            "2026-03-09T06:30:00Z",
        ]
        autumn = list(itertools.islice(trigger.fires(datetime(2026, 11, 1, 4, tzinfo=UTC)), 3))
        assert [format_utc(fire) for fire in autumn] == [
            "2026-11-01T05:30:00Z",
            "2026-11-01T07:30:00Z",
            "2026-11-02T06:30:00Z",
        ]

    @pytest.mark.parametrize(
        "trigger",
        [
            cron_trigger("*/20 9-17 * * 1-5", "Europe/Berlin"),
            interval_trigger(5400, START, "Asia/Tokyo"),
            once_trigger(NOW + timedelta(hours=1)),
        ],
        ids=["cron", "interval", "once"],
    )
    def test_is_next_after_applied_again_and_again(self, trigger: Trigger) -> None:
        expected: list[datetime] = []
        cursor = trigger.next_after(NOW)
        while cursor is not None and len(expected) < 50:
            expected.append(cursor)
            cursor = trigger.next_after(cursor)
        assert list(itertools.islice(trigger.fires(NOW), 50)) == expected

    def test_is_strictly_after_and_in_utc(self) -> None:
        trigger = interval_trigger(3600, START)
        first = next(trigger.fires(START))
        assert first == START + timedelta(hours=1) and first.tzinfo is UTC

    def test_ends_when_the_trigger_does(self) -> None:
        assert list(once_trigger(NOW).fires(NOW)) == []
        assert list(once_trigger(NOW).fires(NOW - timedelta(seconds=1))) == [NOW]
        last_years = cron_trigger("0 0 1 1 *").fires(datetime(9997, 6, 1, tzinfo=UTC))
        assert [fire.year for fire in last_years] == [9998, 9999]


class TestTimeutil:
    def test_format_utc(self) -> None:
        assert (
            format_utc(datetime(2026, 3, 8, 7, 0, 0, 999999, tzinfo=UTC)) == "2026-03-08T07:00:00Z"
        )
        eastern = datetime(2026, 3, 8, 3, 0, tzinfo=timezone(timedelta(hours=-4)))
        assert format_utc(eastern) == "2026-03-08T07:00:00Z"
        with pytest.raises(ValueError, match="naive"):
            format_utc(datetime(2026, 3, 8, 7))

    @pytest.mark.parametrize(
        "text",
        ["2026-03-08T07:00:00Z", "2026-03-08T08:00:00+01:00", " 2026-03-08T02:00-05:00 "],
    )
    def test_parse_utc(self, text: str) -> None:
        parsed = parse_utc(text)
        assert parsed == datetime(2026, 3, 8, 7, tzinfo=UTC)
        assert parsed.tzinfo is UTC

    def test_parse_utc_refuses_naive(self) -> None:
        with pytest.raises(InvalidSchedule) as caught:
            parse_utc("2026-03-08T07:00:00")
        assert str(caught.value) == (
            "The time '2026-03-08T07:00:00' has no UTC offset: add Z or an offset, "
            "as in 2026-03-08T07:00:00Z or 2026-03-08T08:00:00+01:00."
        )

    def test_parse_utc_refuses_garbage(self) -> None:
        with pytest.raises(InvalidSchedule) as caught:
            parse_utc("next tuesday")
        assert str(caught.value) == (
            "'next tuesday' is not an ISO-8601 time: use a form like 2026-03-08T07:00:00Z "
            "or 2026-03-08T08:00:00+01:00."
        )

    def test_parse_utc_refuses_the_end_of_time_and_clips_long_input(self) -> None:
        with pytest.raises(InvalidSchedule) as caught:
            parse_utc("9999-12-31T23:00:00-05:00")
        assert str(caught.value) == (
            "The time '9999-12-31T23:00:00-05:00' is too far in the future."
        )
        with pytest.raises(InvalidSchedule) as caught:
            parse_utc("x" * 5000)
        assert len(str(caught.value)) < 200
