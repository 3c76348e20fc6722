"""Cron expressions with cronie's grammar and cronie's daylight-saving rules.

Calendar matching is delegated to `cronsim`, always on naive local wall-clock
datetimes: that is where it is correct (it reads `5-5` as one minute and applies
cronie's day-of-month/day-of-week rule). Its own time-zone handling is not used,
because it misses fires in zones with 30- and 45-minute offsets. Mapping wall
times to instants, and the DST rules, live here:

    |                                  | fixed-time job            | wildcard job      |
    |----------------------------------|---------------------------|-------------------|
    | wall time skipped (spring fwd)   | once, at the jump         | does not fire     |
    | wall time repeated (fall back)   | once, first occurrence    | in both passes    |

A job is "fixed-time" when neither its minute nor its hour field starts with `*`
(cronie's MIN_STAR/HR_STAR flags), so `0 */2 * * *` and `0 0-23/2 * * *` name
the same hours and still behave differently around a transition, as in cronie.

Everything here is a pure function of (expression, zone, instant): no clock.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

from scheduler.errors import InvalidSchedule, shown

__all__ = ["CronExpression", "load_zone"]

_SUPPORTED = (
    "use five fields (minute hour day-of-month month day-of-week) "
    "with numbers, names, ranges, steps and lists"
)
_MAX_LENGTH = 256
#: Longer than any IANA zone name (the longest has 32 characters).
_MAX_ZONE_NAME = 64

# cronie's @-shortcuts (entry.c). `@reboot` is deliberately absent: a scheduler
# that plans instants has no "reboot" instant.
_SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_MONTH_WORDS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# February counts 29 days: `0 9 29 2 *` fires in leap years, so it is valid.
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# The largest backward UTC-offset change in tzdata since 1970 is 7 hours
# (Antarctica/Vostok, 1994), and two changes are never closer than a week, so an
# 8-hour window holds at most one transition and every repeated wall time.
_MAX_SHIFT = timedelta(hours=8)

# cronie's grammar (entry.c, get_range): a step follows `*` or a range, never a
# lone number; names are whole words. Digits are ASCII only.
_ITEM = re.compile(
    r"(?P<start>\*|[0-9]+|[A-Za-z]+)(?:-(?P<end>[0-9]+|[A-Za-z]+))?(?:/(?P<step>[0-9]+))?"
)


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0
    hint: str = ""

    @property
    def takes(self) -> str:
        return self.hint or f"{self.low}-{self.high}"


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTH_NAMES, 1, "1-12 or JAN-DEC"),
    _Field("day-of-week", 0, 7, _DAY_NAMES, 0, "0-7 (0 and 7 are Sunday) or SUN-SAT"),
)
_DAY_OF_WEEK = _FIELDS[4]


def _value(token: str, spec: _Field, item: str) -> int:
    if token.isdigit():
        number = int(token)
        if not spec.low <= number <= spec.high:
            raise InvalidSchedule(
                f"Value {number} is out of range in {spec.name}: {spec.name} takes {spec.takes}."
            )
        return number
    if not spec.names:
        # Letters in a numeric field are Quartz/cronsim extensions (L, W, LW).
        raise InvalidSchedule(f"Unsupported cron syntax '{item}' in {spec.name}: {_SUPPORTED}.")
    upper = token.upper()
    if upper not in spec.names:
        raise InvalidSchedule(
            f"Unknown name '{token}' in {spec.name}: {spec.name} takes {spec.takes}."
        )
    return spec.names.index(upper) + spec.name_base


def _parse_item(item: str, spec: _Field) -> tuple[set[int], str]:
    """The values `item` names, and the item as cronsim must read it."""
    match = _ITEM.fullmatch(item)
    if match is None:
        what = item or "(empty)"
        raise InvalidSchedule(f"Unsupported cron syntax '{what}' in {spec.name}: {_SUPPORTED}.")
    start_text, end_text, step_text = match.group("start", "end", "step")
    if start_text == "*" and end_text is not None:
        raise InvalidSchedule(f"Unsupported cron syntax '{item}' in {spec.name}: {_SUPPORTED}.")
    if step_text is not None and start_text != "*" and end_text is None:
        # cronie refuses `5/15`; cronsim would read it as 5-59/15. Refusing keeps
        # the meaning unambiguous.
        raise InvalidSchedule(
            f"Unsupported cron syntax '{item}' in {spec.name}: "
            "a step goes after * or a range, as in */15 or 5-59/15."
        )
    matcher = item
    if start_text == "*":
        first, last = spec.low, spec.high
    else:
        first = _value(start_text, spec, item)
        last = first if end_text is None else _value(end_text, spec, item)
        if spec is _DAY_OF_WEEK and last == 0 and first > 0:
            last, matcher = _sunday_end(item, start_text, step_text)
        if last < first:
            raise InvalidSchedule(
                f"Range {item} in {spec.name} goes backwards: write the smaller value first, "
                f"since a range cannot wrap around; {spec.name} takes {spec.takes}."
            )
    step = 1
    if step_text is not None:
        step = int(step_text)
        if step == 0:
            raise InvalidSchedule(
                f"Step 0 in {spec.name} is not allowed: use a step of 1 or more, as in */15."
            )
        if step > spec.high - spec.low:
            # cronie accepts `*/90` as "minute 0 only"; nobody means that, they
            # mean "every 90 minutes", which cron cannot express.
            raise InvalidSchedule(
                f"Step {step} in {spec.name} is too large: a step there can be at most "
                f"{spec.high - spec.low}; for longer periods use an interval schedule."
            )
    return set(range(first, last + 1, step)), matcher


def _sunday_end(item: str, start_text: str, step_text: str | None) -> tuple[int, str]:
    """A day-of-week range ending in Sunday written as 0 (`5-0`, `sat-sun`) ends in 7.

    cronie (entry.c, get_range, since 1.7.2) reads such a range as ending in 7, but
    only when no step follows: with a step (`5-0/2`) its range stays backwards and
    names no day at all, which nobody means, so that is refused.
    """
    if step_text is not None:
        raise InvalidSchedule(
            f"Range {item} in day-of-week ends in Sunday as 0 before a step, which cron reads "
            f"as no day at all: write Sunday as 7 there, as in {start_text}-7/{step_text}."
        )
    return 7, f"{start_text}-7"


def _parse_field(text: str, spec: _Field) -> tuple[set[int], str]:
    values: set[int] = set()
    matchers: list[str] = []
    for item in text.split(","):
        item_values, matcher = _parse_item(item, spec)
        values |= item_values
        matchers.append(matcher)
    return values, ",".join(matchers)


def _join(words: list[str]) -> str:
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]


def _check_can_fire(expr: str, fields: tuple[str, ...], doms: set[int], months: set[int]) -> None:
    # cronie ORs day-of-month with day-of-week when both are restricted, and then
    # any weekday will do; it ANDs them when either field starts with `*`. Every
    # (month, day) pair meets every weekday within the 400-year Gregorian cycle,
    # so only a day missing from every chosen month can make the job silent.
    if not (fields[2].startswith("*") or fields[4].startswith("*")):
        return
    if any(day <= _LONGEST_MONTH[month - 1] for month in months for day in doms):
        return
    short = [_MONTH_WORDS[month - 1] for month in sorted(months)]
    verb = "has" if len(short) == 1 else "have"
    raise InvalidSchedule(
        f"The cron expression '{expr}' never fires: {_join(short)} {verb} no day {min(doms)}."
    )


@dataclass(frozen=True, slots=True)
class CronExpression:
    """A validated five-field cron expression; build it with `CronExpression.parse`."""

    expr: str
    is_fixed_time: bool
    fields: tuple[str, str, str, str, str] = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        """Validate `text` against cronie's grammar; raise InvalidSchedule with one sentence."""
        return _parse(" ".join(text.split()))

    def __str__(self) -> str:
        return self.expr

    def next_after(self, instant: datetime, zone: ZoneInfo) -> datetime:
        """The first fire strictly after `instant` (aware), as an aware UTC datetime."""
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise ValueError("next_after needs an aware datetime")
        after = instant.astimezone(UTC)
        local = after.astimezone(zone)
        wall = local.replace(tzinfo=None)
        # A wall time earlier than `after`'s can still lie ahead when the clock is
        # about to fall back: start that much earlier so its second pass is seen.
        drop = _offset(local) - _offset_at(after + _MAX_SHIFT, zone)
        start = wall - drop if drop > timedelta(0) else wall

        best: datetime | None = None
        horizon: datetime | None = None
        try:
            for match in CronSim(self._matcher(), start):
                for candidate in self._instants(match, zone):
                    if candidate > after and (best is None or candidate < best):
                        best = candidate
                        # A later wall time maps to an earlier instant only across a
                        # fall-back, by at most the offset that was in force then.
                        reach = max(_offset_at(best, zone), _offset_at(best - _MAX_SHIFT, zone))
                        horizon = (best + reach).replace(tzinfo=None)
                if horizon is not None and match >= horizon:
                    break
        except OverflowError:
            # Walking past year 9999: there is no later fire to report.
            pass
        if best is None:
            raise InvalidSchedule(
                f"The cron expression '{self.expr}' does not fire again after {after.isoformat()}."
            )
        return best

    def iter_after(self, instant: datetime, zone: ZoneInfo) -> Iterator[datetime]:
        """Successive fires strictly after `instant`, as aware UTC datetimes."""
        current = instant
        while True:
            current = self.next_after(current, zone)
            yield current

    def _matcher(self) -> str:
        return " ".join(self.fields)

    def _instants(self, wall: datetime, zone: ZoneInfo) -> tuple[datetime, ...]:
        """The instants at which cronie runs a job whose wall-clock match is `wall`."""
        before = _offset(wall.replace(tzinfo=zone))
        after = _offset(wall.replace(tzinfo=zone, fold=1))
        as_utc = wall.replace(tzinfo=UTC)
        if before == after:
            return (as_utc - before,)
        if before > after:
            # Repeated wall time. cronie freezes its virtual clock during the repeat,
            # so fixed-time jobs run once; wildcard jobs run on every real minute.
            first = as_utc - before
            return (first,) if self.is_fixed_time else (first, as_utc - after)
        # Skipped wall time. cronie's DST-begins branch runs the skipped fixed-time
        # jobs right after the jump; wildcard jobs only run for the current minute.
        if not self.is_fixed_time:
            return ()
        return (_transition(as_utc - after, as_utc - before, before, zone),)


