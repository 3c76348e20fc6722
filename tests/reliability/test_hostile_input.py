"""Hostile input, at the pure and the service level (property-based, hypothesis).

Pure functions: any cron string either parses to an expression whose `next_after`
works, or is refused with one sentence; any zone name is a zone or one sentence; any
prompt template renders exactly as a reference renderer of plain `{placeholder}`s
says, or is refused (no attribute, index, conversion or format spec reaches Python);
the command parsers of /new, /followup, /wait and /backfill answer anything with a
value or one sentence; callback data parsing never raises.

Service: ScheduleService.create_schedule / update_schedule with arbitrary fields on a
real SQLite file either store a valid schedule or refuse with one sentence and leave
the database file exactly as it was (a full dump compared before and after).

Every example run is counted in the reliability figures as an input tried.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from telegram import InlineKeyboardMarkup

from adapters.clocks import FakeClock
from bot import callbacks
from bot.handlers.backfill import parse_range
from bot.handlers.today import parse_date
from bot.views_new import (
    parse_day_of_month,
    parse_duration,
    parse_once,
    parse_one_line,
    parse_time,
    parse_weekdays,
)
from bot.views_policies import policies_menu
from bot.views_proposals import run_approval
from bot.views_schedules import (
    archive_question,
    card_keyboard,
    dead_letter,
    history_page,
    schedules_page,
)
from scheduler.cron import CronExpression, load_zone
from scheduler.errors import InvalidSchedule, TicklerError, shown
from scheduler.models import (
    Action,
    ActionKind,
    Owner,
    Policies,
    Run,
    RunStatus,
    RunTrigger,
    Schedule,
)
from scheduler.service import SCHEDULE_ID_PATTERN as CONFIG_ID
from scheduler.service import ScheduleService, TriggerSpec
from scheduler.templates import PLACEHOLDERS, render
from scheduler.triggers import cron_trigger
from storage.sqlite_store import SqliteStore
from tests.reliability.figures import tally
from tests.reliability.hostile import (
    NASTY,
    db_snapshot,
    hostile_text,
    hostile_word,
    schedule_problems,
    sentence_problem,
)

#: Pure properties: cheap, so many examples; derandomized so CI sees the same inputs.
PURE = settings(max_examples=300, deadline=None, derandomize=True, database=None)
#: Service properties: a real SQLite file per test, shared by its examples.
SERVICE = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Kolkata",
    "Pacific/Kiritimati",
    "Etc/GMT+12",
)


def refused_with_one_sentence(exc: TicklerError, echoed: str | None = None) -> None:
    """`echoed` is the input the refusal quotes back: an operator's own "AError" is not
    Python internals leaking, so the check reads the sentence without it."""
    text = str(exc)
    if echoed is not None and shown(echoed):
        text = text.replace(f"'{shown(echoed)}'", "'…'")
    problem = sentence_problem(text)
    assert problem is None, f"refusal is not one sentence ({problem}): {str(exc)!r}"


# --- cron ------------------------------------------------------------------------------
_CRON_TOKENS = st.sampled_from(
    [
        "*",
        "*/5",
        "*/0",
        "*/61",
        "0",
        "5",
        "59",
        "60",
        "23",
        "24",
        "1-5",
        "5-1",
        "5-5",
        "1-31/2",
        "0-23/2",
        "MON",
        "mon-fri",
        "SUN,SAT",
        "JAN",
        "feb-dec/3",
        "L",
        "W",
        "5#2",
        "?",
        "31",
        "30",
        "29",
        "2",
        "7",
        "1,15",
        ",",
        "-",
        "/",
        "1/5",
        "٣",  # an Arabic-Indic digit: isdigit() but not cron
        "０",  # a fullwidth zero
    ]
)
_FIELD = st.lists(_CRON_TOKENS, min_size=1, max_size=3).map(",".join)
cron_texts = st.one_of(
    st.lists(_FIELD, min_size=5, max_size=5).map(" ".join),
    st.lists(_FIELD, min_size=0, max_size=7).map(" ".join),
    st.sampled_from(["@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@reboot", "@DAILY"]),
    hostile_text(400),
)


@PURE
@given(
    text=cron_texts,
    zone=st.sampled_from(ZONES),
    after=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
@example(text="0 0 30 2 *", zone="UTC", after=NOW)
@example(text="0 9 31 4,6 *", zone="UTC", after=NOW)
@example(text="x" * 10_240, zone="UTC", after=NOW)
@example(text="0 0 29 2 1", zone="Pacific/Chatham", after=NOW)
def test_any_cron_text_parses_to_working_fires_or_one_sentence(
    text: str, zone: str, after: datetime
) -> None:
    tally.add("inputs tried")
    try:
        expr = CronExpression.parse(text)
    except InvalidSchedule as exc:
        refused_with_one_sentence(exc)
        return
    fires = []
    cursor = after
    for _ in range(3):
        cursor = expr.next_after(cursor, ZoneInfo(zone))
        fires.append(cursor)
    assert fires[0] > after and fires == sorted(set(fires))
    assert all(f.tzinfo is UTC for f in fires)
    # What the chat shows for it works too.
    assert cron_trigger(expr.expr, zone).describe()


# --- zones ------------------------------------------------------------------------------
_REAL_ZONES = sorted(available_timezones())


def _mangle(name: str, how: int) -> str:
    if how == 0:
        return name.lower()
    if how == 1:
        return name[:-1]
    if how == 2:
        return name + "x"
    if how == 3:
        return f"  {name}\u200b"
    return name.replace("/", "\\")


zone_texts = st.one_of(
    st.sampled_from(_REAL_ZONES),
    st.builds(_mangle, st.sampled_from(_REAL_ZONES), st.integers(0, 4)),
    hostile_text(300),
    st.sampled_from(["../../etc/passwd", "/etc/localtime", "Europe/../Europe/Berlin", "", " "]),
)


@PURE
@given(name=zone_texts)
@example(name="x" * 10_240)
@example(name="Europe/Berlin\x00")
def test_any_zone_name_is_a_zone_or_one_sentence(name: str) -> None:
    tally.add("inputs tried")
    try:
        zone = load_zone(name)
    except InvalidSchedule as exc:
        refused_with_one_sentence(exc, echoed=name)
        return
    assert zone.key in _REAL_ZONES
    assert zone.key == name.strip()


# --- templates --------------------------------------------------------------------------
class _Refused(Exception):
    pass


_FIELD_RE = re.compile(r"\{([^{}]*)\}")


def reference_render(template: str, values: dict[str, str]) -> str:
    """What a prompt may do, and nothing else: `{{` and `}}` are braces, `{name}` (or
    `{name:}`, an empty format) of a known placeholder is its value; anything else
    with a brace is refused."""
    out: list[str] = []
    i = 0
    while i < len(template):
        if template.startswith("{{", i):
            out.append("{")
            i += 2
        elif template.startswith("}}", i):
            out.append("}")
            i += 2
        elif template[i] == "{":
            match = _FIELD_RE.match(template, i)
            if match is None:
                raise _Refused
            name = match.group(1).removesuffix(":")
            if name not in PLACEHOLDERS:
                raise _Refused
            out.append(values[name])
            i = match.end()
        elif template[i] == "}":
            raise _Refused
        else:
            out.append(template[i])
            i += 1
    return "".join(out)


_TEMPLATE_PIECES = st.one_of(
    st.sampled_from(NASTY),
    st.sampled_from([f"{{{p}}}" for p in PLACEHOLDERS]),
    st.sampled_from(
        [
            "{date.year}",
            "{date[0]}",
            "{time!s}",
            "{time!a}",
            "{weekday:{time}}",
            "{timezone.__init__.__globals__}",
            "{schedule_name.__class__.__base__.__subclasses__}",
            "{0}",
            "{1.__dict__}",
            "{self}",
            "{ date}",
            "{date }",
            "{date:}",
            "{date:.0}",
            "{date:%Y}",
            "{last_output:>99999}",
        ]
    ),
    st.text(max_size=20),
)
templates = st.lists(_TEMPLATE_PIECES, max_size=10).map("".join)
values = st.fixed_dictionaries(
    {p: st.one_of(st.sampled_from(NASTY), st.text(max_size=30)) for p in PLACEHOLDERS}
)


@PURE
@given(template=templates, variables=values)
@example(template="{schedule.__class__}", variables=dict.fromkeys(PLACEHOLDERS, "x"))
@example(template="{" + "x" * 3000 + "}", variables=dict.fromkeys(PLACEHOLDERS, "x"))
@example(template="{0.__globals__}", variables=dict.fromkeys(PLACEHOLDERS, "x"))
@example(template="{date:>999999999}", variables=dict.fromkeys(PLACEHOLDERS, "x"))
@example(template="{schedule_name}", variables=dict.fromkeys(PLACEHOLDERS, "{date.__class__}"))
def test_a_template_renders_plain_placeholders_only(
    template: str, variables: dict[str, str]
) -> None:
    tally.add("inputs tried")
    try:
        expected: str | None = reference_render(template, variables)
    except _Refused:
        expected = None
    try:
        got = render(template, variables)
    except InvalidSchedule as exc:
        refused_with_one_sentence(exc)
        assert expected is None, f"{template!r} refused, but it only uses placeholders"
        return
    assert got == expected, f"{template!r} rendered {got!r}"


# --- command argument parsers -------------------------------------------------------------
_WHEN_WORDS = st.sampled_from(
    [
        "daily",
        "weekdays",
        "weekly",
        "monthly",
        "every",
        "in",
        "today",
        "tomorrow",
        "at",
        "on",
        "once",
        "cron",
        "remind",
        "task",
        "ask",
    ]
)
command_lines = st.lists(
    st.one_of(_WHEN_WORDS, hostile_word(20), _CRON_TOKENS), min_size=0, max_size=8
).map(" ".join) | hostile_text(4096)


def _parsed_or_sentence(parse: Any, *args: Any) -> Any:
    try:
        return parse(*args)
    except TicklerError as exc:
        refused_with_one_sentence(exc)
        return None


@PURE
@given(text=command_lines, zone=st.sampled_from(ZONES))
@example(text="in 999999w Prepare", zone="UTC")
@example(text="every 999999w Prepare", zone="UTC")
@example(text="at 9999-12-31 23:59 Prepare", zone="Pacific/Kiritimati")
@example(text="at 0001-01-01 00:00 Prepare", zone="Pacific/Kiritimati")
@example(text='cron "0 9 * * 1-5', zone="UTC")
def test_the_new_command_line_is_a_schedule_or_one_sentence(text: str, zone: str) -> None:
    tally.add("inputs tried")
    line = _parsed_or_sentence(parse_one_line, text, NOW, zone)
    if line is None:
        return
    assert line.text.strip()
    service = ScheduleService(_NoStore(), FakeClock(NOW), default_timezone=zone)
    _parsed_or_sentence(service.build_trigger, line.trigger, NOW)


class _NoStore:
    """build_trigger is pure; a store that is touched fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was used: {name}")


