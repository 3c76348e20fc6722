"""One validation for a schedule's policies: /edit's text values, schedules.yaml's
mapping and the models' own limits give the same answer and the same sentence."""

from __future__ import annotations

import pytest

from bot.schedules_file import parse_entries
from scheduler.errors import InvalidSchedule
from scheduler.models import Action, ActionKind, OverlapPolicy, Owner, Policies, RetryPolicy
from scheduler.policy_edits import edit_action, edit_policies, policies_from
from scheduler.service import ScheduleService, TriggerSpec
from storage.sqlite_store import SqliteStore

CHAT = 9


class TestTextValues:
    @pytest.mark.parametrize(
        ("name", "text", "path", "value"),
        [
            ("missed", "SKIP", ("missed_run",), "skip"),
            ("catchup", "1000", ("catch_up_cap",), 1000),
            ("overlap", "allow", ("overlap",), "allow"),
            ("attempts", "20", ("retry", "max_attempts"), 20),
            ("backoff", "90", ("retry", "base_seconds"), 90.0),
            ("backoff", "1.5m", ("retry", "base_seconds"), 90.0),
            ("backoff_cap", "24h", ("retry", "cap_seconds"), 86400.0),
            ("timeout", "45 seconds", ("timeout_seconds",), 45.0),
            ("on_timeout", "ask", ("timeout_policy",), "ask"),
            ("approval", "yes", ("requires_run_approval",), True),
        ],
    )
    def test_a_good_value_sets_only_its_setting(
        self, name: str, text: str, path: tuple[str, ...], value: object
    ) -> None:
        edited = edit_policies(Policies(), name, text).model_dump(mode="json")
        expected = Policies().model_dump(mode="json")
        target = expected
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
        assert edited == expected

    def test_the_bounds_in_the_sentence_are_the_models(self) -> None:
        with pytest.raises(
            InvalidSchedule, match=r"^Attempts must be a whole number from 1 to 20\.$"
        ):
            edit_policies(Policies(), "attempts", "0")
        with pytest.raises(InvalidSchedule, match="at most 1h"):
            edit_policies(Policies(), "timeout", "3601")

    def test_task_details_are_cleared_with_none(self) -> None:
        task = Action(kind=ActionKind.TASK, text="t", proof="link", assignee="Sam")
        assert edit_action(task, "proof", "none", max_instructions=10).proof is None
        assert edit_action(task, "assignee", " none ", max_instructions=10).assignee is None
        with pytest.raises(InvalidSchedule, match="the limit is 10"):
            edit_action(task, "instructions", "x" * 11, max_instructions=10)


def test_schedules_yaml_refuses_a_policy_with_the_chats_sentence() -> None:
    text = """\
schedules:
  - id: brief
    chat_id: 9
    name: Brief
    cron: "0 9 * * *"
    prompt: Prepare my brief.
    policies: {overlap: sometimes}
"""
    entries, errors = parse_entries(text)
    assert entries == []
    assert errors == ["schedules.yaml line 2: 'brief': Overlap must be skip, queue or allow."]
    with pytest.raises(InvalidSchedule) as caught:
        policies_from({"retry": {"max_attempts": 99}})
    assert str(caught.value) == "Attempts must be a whole number from 1 to 20."


async def test_change_setting_refuses_an_unknown_setting_and_keeps_the_schedule(
    service: ScheduleService, store: SqliteStore
) -> None:
    schedule = await service.create_schedule(
        CHAT,
        Owner(id=CHAT),
        name="Brief",
        trigger=TriggerSpec(kind="cron", cron="0 9 * * *"),
        action=Action(text="Prepare my brief."),
    )
    with pytest.raises(InvalidSchedule, match="There is no setting 'colour'"):
        await service.change_setting(CHAT, schedule.id, "colour", "red")
    with pytest.raises(InvalidSchedule, match=r"^Overlap must be skip, queue or allow\.$"):
        await service.change_setting(CHAT, schedule.id, "overlap", "sometimes")
    assert await store.schedules.get(CHAT, schedule.id) == schedule

    changed = await service.change_setting(CHAT, schedule.id, "overlap", "queue")
    assert changed.policies.overlap is OverlapPolicy.QUEUE
    assert await store.schedules.get(CHAT, schedule.id) == changed


async def test_a_backoff_cap_below_its_base_is_refused_wherever_it_is_set(
    service: ScheduleService, store: SqliteStore
) -> None:
    refusal = r"^The backoff cap \(15m\) must be at least the backoff base \(1h\);"
    schedule = await service.create_schedule(
        CHAT,
        Owner(id=CHAT),
        name="Brief",
        trigger=TriggerSpec(kind="cron", cron="0 9 * * *"),
        action=Action(text="Prepare my brief."),
    )
    # The default cap is 15 minutes: a base of an hour needs a larger cap first.
    with pytest.raises(InvalidSchedule, match=refusal):
        await service.change_setting(CHAT, schedule.id, "backoff", "1h")
    assert await store.schedules.get(CHAT, schedule.id) == schedule
    await service.change_setting(CHAT, schedule.id, "backoff_cap", "2h")
    changed = await service.change_setting(CHAT, schedule.id, "backoff", "1h")
    assert (changed.policies.retry.base_seconds, changed.policies.retry.cap_seconds) == (
        3600.0,
        7200.0,
    )

    upside_down = Policies(retry=RetryPolicy(base_seconds=3600, cap_seconds=900))
    with pytest.raises(InvalidSchedule, match=refusal):
        await service.update_schedule(CHAT, schedule.id, policies=upside_down)
    with pytest.raises(InvalidSchedule, match=refusal):
        await service.create_schedule(
            CHAT,
            Owner(id=CHAT),
            name="Other",
            trigger=TriggerSpec(kind="cron", cron="0 9 * * *"),
            action=Action(text="Other."),
            policies=upside_down,
        )
    with pytest.raises(InvalidSchedule, match=refusal):
        policies_from({"retry": {"base_seconds": 3600, "cap_seconds": 900}})
    assert [s.id for s in await store.schedules.list_for_chat(CHAT)] == [schedule.id]