def _offset(local: datetime) -> timedelta:
    offset = local.utcoffset()
    assert offset is not None
    return offset


def _offset_at(instant: datetime, zone: ZoneInfo) -> timedelta:
    return _offset(instant.astimezone(zone))


def _transition(
    before_jump: datetime, after_jump: datetime, old: timedelta, zone: ZoneInfo
) -> datetime:
    """The first instant in (before_jump, after_jump] whose offset is no longer `old`."""
    low = int(before_jump.timestamp())
    high = int(after_jump.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_at(datetime.fromtimestamp(middle, UTC), zone) == old:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


@lru_cache(maxsize=16384)
def _parse(expr: str) -> CronExpression:
    if not expr:
        raise InvalidSchedule(
            "The cron expression is empty: use five fields (minute hour day-of-month month "
            "day-of-week), e.g. '0 9 * * 1-5', or @hourly, @daily, @weekly, @monthly or @yearly."
        )
    if len(expr) > _MAX_LENGTH:
        raise InvalidSchedule(
            f"The cron expression is too long: keep it under {_MAX_LENGTH} characters."
        )
    parts = expr.split(" ")
    if parts[0].startswith("@"):
        expansion = _SHORTCUTS.get(parts[0].lower())
        if expansion is None:
            raise InvalidSchedule(
                f"Unsupported cron shortcut '{parts[0]}': use @hourly, @daily, @midnight, "
                "@weekly, @monthly, @yearly or @annually, or five fields (minute hour "
                "day-of-month month day-of-week)."
            )
        if len(parts) > 1:
            raise InvalidSchedule(
                f"The cron shortcut '{parts[0]}' stands alone: remove what follows it, "
                "or use five fields (minute hour day-of-month month day-of-week)."
            )
        parts = expansion.split(" ")
    if len(parts) != 5:
        extra = "; seconds and years are not supported" if len(parts) > 5 else ""
        raise InvalidSchedule(
            f"The cron expression '{expr}' has {len(parts)} "
            f"field{'s' if len(parts) != 1 else ''}: use five fields (minute hour "
            f"day-of-month month day-of-week), e.g. '0 9 * * 1-5'{extra}."
        )
    parsed = [_parse_field(text, spec) for text, spec in zip(parts, _FIELDS, strict=True)]
    values = [field_values for field_values, _ in parsed]
    # The fields as cronsim and cron_descriptor must read them: `5-0` becomes `5-7`.
    fields = (parsed[0][1], parsed[1][1], parsed[2][1], parsed[3][1], parsed[4][1])
    _check_can_fire(expr, fields, values[2], values[3])
    try:
        # Construction is cronsim's own validation; it must agree with ours.
        CronSim(" ".join(fields), datetime(2000, 1, 1))
    except CronSimError:
        raise InvalidSchedule(
            f"The cron expression '{expr}' is not supported: {_SUPPORTED}."
        ) from None
    return CronExpression(
        expr=expr,
        is_fixed_time=not (parts[0].startswith("*") or parts[1].startswith("*")),
        fields=fields,
    )


@cache
def _zone_names() -> dict[str, str]:
    """Every known zone name, keyed by its lower-case form (for suggestions)."""
    return {name.lower(): name for name in available_timezones()}


@cache
def _zone_set() -> frozenset[str]:
    return frozenset(_zone_names().values())


def load_zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`; raise InvalidSchedule with a suggestion if unknown."""
    key = name.strip()
    if not key:
        raise InvalidSchedule(
            "The time zone is empty: use an IANA name such as Europe/Berlin or UTC."
        )
    names = _zone_names()
    if key in _zone_set():
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    close: list[str] = []
    # No zone name is longer than this; past it, fuzzy matching only costs time.
    if len(key) <= _MAX_ZONE_NAME:
        exact = names.get(key.lower())
        close = [exact] if exact else difflib.get_close_matches(key, names.values(), n=1)
        if not close:
            close = [names[low] for low in difflib.get_close_matches(key.lower(), names, n=1)]
    if close:
        raise InvalidSchedule(f"Unknown time zone '{shown(name)}'. Did you mean {close[0]}?")
    raise InvalidSchedule(
        f"Unknown time zone '{shown(name)}': use an IANA name such as Europe/Berlin "
        "or America/New_York."
    )
