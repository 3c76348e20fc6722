"""Parsing and text for /new and /edit: pure functions of (input, now, zone).

Parsers turn what an operator writes ("09:00", "mon", "4h", "in 3 days", a one-line
`/new daily 09:00 Prepare my brief`) into `TriggerSpec`s, raising `InvalidSchedule`
with the one sentence to show. Views build the preview (the schedule in words, the
zone, the next three fires in local time) and the daylight-saving notes: a fire whose
wall time is skipped or repeated on a transition day is explained before it is saved.

Nothing here reads a clock or speaks Telegram.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.render import esc, local, schedule_line
from bot.views_bundles import template_line
from scheduler.cron import CronExpression, load_zone
from scheduler.errors import InvalidSchedule
from scheduler.models import Action, ActionKind, Schedule
from scheduler.specs import TriggerSpec, first_fire
from scheduler.templates import load_template
from scheduler.triggers import NON_CALENDAR, CronTrigger, IntervalTrigger, Trigger, cron_trigger

__all__ = [
    "CRON_HELP",
    "DAY_OF_MONTH_HELP",
    "EVERY_HELP",
    "ONCE_HELP",
    "ONE_LINE_HELP",
    "TIME_HELP",
    "WEEKDAYS",
    "WEEKDAY_HELP",
    "OneLine",
    "cron_spec",
    "default_name",
    "dst_notes",
    "edited_text",
    "every_spec",
    "local_instant",
    "once_spec",
    "parse_day_of_month",
    "parse_duration",
    "parse_once",
    "parse_one_line",
    "parse_time",
    "parse_weekdays",
    "parse_when",
    "preset_cron",
    "preview_text",
    "saved_text",
    "upcoming",
    "when_line",
]

TIME_HELP = "Write the time as HH:MM, like 09:00."
WEEKDAY_HELP = "Write the day as mon, tue, wed, thu, fri, sat or sun."
DAY_OF_MONTH_HELP = "Write the day of the month as a number from 1 to 28."
EVERY_HELP = "Write the interval as a number and a unit, like 4h, 30m or 2d."
ONCE_HELP = "Write when as 'in 3 days', 'in 2 hours', 'tomorrow 09:00' or '2026-12-01 09:00'."
CRON_HELP = "Write a five-field cron expression, like 0 9 * * 1-5."
ONE_LINE_HELP = (
    "Start with daily, weekdays, weekly, monthly, every, in, tomorrow, at or cron, "
    "like /new daily 09:00 Prepare my brief."
)

#: (label, cron day-of-week number), Monday first as people write weeks.
WEEKDAYS: tuple[tuple[str, int], ...] = (
    ("Mon", 1),
    ("Tue", 2),
    ("Wed", 3),
    ("Thu", 4),
    ("Fri", 5),
    ("Sat", 6),
    ("Sun", 0),
)
_DAY_WORDS = {
    "mon": 1,
    "monday": 1,
    "tue": 2,
    "tues": 2,
    "tuesday": 2,
    "wed": 3,
    "wednesday": 3,
    "thu": 4,
    "thur": 4,
    "thurs": 4,
    "thursday": 4,
    "fri": 5,
    "friday": 5,
    "sat": 6,
    "saturday": 6,
    "sun": 0,
    "sunday": 0,
}
_UNITS = {
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
_TIME = re.compile(r"([01]?\d|2[0-3])[:.h]([0-5]\d)")
_DURATION = re.compile(r"(\d{1,6})\s*([a-z]+)")
#: The longest duration a command takes (`in 3650d`); beyond it dates leave the calendar.
_MAX_DURATION = 3650 * 86400
_DATE_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})(?:[ T]+|\s+at\s+)(\S+)")
_QUOTES = {'"': '"', "'": "'", "“": "”", "„": "“", "‘": "’", "«": "»"}
# A prompt shown in a preview is cut here: the whole preview must fit one message.
_SHOWN_PROMPT = 300
_NAME_LENGTH = 40


# --- parsing: pieces -----------------------------------------------------------------
def parse_time(text: str) -> tuple[int, int]:
    """`09:00`, `9:00`, `9.00`, `9h00` -> (9, 0)."""
    match = _TIME.fullmatch(text.strip().lower())
    if match is None:
        raise InvalidSchedule(TIME_HELP)
    return int(match.group(1)), int(match.group(2))


def parse_weekdays(text: str) -> list[int]:
    """`mon`, `Monday`, `mon,wed,fri` -> cron day-of-week numbers (Sunday is 0)."""
    days: list[int] = []
    for word in text.strip().lower().replace(" ", "").split(","):
        if word not in _DAY_WORDS:
            raise InvalidSchedule(WEEKDAY_HELP)
        if _DAY_WORDS[word] not in days:
            days.append(_DAY_WORDS[word])
    return days


def parse_day_of_month(text: str) -> int:
    """1..28: every month has these days, so the schedule never silently skips one."""
    cleaned = text.strip().lower().removesuffix(".")
    for suffix in ("st", "nd", "rd", "th"):
        cleaned = cleaned.removesuffix(suffix)
    if not cleaned.isdigit() or not 1 <= int(cleaned) <= 28:
        raise InvalidSchedule(DAY_OF_MONTH_HELP)
    return int(cleaned)


def parse_duration(text: str, *, bare_unit: int | None = None) -> int:
    """`4h`, `4 hours`, `30m`, `2d`, `1w` -> seconds. With `bare_unit`, a lone number
    (`4`) counts in that unit."""
    cleaned = text.strip().lower()
    if bare_unit is not None and cleaned.isdigit() and len(cleaned) <= 6:
        seconds = int(cleaned) * bare_unit
        if seconds == 0:
            raise InvalidSchedule(EVERY_HELP)
        if seconds > _MAX_DURATION:
            raise InvalidSchedule("That is more than 10 years; pick a shorter time.")
        return seconds
    match = _DURATION.fullmatch(cleaned)
    if match is None or match.group(2) not in _UNITS or int(match.group(1)) == 0:
        raise InvalidSchedule(EVERY_HELP)
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > _MAX_DURATION:
        # "in 999999w" would run past the calendar's end (year 9999).
        raise InvalidSchedule("That is more than 10 years; pick a shorter time.")
    return seconds


def local_instant(day: date, hour: int, minute: int, zone: str) -> datetime:
    """The UTC instant of a local wall time; a wall time skipped by a DST change is
    refused, a repeated one means its first occurrence."""
    tz = load_zone(zone)
    wall = datetime.combine(day, time(hour, minute))
    moment = wall.replace(tzinfo=tz)
    if moment.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall:
        raise InvalidSchedule(
            f"{wall:%H:%M} on {wall:%a %d %b %Y} does not exist in {zone} (the clocks "
            "jump forward then); pick another time."
        )
    return moment.astimezone(UTC)


def parse_once(text: str, now: datetime, zone: str) -> datetime:
    """`in 3 days`, `in 2h`, `tomorrow 09:00`, `today 18:00`, `2026-12-01 09:00` (local)."""
    cleaned = " ".join(text.strip().lower().split())
    if cleaned.startswith("in "):
        seconds = parse_duration(cleaned[3:])
        return (now + timedelta(seconds=seconds)).replace(second=0, microsecond=0)
    today = now.astimezone(ZoneInfo(zone)).date()
    for word, offset in (("today", 0), ("tomorrow", 1)):
        if cleaned.startswith(word + " ") or cleaned == word:
            rest = cleaned[len(word) :].strip().removeprefix("at ").strip()
            if not rest:
                raise InvalidSchedule(TIME_HELP)
            hour, minute = parse_time(rest)
            return local_instant(today + timedelta(days=offset), hour, minute, zone)
    match = _DATE_TIME.fullmatch(cleaned.removeprefix("at ").removeprefix("on "))
    if match is None:
        raise InvalidSchedule(ONCE_HELP)
    try:
        day = date.fromisoformat(match.group(1))
    except ValueError:
        raise InvalidSchedule(ONCE_HELP) from None
    hour, minute = parse_time(match.group(2))
    return local_instant(day, hour, minute, zone)


# --- trigger specs -------------------------------------------------------------------
def preset_cron(
    preset: str, hour: int, minute: int, *, weekdays: list[int] | None = None, day: int = 1
) -> str:
    """The cron expression for a guided preset."""
    if preset == "daily":
        return f"{minute} {hour} * * *"
    if preset == "weekdays":
        return f"{minute} {hour} * * 1-5"
    if preset == "weekly":
        return f"{minute} {hour} * * {','.join(str(d) for d in weekdays or [1])}"
    if preset == "monthly":
        return f"{minute} {hour} {day} * *"
    raise ValueError(f"not a fixed-time preset: {preset}")


def cron_spec(expr: str, zone: str) -> TriggerSpec:
    return TriggerSpec(kind="cron", cron=" ".join(expr.split()), timezone=zone)


def every_spec(seconds: int, now: datetime, zone: str) -> TriggerSpec:
    """Every `seconds`, anchored at the next full local hour, or for a few minutes
    (a divisor of an hour) at the next multiple of it: `every 15m` at 07:07 starts 07:15."""
    if seconds <= 0:
        raise InvalidSchedule(EVERY_HELP)
    if seconds < 3600 and 3600 % seconds == 0:
        step = timedelta(seconds=seconds)
        floor = now.replace(second=0, microsecond=0)
        start = floor - timedelta(minutes=floor.minute % (seconds // 60)) + step
    else:
        hour = now.astimezone(ZoneInfo(zone)).replace(minute=0, second=0, microsecond=0)
        start = hour.astimezone(UTC) + timedelta(hours=1)
    return TriggerSpec(kind="interval", every_seconds=seconds, start_at=start, timezone=zone)


def once_spec(at: datetime, zone: str) -> TriggerSpec:
    return TriggerSpec(kind="once", at=at, timezone=zone)


def _take(text: str) -> tuple[str, str]:
    """The first word and the rest (the rest keeps its line breaks)."""
    stripped = text.lstrip()
    match = re.match(r"(\S+)(.*)", stripped, re.DOTALL)
    if match is None:
        return "", ""
    return match.group(1), match.group(2)


def _take_cron(text: str) -> tuple[str, str]:
    """A cron expression in quotes, an @-shortcut, or five bare fields."""
    stripped = text.lstrip()
    if stripped[:1] in _QUOTES:
        close = stripped.find(_QUOTES[stripped[0]], 1)
        if close == -1:
            raise InvalidSchedule(
                'Close the quotes around the cron expression, like cron "0 9 * * 1-5" Prompt.'
            )
        return stripped[1:close], stripped[close + 1 :]
    word, rest = _take(stripped)
    if word.startswith("@"):
        return word, rest
    fields = [word]
    for _ in range(4):
        word, rest = _take(rest)
        if not word:
            raise InvalidSchedule(CRON_HELP)
        fields.append(word)
    return " ".join(fields), rest


def _take_duration(text: str) -> tuple[int, str]:
    """`4h rest`, `4 hours rest` -> (14400, "rest")."""
    word, rest = _take(text)
    if word.isdigit():
        unit, after = _take(rest)
        word, rest = word + unit, after
    return parse_duration(word), rest


def _take_time(text: str) -> tuple[tuple[int, int], str]:
    word, rest = _take(text)
    if word.lower() == "at":
        word, rest = _take(rest)
    return parse_time(word), rest


def parse_when(text: str, now: datetime, zone: str) -> tuple[TriggerSpec, str]:
    """The schedule at the start of `text`, and what follows it.

    daily HH:MM | weekdays HH:MM | weekly DAY[,DAY..] HH:MM | monthly N HH:MM
    every N(m|h|d|w) | in N(m|h|d|w) | tomorrow HH:MM | today HH:MM
    at YYYY-MM-DD HH:MM | cron "EXPR" (or five bare fields, or @daily)
    """
    keyword, rest = _take(text)
    keyword = keyword.lower()
    if keyword in ("daily", "weekdays"):
        (hour, minute), rest = _take_time(rest)
        return cron_spec(preset_cron(keyword, hour, minute), zone), rest
    if keyword == "weekly":
        day_text, rest = _take(rest)
        days = parse_weekdays(day_text)
        (hour, minute), rest = _take_time(rest)
        return cron_spec(preset_cron("weekly", hour, minute, weekdays=days), zone), rest
    if keyword == "monthly":
        day_text, rest = _take(rest)
        day = parse_day_of_month(day_text)
        (hour, minute), rest = _take_time(rest)
        return cron_spec(preset_cron("monthly", hour, minute, day=day), zone), rest
    if keyword == "every":
        seconds, rest = _take_duration(rest)
        return every_spec(seconds, now, zone), rest
    if keyword == "in":
        seconds, rest = _take_duration(rest)
        at = (now + timedelta(seconds=seconds)).replace(second=0, microsecond=0)
        return once_spec(at, zone), rest
    if keyword in ("today", "tomorrow"):
        time_text, rest = _take(rest)
        if time_text.lower() == "at":
            time_text, rest = _take(rest)
        return once_spec(parse_once(f"{keyword} {time_text}", now, zone), zone), rest
    if keyword in ("at", "on", "once"):
        day_text, rest = _take(rest)
        time_text, rest = _take(rest)
        return once_spec(parse_once(f"{day_text} {time_text}", now, zone), zone), rest
    if keyword == "cron":
        expr, rest = _take_cron(rest)
        return cron_spec(expr, zone), rest
    raise InvalidSchedule(ONE_LINE_HELP)


@dataclass(frozen=True)
class OneLine:
    """A parsed `/new [remind] WHEN TEXT`."""

    kind: ActionKind
    trigger: TriggerSpec
    text: str


def parse_one_line(text: str, now: datetime, zone: str) -> OneLine:
    """`[remind] WHEN TEXT` (what follows `/new`); see `parse_when` for WHEN."""
    kind = ActionKind.AGENT
    first, rest = _take(text)
    if first.lower() in ("remind", "reminder"):
        kind, text = ActionKind.REMINDER, rest
    elif first.lower() == "task":
        kind, text = ActionKind.TASK, rest
    elif first.lower() in ("ask", "agent"):
        text = rest
    spec, rest = parse_when(text, now, zone)
    body = rest.strip()
    if not body:
        what = {ActionKind.REMINDER: "reminder text", ActionKind.TASK: "task title"}.get(
            kind, "prompt"
        )
        raise InvalidSchedule(
            f"Add the {what} after the time, like /new daily 09:00 Prepare my brief."
        )
    return OneLine(kind, spec, body)


def default_name(action: Action) -> str:
    """A name proposed from the prompt: its first line, cut at a word near 40 characters."""
    if action.template:
        return action.template.replace("_", " ").capitalize()
    line = " ".join(action.text.strip().splitlines()[0].split()) if action.text.strip() else ""
    if len(line) <= _NAME_LENGTH:
        return line or "My schedule"
    cut = line.rfind(" ", 0, _NAME_LENGTH)
    return (line[:cut] if cut > _NAME_LENGTH // 2 else line[: _NAME_LENGTH - 1]) + "…"


# --- views ---------------------------------------------------------------------------
def upcoming(trigger: Trigger, now: datetime, count: int = 3) -> list[datetime]:
    """The next `count` fires after `now`; an interval starting later fires at its start."""
    first = first_fire(trigger, now)
    if first is None or count < 1:
        return []
    return [first, *itertools.islice(trigger.fires(first), count - 1)]


def _action_line(action: Action) -> str:
    if action.template:
        body = load_template(action.template)
        shown = body if len(body) <= _SHOWN_PROMPT else body[: _SHOWN_PROMPT - 1] + "…"
        return f"Asks the agent (template {esc(action.template)}): “{esc(shown)}”"
    text = action.text.strip()
    shown = text if len(text) <= _SHOWN_PROMPT else text[: _SHOWN_PROMPT - 1] + "…"
    if action.kind is ActionKind.REMINDER:
        return f"Reminds you: “{esc(shown)}”"
    if action.kind is ActionKind.TASK:
        return f"Adds a task to /today: “{esc(shown)}”"
    if action.kind is ActionKind.BUNDLE:
        return template_line(action)
    return f"Asks the agent: “{esc(shown)}”"


def when_line(trigger: Trigger, zone: str) -> str:
    """The trigger in words (HTML), with its cron expression or start."""
    if isinstance(trigger, CronTrigger):
        return f"{esc(trigger.describe())} — cron <code>{esc(trigger.expr)}</code>"
    if isinstance(trigger, IntervalTrigger):
        every = trigger.describe().split(" from ")[0]
        return f"{esc(every)}, starting {local(trigger.start_at, zone)}"
    if isinstance(trigger, NON_CALENDAR):
        return esc(trigger.describe())
    return f"once, {local(trigger.at, zone)}"


def _task_lines(action: Action) -> list[str]:
    if action.kind is not ActionKind.TASK:
        return []
    instructions = action.instructions
    if len(instructions) > _SHOWN_PROMPT:
        instructions = instructions[: _SHOWN_PROMPT - 1] + "…"
    return [
        f"Instructions: {esc(instructions or 'none')}",
        f"For: {esc(action.assignee or 'you')}",
        f"Proof: {action.proof or 'none'}",
    ]


def preview_text(*, name: str, action: Action, trigger: Trigger, now: datetime) -> str:
    """The preview shown before Save (HTML): what, when, zone, next three fires, DST notes.
    Times are in the trigger's own zone, the one the saved schedule keeps."""
    fires = upcoming(trigger, now)
    shown_zone = trigger.timezone
    lines = [
        f"<b>{esc(name)}</b>",
        _action_line(action),
        *_task_lines(action),
        f"When: {when_line(trigger, shown_zone)}",
        f"Zone: {esc(shown_zone)}",
    ]
    if fires:
        lines.append("Next:")
        lines.extend(f"• {local(fire, shown_zone)}" for fire in fires)
    else:
        lines.append("Next: never")
    lines.extend(esc(note) for note in dst_notes(trigger, now))
    return "\n".join(lines)


