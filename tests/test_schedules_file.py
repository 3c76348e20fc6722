"""Schedules as code: applied idempotently; a bad entry is reported with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, start_bot, stop_bot
from bot.demo_kit.telegram_server import TelegramServer
from bot.schedules_file import UnusableFile, apply_schedules_file, parse_entries
from scheduler.chat_agents import ChatAgentService
from scheduler.errors import InvalidSchedule
from scheduler.models import Action, ActionKind, CreatedBy, Owner, Schedule, StepKind
from scheduler.schedules_file import REMOVED_REASON
from scheduler.service import ScheduleService, TriggerSpec
from storage.sqlite_store import SqliteStore

CHAT = 4242
EXAMPLE = 123456789  # the chat of schedules.example.yaml
ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
schedules:
  - id: daily-brief
    chat_id: 4242
    name: Daily brief
    cron: "0 8 * * 1-5"
    timezone: Europe/Berlin
    template: daily_brief
  - id: backup
    chat_id: 4242
    name: Mailing-list backup
    every: 1d
    remind: Back up the mailing list.
"""

BROKEN = (
    GOOD
    + """\
  - id: broken
    chat_id: 4242
    name: Broken
    cron: "61 * * * *"
    prompt: Never.
  - id: weekly
    chat_id: 4242
    name: Weekly review
    cron: "0 16 * * 5"
    template: weekly_review
    policies: {missed_run: skip}
"""
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def by_id(store: SqliteStore) -> dict[str, Schedule]:
    return {s.id: s for s in await store.schedules.list_for_chat(CHAT, include_archived=True)}


async def test_broken_entry_is_reported_with_its_line_and_others_applied(
    tmp_path: Path, service: ScheduleService, store: SqliteStore
) -> None:
    path = write(tmp_path, BROKEN)
    report = await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT])
    assert sorted(report.created) == ["backup", "daily-brief", "weekly"]
    assert len(report.errors) == 1
    assert report.errors[0].startswith("schedules.yaml line 13: ")
    schedules = await by_id(store)
    assert set(schedules) == {"backup", "daily-brief", "weekly"}
    assert all(s.created_by is CreatedBy.CONFIG for s in schedules.values())
    assert schedules["backup"].action.kind is ActionKind.REMINDER
    assert schedules["weekly"].timezone == "Europe/Berlin"  # the service's default zone


async def test_applying_twice_changes_nothing_and_changes_are_updates(
    tmp_path: Path, service: ScheduleService, store: SqliteStore
) -> None:
    path = write(tmp_path, GOOD)
    first = await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT])
    assert sorted(first.created) == ["backup", "daily-brief"]
    before = await by_id(store)
    second = await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT])
    assert (second.created, second.updated, second.disabled, second.errors) == ([], [], [], [])
    assert sorted(second.unchanged) == ["backup", "daily-brief"]
    assert await by_id(store) == before

    write(tmp_path, GOOD.replace("Daily brief", "Morning brief"))
    third = await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT])
    assert third.updated == ["daily-brief"] and third.unchanged == ["backup"]
    assert (await by_id(store))["daily-brief"].name == "Morning brief"


async def test_removed_entry_is_disabled_not_deleted_and_comes_back(
    tmp_path: Path, service: ScheduleService, store: SqliteStore
) -> None:
    path = write(tmp_path, GOOD)
    await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT])
    only_brief = GOOD.split("  - id: backup")[0]
    write(tmp_path, only_brief)
    report = await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT])
    assert report.disabled == ["backup"]
    backup = (await by_id(store))["backup"]
    assert not backup.enabled and backup.pause_reason == REMOVED_REASON
    assert backup.archived_at is None
    again = await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT])
    assert again.disabled == [] and again.unchanged == ["daily-brief"]

    write(tmp_path, GOOD)
    back = await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT])
    assert back.updated == ["backup"]
    assert (await by_id(store))["backup"].enabled


