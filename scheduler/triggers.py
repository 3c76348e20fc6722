"""The ways a schedule fires: cron, interval, once on the calendar; event when someone
posts an event of its name (POST /api/v1/events/{name}, the agent's emit_event).

Each trigger is a frozen pydantic model and a pure function of the instant it
is asked about: `next_after(instant)` returns the first fire strictly after it,
or None when the trigger will never fire again; `fires(after)` walks them all, in
the manner of cronsim's iterator, and is what every walk over fires uses (bound it
with itertools.islice or takewhile). No trigger reads a clock.

Pydantic wraps a validator's error in a ValidationError, whose text is not one
sentence. Code that turns user input into a trigger therefore goes through
`make_trigger` (or `cron_trigger`, `interval_trigger`, `once_trigger`), which
raise `InvalidSchedule` with a sentence an operator can act on.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from cron_descriptor import ExpressionDescriptor, Options
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from scheduler.cron import CronExpression, load_zone
from scheduler.errors import InvalidSchedule, shown
from scheduler.timeutil import format_utc, to_utc

__all__ = [
    "EVENT_NAME_PATTERN",
    "MAX_INTERVAL_SECONDS",
    "MIN_INTERVAL_SECONDS",
    "NON_CALENDAR",
    "AfterTrigger",
    "CronTrigger",
    "EventTrigger",
    "IntervalTrigger",
    "OnceTrigger",
    "StartupTrigger",
    "Trigger",
    "check_event_name",
    "cron_trigger",
    "event_trigger",
    "interval_trigger",
    "make_trigger",
    "once_trigger",
]

MIN_INTERVAL_SECONDS = 60
# Past a year an interval is almost certainly a typo, and n * interval would soon
# run past datetime's range.
MAX_INTERVAL_SECONDS = 366 * 86400
#: An event's name: short, lower case, safe in a URL path and in a log line.
EVENT_NAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,63}"
_EVENT_NAME = re.compile(EVENT_NAME_PATTERN)


def check_event_name(name: str, field: str = "trigger.name") -> str:
    """`name` if it may name an event; InvalidSchedule with one sentence otherwise."""
    if not _EVENT_NAME.fullmatch(name):
        raise InvalidSchedule(
            f"The event name '{shown(name)}' is invalid: use 1 to 64 lower-case letters, "
            "digits, dots, dashes or underscores, beginning with a letter or digit.",
            field=field,
        )
    return name


def _aware_utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidSchedule(
            f"The {what} {value.isoformat()} has no UTC offset: add Z or an offset, "
            "as in 2026-03-08T07:00:00Z."
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:00-12:00 is in the year 10000 in UTC.
        raise InvalidSchedule(
            f"The {what} {value.isoformat()} is past the end of the calendar; pick an earlier one."
        ) from None


class _TriggerModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def next_after(self, instant: datetime) -> datetime | None:
        """The first fire strictly after `instant`, in UTC; None when there is none."""
        raise NotImplementedError

    def fires(self, after: datetime) -> Iterator[datetime]:
        """Every fire strictly after `after`, in order, as aware UTC datetimes (cron
        in its zone, with the DST rules of `next_after`). Ends when the trigger does:
        a one-time trigger past its instant, anything past the end of the calendar."""
        cursor = self.next_after(after)
        while cursor is not None:
            yield cursor
            cursor = self.next_after(cursor)


def _zone_key(value: str) -> str:
    return load_zone(value).key


#: An IANA zone as a trigger keeps it: checked, and in its canonical spelling.
Zone = Annotated[str, AfterValidator(_zone_key)]


def _describe_instant(instant: datetime, timezone: str) -> str:
    """`2026-11-24T07:00:00Z` in UTC, else local ISO-8601 with the offset and the zone."""
    if timezone == "UTC":
        return format_utc(instant)
    local = instant.astimezone(load_zone(timezone))
    return f"{local.isoformat(timespec='seconds')} ({timezone})"


class CronTrigger(_TriggerModel):
    """A five-field cron expression evaluated in an IANA zone, with cronie's DST rules."""

    kind: Literal["cron"] = "cron"
    expr: str
    timezone: Zone

    @field_validator("expr")
    @classmethod
    def _valid_expr(cls, value: str) -> str:
        return CronExpression.parse(value).expr

    @property
    def cron(self) -> CronExpression:
        return CronExpression.parse(self.expr)

    @property
    def zone(self) -> ZoneInfo:
        return load_zone(self.timezone)

    def next_after(self, instant: datetime) -> datetime | None:
        try:
            return self.cron.next_after(instant, self.zone)
        except InvalidSchedule:
            return None

    def describe(self) -> str:
        return f"{_describe_cron(self.expr)} ({self.timezone})"