@PURE
@given(text=st.one_of(hostile_word(30), command_lines), zone=st.sampled_from(ZONES))
@example(text="in 999999w", zone="UTC")
@example(text="9999-12-31 23:59", zone="Pacific/Kiritimati")
@example(text="0001-01-01 00:00", zone="Pacific/Kiritimati")
def test_the_small_parsers_answer_a_value_or_one_sentence(text: str, zone: str) -> None:
    tally.add("inputs tried")
    _parsed_or_sentence(parse_time, text)
    _parsed_or_sentence(parse_weekdays, text)
    _parsed_or_sentence(parse_day_of_month, text)
    _parsed_or_sentence(parse_duration, text)
    _parsed_or_sentence(lambda t: parse_duration(t, bare_unit=3600), text)
    _parsed_or_sentence(parse_once, text, NOW, zone)
    when = _parsed_or_sentence(parse_date, text, NOW, zone)
    assert when is None or when.tzinfo is not None


dates = st.one_of(
    hostile_word(30),
    st.dates().map(str),
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(["9999-12-31", "0001-01-01", "0001-01-01T00:00:00+14:00", "2026-11-23"]),
)


@PURE
@given(start=dates, end=dates, zone=st.sampled_from(ZONES))
@example(start="2026-11-01", end="9999-12-31", zone="UTC")
@example(start="0001-01-01", end="2026-11-01", zone="Pacific/Kiritimati")
@example(start="0001-01-01T00:00:00+14:00", end="2026-11-01", zone="UTC")
def test_a_backfill_range_is_two_instants_or_one_sentence(start: str, end: str, zone: str) -> None:
    tally.add("inputs tried")
    parsed = _parsed_or_sentence(parse_range, start, end, zone, NOW)
    if parsed is not None:
        first, last = parsed
        assert first.tzinfo is not None and last.tzinfo is not None