async def test_operator_schedules_are_never_disabled(
    tmp_path: Path, service: ScheduleService, store: SqliteStore
) -> None:
    mine = await service.create_schedule(
        CHAT,
        Owner(id=CHAT),
        name="Mine",
        trigger=TriggerSpec(kind="cron", cron="0 9 * * *"),
        action=Action(text="Hi."),
    )
    path = write(tmp_path, "schedules: []\n")
    report = await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT])
    assert report.disabled == []
    assert (await by_id(store))[mine.id].enabled


async def test_example_file_applies_cleanly(service: ScheduleService) -> None:
    path = ROOT / "schedules.example.yaml"
    report = await apply_schedules_file(path, service, now=service.clock.now(), chats=[EXAMPLE])
    assert report.errors == []
    assert len(report.created) == 9
    [digest] = [s for s in await service.list_schedules(EXAMPLE) if s.id == "nightly-digest"]
    assert [step.title for step in digest.action.steps] == ["Collect", "Summarise", "Publish"]
    assert digest.action.steps[2].requires_approval
    again = await apply_schedules_file(path, service, now=service.clock.now(), chats=[EXAMPLE])
    assert len(again.unchanged) == 9 and not (again.created or again.updated or again.disabled)
    newsletter = await service.get_schedule(EXAMPLE, "weekly-newsletter")
    action = newsletter.action
    assert (action.kind, action.lead_days) == (ActionKind.BUNDLE, 7)
    tasks = [s for s in action.steps if s.kind is StepKind.TASK]
    assert len(tasks) == 6 and len({s.offset_days for s in tasks}) == 6
    assert all(-7 < s.offset_days < 0 and s.proof for s in tasks)


def test_a_bundle_entrys_bad_step_is_refused_with_its_line() -> None:
    text = (
        "schedules:\n  - id: news\n    chat_id: 1\n    name: News\n    cron: '0 9 * * 4'\n"
        "    bundle:\n      lead_days: 7\n      steps:\n        - title: Links\n"
        "          due: -3\n"
    )
    entries, errors = parse_entries(text)
    assert entries == []
    assert errors == ["schedules.yaml line 2: 'news' step 1 has an unknown key 'due'."]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("schedules:\n  - id: x\n    chat_id: 1\n    name: X\n    prompt: hi\n", 2, "one of cron"),
        (
            "schedules:\n  - id: x\n    chat_id: 1\n    name: X\n    every: soon\n    prompt: hi\n",
            2,
            "not a length",
        ),
        ("schedules:\n  - id: x\n    chat_id: 1\n    nmae: X\n", 2, "Unknown key 'nmae'"),
        (
            "schedules:\n  - id: x\n    chat_id: 1\n    name: X\n    cron: '0 2 * * *'\n"
            "    action: plan\n",
            2,
            "'x' action must be a mapping",
        ),
        (
            "schedules:\n  - id: x\n    chat_id: 1\n    name: X\n    cron: '0 2 * * *'\n"
            "    action: {kind: plan, steps: [{text: a, retry: 3}]}\n",
            2,
            "'x' action.steps.0.retry: Extra inputs are not permitted.",
        ),
    ],
)
def test_parse_errors_name_the_line(text: str, line: int, words: str) -> None:
    entries, errors = parse_entries(text)
    assert entries == []
    assert len(errors) == 1
    assert errors[0].startswith(f"schedules.yaml line {line}: ")
    assert words in errors[0]


async def test_bot_applies_the_file_at_start(
    tmp_path: Path, telegram_server: TelegramServer, agent_stub: AgentStub
) -> None:
    path = write(tmp_path, GOOD.replace("4242", str(ALICE)))
    harness = await start_bot(telegram_server, agent_stub, tmp_path / "bot.db", schedules_file=path)
    try:
        schedules = await harness.services.store.schedules.list_for_chat(ALICE)
        assert sorted(s.id for s in schedules) == ["backup", "daily-brief"]
    finally:
        await stop_bot(harness)


# --- what the file may not do -------------------------------------------------------------
OTHER = 5151  # a chat on the allow-list besides CHAT