class IntervalTrigger(_TriggerModel):
    """Every `every_seconds`, anchored at `start_at`: the n-th fire is start + n * interval."""

    kind: Literal["interval"] = "interval"
    every_seconds: int
    start_at: datetime
    #: The zone the schedule was made in: it does not move the grid (that is anchored in
    #: UTC) but every time shown or rendered for the schedule is local to it. Rows written
    #: before the field existed read as UTC (migration 0011 gave them their chat's zone).
    timezone: Zone = "UTC"

    @field_validator("every_seconds")
    @classmethod
    def _valid_interval(cls, value: int) -> int:
        if value < MIN_INTERVAL_SECONDS:
            raise InvalidSchedule("The interval must be at least 1 minute.")
        if value > MAX_INTERVAL_SECONDS:
            raise InvalidSchedule("The interval must be at most 366 days.")
        return value

    @field_validator("start_at")
    @classmethod
    def _valid_start(cls, value: datetime) -> datetime:
        return _aware_utc(value, "start time")

    def next_after(self, instant: datetime) -> datetime | None:
        moment = to_utc(instant)
        if moment < self.start_at:
            return self.start_at
        # Anchored, never last-fire + interval: a late run must not shift the grid.
        step = timedelta(seconds=self.every_seconds)
        count = (moment - self.start_at) // step + 1
        try:
            return self.start_at + count * step
        except OverflowError:
            return None

    def describe(self) -> str:
        start = _describe_instant(self.start_at, self.timezone)
        return f"every {_describe_seconds(self.every_seconds)} from {start}"


class OnceTrigger(_TriggerModel):
    """One instant: a reminder, a follow-up, "in 3 days"."""

    kind: Literal["once"] = "once"
    at: datetime
    #: As for IntervalTrigger: where its times are shown, not when it fires.
    timezone: Zone = "UTC"

    @field_validator("at")
    @classmethod
    def _valid_at(cls, value: datetime) -> datetime:
        return _aware_utc(value, "time")

    def next_after(self, instant: datetime) -> datetime | None:
        return self.at if self.at > to_utc(instant) else None

    def describe(self) -> str:
        return f"once at {_describe_instant(self.at, self.timezone)}"


class EventTrigger(_TriggerModel):
    """Fires when an event of its name is posted, never on the calendar: `fires` yields
    nothing, so its schedule keeps no next_run_at and the engine's due query never
    picks it; the event service writes its runs (scheduler/service.py, `emit_event`)."""

    kind: Literal["event"] = "event"
    name: str
    #: As for IntervalTrigger: where its times are shown, not when it fires.
    timezone: Zone = "UTC"

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_event_name(value)

    def next_after(self, instant: datetime) -> datetime | None:
        return None

    def describe(self) -> str:
        return f"on the event '{self.name}'"


class StartupTrigger(_TriggerModel):
    """Fires once per start of a Tickler process, after the engine reconciled what a
    predecessor left (`Engine.startup`); no calendar, like EventTrigger."""

    kind: Literal["startup"] = "startup"
    timezone: Zone = "UTC"

    def next_after(self, instant: datetime) -> datetime | None:
        return None

    def describe(self) -> str:
        return "at each start of Tickler"


#: A schedule id as AfterTrigger names it (scheduler/specs.py's SCHEDULE_ID_PATTERN).
# An id, or a number as operators type it (`#3`); the service stores the id it names.
_SCHEDULE_REF = re.compile(r"#?[A-Za-z0-9][A-Za-z0-9_.-]{0,29}")
_OUTCOMES = {"success": "succeeds", "failure": "fails for good", "any": "finishes"}


class AfterTrigger(_TriggerModel):
    """Fires when a run of another schedule of the chat finishes with a matching
    outcome (`success`: it succeeded; `failure`: it failed for good; `any`): a chain.
    Once per upstream run and outcome; no calendar, like EventTrigger."""

    kind: Literal["after"] = "after"
    schedule: str
    on: Literal["success", "failure", "any"] = "any"
    timezone: Zone = "UTC"

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        if not _SCHEDULE_REF.fullmatch(value):
            raise InvalidSchedule(
                f"'{shown(value)}' is not a schedule: an after trigger names another "
                "schedule of the chat by its id or number (#3)."
            )
        return value

    def next_after(self, instant: datetime) -> datetime | None:
        return None

    def describe(self) -> str:
        return f"after schedule {self.schedule} {_OUTCOMES[self.on]}"


#: Triggers without a calendar: they fire on something happening, never come due, and
#: a schedule with one keeps no next_run_at.
NON_CALENDAR = (EventTrigger, StartupTrigger, AfterTrigger)

Trigger = Annotated[
    CronTrigger | IntervalTrigger | OnceTrigger | EventTrigger | StartupTrigger | AfterTrigger,
    Field(discriminator="kind"),
]

_ADAPTER: TypeAdapter[
    CronTrigger | IntervalTrigger | OnceTrigger | EventTrigger | StartupTrigger | AfterTrigger
] = TypeAdapter(Trigger)
_KINDS: dict[str, type[_TriggerModel]] = {
    "cron": CronTrigger,
    "interval": IntervalTrigger,
    "once": OnceTrigger,
    "event": EventTrigger,
    "startup": StartupTrigger,
    "after": AfterTrigger,
}