# --- callback data --------------------------------------------------------------------------
@PURE
@given(data=st.one_of(st.none(), st.text(max_size=200), hostile_word(64)))
def test_callback_data_parsing_never_raises(data: str | None) -> None:
    tally.add("inputs tried")
    parsed = callbacks.parse(data)
    if parsed is not None:
        assert ":".join([parsed.kind, parsed.action, *parsed.args]) == data


@PURE
@given(kind=hostile_word(5), action=hostile_word(10), args=st.lists(hostile_word(30), max_size=4))
def test_callback_data_we_make_fits_telegram_or_is_refused(
    kind: str, action: str, args: list[str]
) -> None:
    tally.add("inputs tried")
    try:
        data = callbacks.make(kind, action, *args)
    except ValueError:
        return
    assert 1 <= len(data.encode()) <= 64


# --- the service, on a real SQLite file -------------------------------------------------------
_datetimes = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([None, UTC, ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Etc/GMT+12")]),
)
_near = st.builds(
    lambda minutes: NOW + timedelta(minutes=minutes), st.integers(-10_000, 10_000_000)
)
trigger_specs = st.builds(
    TriggerSpec,
    kind=st.sampled_from(["cron", "interval", "once"]),
    cron=st.none() | cron_texts,
    timezone=st.none() | zone_texts,
    every_seconds=st.none() | st.integers(-(10**12), 10**12) | st.integers(0, 10**6),
    start_at=st.none() | _datetimes | _near,
    at=st.none() | _datetimes | _near,
)
actions = st.builds(
    Action,
    kind=st.sampled_from(list(ActionKind)),
    text=hostile_text(10_240),
    template=st.none() | st.sampled_from(["daily_brief", "weekly_review", "../x", "", "nope"]),
)
names = st.one_of(hostile_text(200), st.sampled_from(NASTY))


@pytest.fixture
async def real_service(tmp_path: Path) -> Any:
    store = await SqliteStore.open(tmp_path / "hostile.db")
    try:
        yield (
            ScheduleService(store, FakeClock(NOW), default_timezone="Europe/Berlin"),
            (tmp_path / "hostile.db"),
        )
    finally:
        await store.close()


OWNER = Owner(id=1001, first_name="Alice")


async def _stored_as_returned(service: ScheduleService, schedule: Schedule) -> None:
    stored = await service.store.schedules.get(schedule.chat_id, schedule.id)
    assert stored == schedule
    assert schedule_problems([stored], service.limits) == []


@SERVICE
@given(name=names, trigger=trigger_specs, action=actions, chat=st.sampled_from([1001, -42, 7]))
@example(
    name="Brief",
    trigger=TriggerSpec(kind="cron", cron="0 9 * * *", timezone="x" * 10_240),
    action=Action(text="Prepare."),
    chat=1001,
)
@example(
    name="Brief",
    trigger=TriggerSpec(kind="once", at=datetime(9999, 12, 30, tzinfo=ZoneInfo("Etc/GMT+12"))),
    action=Action(text="Prepare."),
    chat=1001,
)
async def test_create_stores_a_valid_schedule_or_changes_nothing(
    real_service: tuple[ScheduleService, Path],
    name: str,
    trigger: TriggerSpec,
    action: Action,
    chat: int,
) -> None:
    service, path = real_service
    tally.add("inputs tried")
    before = db_snapshot(path)
    try:
        schedule = await service.create_schedule(
            chat, OWNER, name=name, trigger=trigger, action=action
        )
    except TicklerError as exc:
        refused_with_one_sentence(exc)
        assert db_snapshot(path) == before, "a refused schedule changed the database"
        tally.add("inputs refused, nothing stored")
        return
    await _stored_as_returned(service, schedule)
    tally.add("inputs stored, valid")


edits = st.fixed_dictionaries(
    {},
    optional={
        "name": names,
        "description": hostile_text(2000),
        "trigger": trigger_specs,
        "action": actions,
        "policies": st.builds(Policies),
    },
)


@SERVICE
@given(changes=edits, which=st.sampled_from(["real", "other chat", "unknown"]))
async def test_edit_stores_a_valid_schedule_or_changes_nothing(
    real_service: tuple[ScheduleService, Path], changes: dict[str, Any], which: str
) -> None:
    service, path = real_service
    tally.add("inputs tried")
    mine = await service.list_schedules(1001)
    if not mine:
        created = await service.create_schedule(
            1001,
            OWNER,
            name="Brief",
            trigger=TriggerSpec(kind="cron", cron="0 9 * * *"),
            action=Action(text="Prepare the brief for {date}."),
        )
        mine = [created]
    target = mine[0].id if which != "unknown" else "01JDZZZZZZZZZZZZZZZZZZZZZZ"
    chat = 1002 if which == "other chat" else 1001
    before = db_snapshot(path)
    try:
        updated = await service.update_schedule(chat, target, **changes)
    except TicklerError as exc:
        refused_with_one_sentence(exc)
        assert db_snapshot(path) == before, "a refused edit changed the database"
        tally.add("inputs refused, nothing stored")
        return
    assert which == "real", "an edit reached a schedule it must not find"
    await _stored_as_returned(service, updated)
    tally.add("inputs stored, valid")


# --- our own keyboards ------------------------------------------------------------------------
#: Ids a schedule can have: ours (ULIDs) or one given in schedules.yaml.
schedule_ids = st.one_of(
    st.just("01JDZZZZZZZZZZZZZZZZZZZZZZ"),
    st.from_regex(CONFIG_ID, fullmatch=True),
)
#: The longest id schedules.yaml accepts.
LONGEST_CONFIG_ID = max(("a" * n for n in range(1, 200) if CONFIG_ID.fullmatch("a" * n)), key=len)
#: Epoch seconds up to the year 2286, as the missed-fires and backfill buttons carry them.
LATEST_EPOCH = 9_999_999_999
epochs = st.integers(0, LATEST_EPOCH)


def _all_data(*markups: InlineKeyboardMarkup | None) -> list[str]:
    return [
        str(button.callback_data)
        for markup in markups
        if markup is not None
        for row in markup.inline_keyboard
        for button in row
    ]


@PURE
@given(
    sid=schedule_ids,
    name=names.filter(lambda n: " ".join(n.split())),
    page=st.integers(0, 999),
    a=epochs,
    b=epochs,
)
@example(sid=LONGEST_CONFIG_ID, name="Brief", page=999, a=LATEST_EPOCH, b=LATEST_EPOCH)
def test_our_keyboards_carry_at_most_64_bytes_of_callback_data(
    sid: str, name: str, page: int, a: int, b: int
) -> None:
    tally.add("inputs tried")
    schedule = Schedule(
        id=sid,
        chat_id=1001,
        name=name,
        trigger=cron_trigger("0 9 * * *", "UTC"),
        action=Action(text="Prepare."),
        owner=OWNER,
        next_run_at=NOW,
        created_at=NOW,
        updated_at=NOW,
    )
    paused = schedule.model_copy(update={"enabled": False})
    # A task's menu has the most buttons, with the longest values (catch_up_once).
    task = schedule.model_copy(update={"action": Action(kind=ActionKind.TASK, text="Do.")})
    run = Run(
        id="01JDYYYYYYYYYYYYYYYYYYYYYY",
        schedule_id=sid,
        chat_id=1001,
        scheduled_for=NOW,
        trigger=RunTrigger.SCHEDULE,
        status=RunStatus.DEAD,
        next_attempt_at=NOW,
        created_at=NOW,
        updated_at=NOW,
    )
    data = _all_data(
        card_keyboard(schedule),
        card_keyboard(paused),
        archive_question(schedule)[1],
        schedules_page([schedule] * 12, page, NOW)[1],
        history_page(
            [run],
            page=page,
            has_more=True,
            zones={},
            default_zone="UTC",
            names={},
            schedule=schedule,
        )[1],
        history_page([run], page=page, has_more=True, zones={}, default_zone="UTC", names={})[1],
        dead_letter(run, name, "UTC")[1],
        run_approval(schedule, run, "UTC")[1],
        policies_menu(schedule)[1],
        policies_menu(task)[1],
    )
    # The notifier's missed-fires buttons and /backfill's Confirm carry two instants.
    data += [callbacks.make("m", choice, sid, a, b) for choice in ("latest", "all", "skip")] + [
        callbacks.make("b", "ok", sid, a, b)
    ]
    for item in data:
        assert 1 <= len(item.encode("utf-8")) <= 64, item