async def test_an_entry_for_a_chat_outside_the_allow_list_is_refused_with_its_line(
    tmp_path: Path, service: ScheduleService, store: SqliteStore
) -> None:
    path = write(
        tmp_path,
        GOOD.replace("chat_id: 4242\n    name: Mailing", "chat_id: 999\n    name: Mailing"),
    )
    report = await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT])
    assert report.created == ["daily-brief"]
    assert report.errors == [
        "schedules.yaml line 8: chat 999 is not in ADMIN_IDS, OPERATOR_IDS or API_CHAT_IDS; "
        "add it there or correct chat_id."
    ]
    assert await store.schedules.list_for_chat(999) == []


@pytest.mark.parametrize("text", ["", "# nothing here yet\n", "\n\n"])
async def test_an_empty_file_changes_nothing_and_says_how_to_mean_none(
    tmp_path: Path, service: ScheduleService, store: SqliteStore, text: str
) -> None:
    path = write(tmp_path, GOOD)
    await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT])
    write(tmp_path, text)
    report = await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT])
    assert report.disabled == []
    assert len(report.errors) == 1 and "write 'schedules: []'" in report.errors[0]
    assert all(s.enabled for s in (await by_id(store)).values())

    write(tmp_path, "schedules: []\n")
    none = await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT])
    assert sorted(none.disabled) == ["backup", "daily-brief"] and none.errors == []


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ('id: "s1\\n"', "an id of up to 30"),
        ('id: "s\\x1b1"', "an id of up to 30"),
        ('id: s1\n    name: "Da\\0ily"', "control characters"),
    ],
)
async def test_ids_and_names_with_control_characters_are_refused(
    tmp_path: Path, service: ScheduleService, store: SqliteStore, entry: str, words: str
) -> None:
    fields = "chat_id: 4242\n    every: 1d\n    remind: Hi."
    if "name:" not in entry:
        fields += "\n    name: Daily"
    path = write(tmp_path, f"schedules:\n  - {entry}\n    {fields}\n")
    report = await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT])
    assert report.created == []
    assert len(report.errors) == 1 and report.errors[0].startswith("schedules.yaml line 2: ")
    assert words in report.errors[0]
    assert await store.schedules.list_for_chat(CHAT) == []


async def test_the_service_refuses_a_name_with_a_nul_byte(service: ScheduleService) -> None:
    # The API and /new reach the same check.
    with pytest.raises(InvalidSchedule, match="control characters"):
        await service.create_schedule(
            CHAT,
            Owner(id=CHAT),
            name="Daily\x00brief",
            trigger=TriggerSpec(kind="interval", every_seconds=3600),
            action=Action(text="Hi."),
        )


async def test_the_same_id_in_two_chats_makes_the_file_unusable_and_applies_nothing(
    tmp_path: Path, service: ScheduleService, store: SqliteStore
) -> None:
    text = (
        "schedules:\n"
        "  - {id: s1, chat_id: 4242, name: One, every: 1d, remind: Hi.}\n"
        "  - {id: s1, chat_id: 5151, name: Two, every: 1d, remind: Hi.}\n"
    )
    path = write(tmp_path, text)
    report = await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT, OTHER])
    assert report.created == []
    assert report.unusable == (
        "schedules.yaml line 3: the id 's1' is already used on line 2; give each entry an id "
        "of its own (nothing was applied)."
    )
    assert (
        await store.schedules.list_for_chat(CHAT) == []
        and await store.schedules.list_for_chat(OTHER) == []
    )
    # An id another chat's schedule holds already refuses that entry alone.
    first, second = text.splitlines(keepends=True)[1:]
    write(tmp_path, "schedules:\n" + first)
    await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT, OTHER])
    write(tmp_path, "schedules:\n" + second)
    again = await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT, OTHER])
    assert again.created == [] and again.unusable is None
    assert again.errors == [
        "schedules.yaml line 2: The id 's1' is taken by another schedule; choose another id."
    ]
    assert [s.name for s in await store.schedules.list_for_chat(CHAT)] == ["One"]
    assert await store.schedules.list_for_chat(OTHER) == []