def make_trigger(data: dict[str, object], *, now: datetime | None = None) -> Trigger:
    """Build a trigger from plain data; raise InvalidSchedule with one sentence.

    With `now`, a `once` trigger whose instant is not after `now` is refused.
    """
    try:
        trigger = _ADAPTER.validate_python(data)
    except ValidationError as error:
        raise InvalidSchedule(_sentence(error, data), field=_field(error)) from None
    if now is not None and isinstance(trigger, OnceTrigger) and trigger.at <= to_utc(now):
        raise InvalidSchedule(
            f"That time is in the past: {format_utc(trigger.at)} is not after now "
            f"({format_utc(now)}); pick a later time.",
            field="trigger.at",
        )
    return trigger


def event_trigger(name: str, timezone: str = "UTC") -> EventTrigger:
    """A validated EventTrigger; raise InvalidSchedule with one sentence."""
    trigger = make_trigger({"kind": "event", "name": name, "timezone": timezone})
    assert isinstance(trigger, EventTrigger)
    return trigger


def cron_trigger(expr: str, timezone: str = "UTC") -> CronTrigger:
    """A validated CronTrigger; raise InvalidSchedule with one sentence."""
    trigger = make_trigger({"kind": "cron", "expr": expr, "timezone": timezone})
    assert isinstance(trigger, CronTrigger)
    return trigger


def interval_trigger(
    every_seconds: int, start_at: datetime, timezone: str = "UTC"
) -> IntervalTrigger:
    """A validated IntervalTrigger; raise InvalidSchedule with one sentence."""
    trigger = make_trigger(
        {
            "kind": "interval",
            "every_seconds": every_seconds,
            "start_at": start_at,
            "timezone": timezone,
        }
    )
    assert isinstance(trigger, IntervalTrigger)
    return trigger


def once_trigger(at: datetime, now: datetime | None = None, timezone: str = "UTC") -> OnceTrigger:
    """A validated OnceTrigger, refused if `at` is not after `now` (when given)."""
    trigger = make_trigger({"kind": "once", "at": at, "timezone": timezone}, now=now)
    assert isinstance(trigger, OnceTrigger)
    return trigger


#: A trigger's field as a schedule definition (TriggerSpec, the API's body) names it.
_SPEC_NAMES = {"expr": "cron"}


def _field(error: ValidationError) -> str:
    """The part of the definition the first problem is about: `trigger.<field>`."""
    details = error.errors()[0]
    if details["type"] in {"union_tag_not_found", "union_tag_invalid"}:
        return "trigger.kind"
    # The location is (kind, field) past the union's tag.
    location = [str(part) for part in details["loc"]]
    if len(location) < 2:
        return "trigger"
    return f"trigger.{_SPEC_NAMES.get(location[1], location[1])}"


def _sentence(error: ValidationError, data: dict[str, object]) -> str:
    """One operator-facing sentence for the first problem pydantic found."""
    details: dict[str, Any] = dict(error.errors()[0])
    cause = details.get("ctx", {}).get("error")
    if isinstance(cause, InvalidSchedule):
        return str(cause)
    kind = data.get("kind")
    if details["type"] in {"union_tag_not_found", "union_tag_invalid"}:
        shown = "" if kind is None else f" '{kind}'"
        return f"Unknown trigger kind{shown}: use cron, interval, once, event, startup or after."
    location = [str(part) for part in details["loc"]]
    name = location[-1] if location else "trigger"
    model = _KINDS.get(str(kind))
    if details["type"] == "missing":
        return f"The {kind} trigger needs '{name}'."
    if details["type"] == "extra_forbidden" and model is not None:
        fields = ", ".join(sorted(model.model_fields))
        return f"Unknown field '{name}' in the {kind} trigger: it takes {fields}."
    message = str(details["msg"]).rstrip(".")
    return f"The '{name}' of the {kind} trigger is invalid: {message[:1].lower()}{message[1:]}."


_DESCRIBE_OPTIONS = Options(locale_code="en_US", use_24hour_time_format=False)


@lru_cache(maxsize=4096)
def _describe_cron(expr: str) -> str:
    cron = CronExpression.parse(expr)
    try:
        text = str(ExpressionDescriptor(" ".join(cron.fields), _DESCRIBE_OPTIONS).get_description())
    except Exception:
        # The description is a courtesy; the expression itself is always valid here.
        return f"cron '{cron.expr}'"
    day_of_month, day_of_week = cron.fields[2], cron.fields[4]
    if (
        day_of_month != "*"
        and day_of_week != "*"
        and (day_of_month.startswith("*") or day_of_week.startswith("*"))
    ):
        # cron_descriptor always ORs the two day fields; cronie ANDs them when one
        # starts with `*` (`0 0 */2 * 1` is odd days that are Mondays).
        text = text.replace(", or on ", ", and only on ")
    return text


def _describe_seconds(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds} seconds"