def saved_text(
    name: str, schedule_id: str, next_run: datetime | None, zone: str, ref: str | None = None
) -> str:
    """The confirmation after Save (HTML); `ref` is the short form (`#3`) to type."""
    when = local(next_run, zone) if next_run is not None else "never"
    ref = ref or schedule_id
    return (
        f"Saved <b>{esc(name)}</b> ({esc(ref)}, id <code>{esc(schedule_id)}</code>). "
        f"Next run: {when}. See it with /show {esc(ref)}."
    )


# --- daylight saving -----------------------------------------------------------------
@dataclass(frozen=True)
class _Transition:
    at: datetime  # the first instant with the new offset (UTC)
    before: timedelta
    after: timedelta


def _offset(instant: datetime, zone: ZoneInfo) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _transitions(zone: ZoneInfo, start: datetime, end: datetime) -> list[_Transition]:
    """Offset changes in (start, end]. Two changes are weeks apart, so sampling every
    12 hours sees each one; a binary search then finds its exact second."""
    found: list[_Transition] = []
    step = timedelta(hours=12)
    low, low_offset = start, _offset(start, zone)
    while low < end:
        high = min(low + step, end)
        high_offset = _offset(high, zone)
        if high_offset != low_offset:
            a, b = int(low.timestamp()), int(high.timestamp())
            while b - a > 1:
                middle = (a + b) // 2
                if _offset(datetime.fromtimestamp(middle, UTC), zone) == low_offset:
                    a = middle
                else:
                    b = middle
            found.append(_Transition(datetime.fromtimestamp(b, UTC), low_offset, high_offset))
        low, low_offset = high, high_offset
    return found