async def test_a_file_that_is_not_utf8_changes_nothing_and_names_the_line(
    tmp_path: Path, service: ScheduleService, store: SqliteStore
) -> None:
    path = write(tmp_path, GOOD)
    await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT])
    path.write_bytes(GOOD.replace("Mailing", "Mail\xffing").encode("latin-1"))
    report = await apply_schedules_file(path, service, now=service.clock.now(), chats=[CHAT])
    assert report.errors == [
        "schedules.yaml line 10: byte 0xff is not UTF-8 text; save the file as UTF-8 "
        "(nothing was changed)."
    ]
    assert (report.created, report.updated, report.disabled) == ([], [], [])
    assert all(s.enabled for s in (await by_id(store)).values())


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("schedules: [\n", 2),
        ("schedule:\n  - id: x\n", 1),
        ("schedules:\n  id: x\n", 2),
    ],
    ids=["not-yaml", "no-schedules-key", "not-a-list"],
)
def test_a_file_that_cannot_be_read_as_a_whole_is_unusable(text: str, line: int) -> None:
    with pytest.raises(UnusableFile, match=rf"^schedules\.yaml line {line}: "):
        parse_entries(text)


async def test_a_budget_is_a_policy_of_the_file_and_a_bad_one_is_one_sentence(
    tmp_path: Path, service: ScheduleService, store: SqliteStore
) -> None:
    text = """\
schedules:
  - id: nightly
    chat_id: 4242
    name: Nightly report
    cron: "0 2 * * *"
    prompt: Write the nightly report.
    policies: {budget_runs_per_week: 10, budget_tokens_per_week: 120000}
  - id: greedy
    chat_id: 4242
    name: Greedy
    cron: "0 3 * * *"
    prompt: Never.
    policies: {budget_runs_per_week: 0}
"""
    report = await apply_schedules_file(
        write(tmp_path, text), service, now=service.clock.now(), chats=[CHAT]
    )
    assert report.created == ["nightly"]
    [error] = report.errors
    assert error.endswith(
        "The runs budget must be a whole number per week from 1 to 100,000, or off."
    )
    policies = (await by_id(store))["nightly"].policies
    assert (policies.budget_runs_per_week, policies.budget_tokens_per_week) == (10, 120_000)


async def test_the_files_agents_list_sets_each_chats_agent_and_a_schedule_may_pin_a_model(
    tmp_path: Path,
    service: ScheduleService,
    store: SqliteStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHAT_4242_AGENT_SECRET", "from-the-environment-1234")
    text = (
        GOOD
        + """\
  - id: summary
    chat_id: 4242
    name: Summary
    every: 1d
    prompt: Summarise the day.
    policies:
      model: gpt-4.1
agents:
  - chat_id: 4242
    url: https://agent.example/hook
    mode: openai
    secret_env: CHAT_4242_AGENT_SECRET
    model: gpt-4o
  - chat_id: 4242
    url: ftp://agent.example/
  - chat_id: 777
    url: https://other.example/hook
"""
    )
    path = write(tmp_path, text)
    agents = ChatAgentService(store.agents, service.clock)
    report = await apply_schedules_file(
        path, service, now=service.clock.now(), chats=[CHAT], agents=agents
    )
    assert sorted(report.created) == ["backup", "daily-brief", "summary"]
    lines = text.splitlines()
    bad = lines.index("    url: ftp://agent.example/")
    assert report.errors == [
        f"schedules.yaml line {bad}: The agent URL must be an absolute http:// or https:// URL.",
        f"schedules.yaml line {bad + 2}: chat 777 is not in ADMIN_IDS, OPERATOR_IDS or "
        "API_CHAT_IDS.",
    ]
    agent = await agents.get(CHAT)
    assert agent is not None
    assert (agent.url, agent.mode, agent.secret, agent.model) == (
        "https://agent.example/hook",
        "openai",
        "from-the-environment-1234",
        "gpt-4o",
    )
    summary = (await by_id(store))["summary"]
    assert summary.policies.model == "gpt-4.1"