def _wall_matches(cron: CronExpression, start: datetime, end: datetime) -> list[datetime]:
    """Wall times in [start, end) (naive) that the expression names, read as plain
    calendar matches (evaluated in UTC, which has no transitions)."""
    limit = end.replace(tzinfo=UTC)
    walk = cron_trigger(cron.expr, "UTC").fires(start.replace(tzinfo=UTC) - timedelta(seconds=1))
    matches = itertools.takewhile(lambda fire: fire < limit, walk)
    return [fire.replace(tzinfo=None) for fire in itertools.islice(matches, 120)]


def _times(walls: list[datetime]) -> str:
    shown = [f"{w:%H:%M}" for w in walls]
    if len(shown) == 1:
        return shown[0]
    if len(shown) <= 4:
        return ", ".join(shown[:-1]) + " and " + shown[-1]
    return f"{shown[0]} to {shown[-1]}"


def _runs(walls: list[datetime]) -> str:
    return f"the {len(walls)} runs from {walls[0]:%H:%M} to {walls[-1]:%H:%M}"


def _hhmm(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def dst_notes(trigger: Trigger, now: datetime, *, days: int = 366) -> list[str]:
    """A note for the first DST transition in the next `days` on which the cron schedule
    names a wall time that is skipped (spring forward), and one for the first on which
    it names a repeated one (fall back), saying what happens under cronie's rules.
    Interval and one-time schedules fire at instants, so they get none."""
    if not isinstance(trigger, CronTrigger):
        return []
    cron, zone = trigger.cron, trigger.zone
    notes: list[str] = []
    seen: set[bool] = set()
    for change in _transitions(zone, now, now + timedelta(days=days)):
        naive = change.at.replace(tzinfo=None)
        forward = change.after > change.before
        if forward in seen:
            continue  # the same note a year later says nothing new
        if forward:
            first, last = naive + change.before, naive + change.after
        else:
            first, last = naive + change.after, naive + change.before
        walls = _wall_matches(cron, first, last)
        if not walls:
            continue
        seen.add(forward)
        day = f"{walls[0]:%a %d %b}"
        times = _times(walls)
        many = len(walls) > 1
        if forward:
            jump = f"{last:%H:%M}"
            if cron.is_fixed_time:
                verb, they = ("do", "they run") if many else ("does", "it runs")
                notes.append(
                    f"Note: on {day} {times} {verb} not exist in {trigger.timezone}; "
                    f"{they} at {jump} that day."
                )
            else:
                runs = f"{_runs(walls)} are" if many else f"the {times} run is"
                notes.append(
                    f"Note: on {day} the clocks jump from {first:%H:%M} to {jump} in "
                    f"{trigger.timezone}, so {runs} skipped."
                )
        elif cron.is_fixed_time:
            verb, they = ("happen", "they run") if many else ("happens", "it runs")
            notes.append(
                f"Note: on {day} {times} {verb} twice in {trigger.timezone}; {they} once, "
                f"at the first ({_hhmm(change.before)})."
            )
        else:
            runs = f"{_runs(walls)} happen" if many else f"the {times} run happens"
            notes.append(
                f"Note: on {day} the clocks go back from {last:%H:%M} to {first:%H:%M} in "
                f"{trigger.timezone}, so {runs} twice."
            )
    return notes


def edited_text(schedule: Schedule) -> str:
    """The answer to /edit (HTML): the schedule's line and its next fire."""
    zone = schedule.timezone
    when = local(schedule.next_run_at, zone) if schedule.next_run_at else "never"
    return f"Updated: {schedule_line(schedule)}\nNext run: {when}"
