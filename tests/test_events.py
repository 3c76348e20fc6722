"""Event triggers (issue 20): `trigger.kind: event`, POST /api/v1/events/{name} over the
real HTTP API of the real bot on each store (SQLite file, PostgreSQL), the service's
one `emit_event`, the agent's emit_event tool, schedules.yaml and export/import."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.harness import ALICE, OLGA, start_bot, stop_bot
from bot.demo_kit.telegram_server import TelegramServer
from bot.http_api import openapi_document
from bot.schedules_file import parse_entries
from bot.views_schedules import schedule_card
from scheduler.agent_tools import AgentTools
from scheduler.dispatching import Dispatcher
from scheduler.engine import Engine
from scheduler.errors import InvalidSchedule, InvalidState
from scheduler.models import (
    Action,
    Owner,
    Policies,
    RetryPolicy,
    Run,
    RunStatus,
    RunTrigger,
    Schedule,
)
from scheduler.planning import manual_run
from scheduler.schedules_file import ApplyReport, apply_entries
from scheduler.service import FOLLOWERS_TTL, LifecycleFires, ScheduleService, TriggerSpec
from scheduler.triggers import AfterTrigger, EventTrigger, event_trigger, make_trigger
from storage.export import export_database, import_export, validate_export
from storage.sqlite_store import SqliteStore
from tests.test_http_api import AUTH, TOKEN, Api, eventually, free_port

OTHER_CHAT = 555_000_111  # allowed to the API token, yet not the caller's in the agent case
DEPLOY = TriggerSpec(kind="event", name="deploy")


# --- the trigger ---------------------------------------------------------------------------
def test_an_event_trigger_has_no_calendar() -> None:
    trigger = event_trigger("deploy")
    assert list(trigger.fires(datetime(2026, 1, 1, tzinfo=UTC))) == []
    assert trigger.next_after(datetime(2026, 1, 1, tzinfo=UTC)) is None
    assert trigger.describe() == "on the event 'deploy'"
    assert isinstance(make_trigger({"kind": "event", "name": "ci.done"}), EventTrigger)


@pytest.mark.parametrize("name", ["", "Deploy", "de ploy", "-x", "a" * 65, "déploy"])
def test_a_bad_event_name_is_one_sentence(name: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        make_trigger({"kind": "event", "name": name})
    assert str(caught.value).count(".") >= 1 and "\n" not in str(caught.value)
    assert caught.value.field == "trigger.name"


def test_schedules_yaml_takes_an_event_trigger() -> None:
    text = (
        "schedules:\n  - id: notes\n    chat_id: 1\n    name: Notes\n"
        "    trigger: {kind: event, name: deploy}\n    prompt: 'Deployed: {event}'\n"
    )
    [entry], errors = parse_entries(text)
    assert errors == [] and entry.trigger == TriggerSpec(
        kind="event", name="deploy", timezone="UTC"
    )
    bad = text.replace("kind: event", "kind: cron")
    entries, [error] = parse_entries(bad)
    assert entries == [] and "kind: event" in str(error)


# --- the HTTP API, on both stores ------------------------------------------------------------
@pytest_asyncio.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def api(
    request: pytest.FixtureRequest,
    telegram_server: TelegramServer,
    agent_stub: AgentStub,
    tmp_path: Path,
) -> AsyncIterator[Api]:
    """The real bot with its HTTP API on, its store SQLite or PostgreSQL."""
    settings: dict[str, Any] = {"api_token": TOKEN, "api_chat_ids": [OTHER_CHAT]}
    if request.param == "postgres":
        make: Callable[[], str] = request.getfixturevalue("make_postgres_url")
        settings["database_url"] = make()
    port = free_port()
    harness = await start_bot(
        telegram_server, agent_stub, tmp_path / "bot.db", http_port=port, **settings
    )
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            yield Api(harness, http)
    finally:
        await stop_bot(harness)


async def _listener(
    api: Api, chat: int, name: str, event: str = "deploy", prompt: str = "Deployed: {event}"
) -> Schedule:
    return await api.bot.services.service.create_schedule(
        chat,
        Owner(id=chat, first_name="Alice"),
        name=name,
        trigger=TriggerSpec(kind="event", name=event),
        action=Action(text=prompt),
    )


async def test_an_event_posted_twice_with_one_key_runs_each_listener_once(
    api: Api, agent_stub: AgentStub
) -> None:
    """The Must-show: two listeners in one chat, one in another chat the token reaches,
    one listening to another name, one paused; the event posted twice with one
    Idempotency-Key makes one run per active listener, and the repeat names the same."""
    first = await _listener(api, ALICE, "Release notes")
    second = await _listener(api, ALICE, "Changelog")
    elsewhere = await _listener(api, OLGA, "Ops log")
    other_name = await _listener(api, ALICE, "Backup check", event="backup")
    paused = await _listener(api, ALICE, "Paused notes")
    await api.bot.services.service.pause(ALICE, paused.id, by=None)
    for schedule in (first, second, elsewhere, other_name, paused):
        assert schedule.next_run_at is None

    payload = {"version": "1.4.2", "by": "ci"}
    headers = {"Idempotency-Key": "deploy-1.4.2"}
    status, body, _ = await api.call("POST", "/api/v1/events/deploy", json=payload, headers=headers)
    assert status == 201, body
    assert body["repeated"] is False and body["event"]["payload"] == payload
    fired = {run["schedule_id"]: run["id"] for run in body["runs"]}
    assert set(fired) == {first.id, second.id, elsewhere.id}
    assert {run["trigger"] for run in body["runs"]} == {"event"}

    status, again, _ = await api.call(
        "POST", "/api/v1/events/deploy", json=payload, headers=headers
    )
    assert status == 200, again
    assert again["repeated"] is True and again["event"]["id"] == body["event"]["id"]
    assert {run["schedule_id"]: run["id"] for run in again["runs"]} == fired

    store = api.bot.services.store

    async def all_succeeded() -> bool:
        runs = [
            *await store.runs.list_for_chat(ALICE, limit=100),
            *await store.runs.list_for_chat(OLGA, limit=100),
        ]
        return len(runs) == 3 and all(r.status is RunStatus.SUCCEEDED for r in runs)

    await eventually(all_succeeded, timeout=10)
    for schedule in (other_name, paused):
        assert await store.runs.list_for_chat(schedule.chat_id, schedule_id=schedule.id) == []
    # The engine sent each run once, with {event} as the payload's JSON.
    requests = await agent_stub.wait_for_requests(3)
    assert len(agent_stub.requests) == 3
    assert sorted(agent_stub.count_by_key().values()) == [1, 1, 1]
    sent = json.dumps(payload, separators=(",", ":"))
    for request in requests:
        assert request.json["message"]["text"] == f"Deployed: {sent}"

    # Without a key, each post is a new event: a new run per listener.
    status, fresh, _ = await api.call("POST", "/api/v1/events/deploy")
    assert status == 201 and fresh["event"]["payload"] == {}
    assert len(fresh["runs"]) == 3 and not set(r["id"] for r in fresh["runs"]) & set(fired.values())


async def test_an_event_asks_first_for_a_schedule_whose_runs_need_approval(
    api: Api, agent_stub: AgentStub
) -> None:
    """Nobody in the chat asked for an event's run: a posted event must not get round
    `requires_run_approval`. The run waits with the chat's Approve/Skip card."""
    guarded = await api.bot.services.service.create_schedule(
        ALICE,
        Owner(id=ALICE, first_name="Alice"),
        name="Deploy to prod",
        trigger=TriggerSpec(kind="event", name="release"),
        action=Action(text="Ship {event}"),
        policies=Policies(requires_run_approval=True),
    )
    status, body, _ = await api.call("POST", "/api/v1/events/release", json={"v": 2})
    assert status == 201, body
    [fired] = body["runs"]
    assert fired["status"] == "awaiting_approval"
    card = await api.bot.alice.wait_reply(containing="Deploy to prod")
    assert card.button_labels() == ["Approve", "Skip"]
    await asyncio.sleep(0.3)
    assert agent_stub.requests == []  # nothing went out before the approval

    await api.bot.alice.press("Approve", card)
    store = api.bot.services.store

    async def succeeded() -> bool:
        run = await store.runs.get(ALICE, fired["id"])
        return run is not None and run.status is RunStatus.SUCCEEDED

    await eventually(succeeded, timeout=10)
    [request] = agent_stub.requests
    assert request.json["message"]["text"] == 'Ship {"v":2}'
    assert guarded.id == fired["schedule_id"]


async def test_two_events_at_one_instant_each_fire_their_own_run(api: Api) -> None:
    """The engine's clock is still (a fake one): both events land on the same instant,
    yet each gets its own run (the instant is a run's idempotency key)."""
    listener = await _listener(api, ALICE, "Release notes")
    _, one, _ = await api.call("POST", "/api/v1/events/deploy", headers={"Idempotency-Key": "a"})
    _, two, _ = await api.call("POST", "/api/v1/events/deploy", headers={"Idempotency-Key": "b"})
    [run_one], [run_two] = one["runs"], two["runs"]
    assert run_one["id"] != run_two["id"] and run_one["scheduled_for"] != run_two["scheduled_for"]
    store = api.bot.services.store

    async def both_sent() -> bool:
        runs = await store.runs.list_for_chat(ALICE, schedule_id=listener.id)
        return len(runs) == 2 and all(r.status is RunStatus.SUCCEEDED for r in runs)

    await eventually(both_sent, timeout=10)


@pytest.mark.parametrize(
    ("path", "body", "words", "status"),
    [
        ("/api/v1/events/Deploy!", None, "event name", 422),
        ("/api/v1/events/deploy", "[1, 2]", "JSON object", 422),
        ("/api/v1/events/deploy", "{nope", "Malformed JSON", 422),
        ("/api/v1/events/deploy", json.dumps({"log": "x" * 9000}), "limit is 8000", 422),
        ("/api/v1/events/deploy", json.dumps({"log": "x" * 70_000}), "larger than 64 KiB", 413),
    ],
)
async def test_bad_input_is_one_sentence_and_changes_nothing(
    api: Api, path: str, body: str | None, words: str, status: int
) -> None:
    listener = await _listener(api, ALICE, "Release notes")
    got, answer, _ = await api.call(
        "POST", path, data=body, headers={"Content-Type": "application/json"}
    )
    assert got == status, answer
    assert words in answer["error"] and answer["error"].count("\n") == 0
    assert await api.bot.services.store.runs.list_for_chat(ALICE, schedule_id=listener.id) == []


async def test_the_event_endpoint_needs_the_token_and_is_in_the_openapi_document(
    api: Api,
) -> None:
    status, _, _ = await api.call("POST", "/api/v1/events/deploy", auth=False)
    assert status == 401
    assert "/api/v1/events/{name}" in openapi_document()["paths"]
    assert AUTH["Authorization"].endswith(TOKEN)


async def test_a_key_reused_for_another_event_is_a_conflict(api: Api) -> None:
    await _listener(api, ALICE, "Release notes")
    headers = {"Idempotency-Key": "k1"}
    assert (await api.call("POST", "/api/v1/events/deploy", headers=headers))[0] == 201
    status, answer, _ = await api.call("POST", "/api/v1/events/backup", headers=headers)
    assert status == 409 and "'deploy'" in answer["error"]


# --- the service and the agent tool (SQLite file) -------------------------------------------
async def test_the_agent_emits_an_event_in_its_own_chat_only(
    service: ScheduleService, store: SqliteStore
) -> None:
    mine = await service.create_schedule(
        1, Owner(id=1), name="Notes", trigger=DEPLOY, action=Action(text="{event}")
    )
    theirs = await service.create_schedule(
        2, Owner(id=2), name="Notes", trigger=DEPLOY, action=Action(text="{event}")
    )
    tools = AgentTools(service, proposals=None)  # type: ignore[arg-type]
    call = {
        "function": {
            "name": "emit_event",
            "arguments": json.dumps({"name": "deploy", "idempotency_key": "x", "payload": {}}),
        }
    }
    answer = json.loads(await tools.call(1, call))
    assert answer["ok"] and [r["schedule_id"] for r in answer["runs"]] == [mine.id]
    again = json.loads(await tools.call(1, call))
    assert again["repeated"] and again["runs"] == answer["runs"]
    # The same key in another chat is that chat's own event.
    other = json.loads(await tools.call(2, call))
    assert not other["repeated"] and [r["schedule_id"] for r in other["runs"]] == [theirs.id]
    [run] = await store.runs.list_for_chat(1)
    assert run.trigger is RunTrigger.EVENT and run.status is RunStatus.PENDING
    bad = json.loads(await tools.call(1, {"function": {"name": "emit_event", "arguments": "{}"}}))
    assert not bad["ok"] and "'name' is required" in bad["error"]


async def test_an_archived_or_tripped_listener_does_not_fire(
    service: ScheduleService, store: SqliteStore
) -> None:
    archived = await service.create_schedule(
        1, Owner(id=1), name="Gone", trigger=DEPLOY, action=Action(text="x")
    )
    await service.archive(1, archived.id)
    emitted = await service.emit_event([1], "deploy", {"a": 1}, caller="api")
    assert emitted.runs == [] and emitted.event.payload == {"a": 1}
    with pytest.raises(InvalidSchedule):
        await service.emit_event([1], "deploy", "text", caller="api")
    with pytest.raises(InvalidSchedule):
        await service.emit_event([1], "deploy", None, caller="api", idempotency_key="a b")
    await service.emit_event([1], "deploy", None, caller="api", idempotency_key="k")
    with pytest.raises(InvalidState):
        await service.emit_event([1], "other", None, caller="api", idempotency_key="k")


async def test_export_and_import_carry_events_and_their_runs(
    service: ScheduleService, store: SqliteStore, tmp_path: Path
) -> None:
    await service.create_schedule(
        1, Owner(id=1), name="Notes", trigger=DEPLOY, action=Action(text="{event}")
    )
    emitted = await service.emit_event([1], "deploy", {"v": 2}, caller="api", idempotency_key="k")
    folder = tmp_path / "export"
    counts = await export_database(tmp_path / "tickler.db", folder)
    assert counts["events"] == 1 and counts["event_runs"] == 1
    assert validate_export(folder) == []
    target = tmp_path / "copy.db"
    await import_export(folder, target)
    copy = await SqliteStore.open(target)
    try:
        copied = ScheduleService(copy, service.clock)
        again = await copied.emit_event([1], "deploy", {"v": 2}, caller="api", idempotency_key="k")
        assert again.repeated and [r.id for r in again.runs] == [r.id for r in emitted.runs]
        assert await copy.engine.event_payload(emitted.runs[0].id) == '{"v":2}'
    finally:
        await copy.close()
    # An export made before events existed has no such files, and imports fine.
    for name in ("events.jsonl", "event_runs.jsonl"):
        (folder / name).unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["counts"]["events"], manifest["counts"]["event_runs"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert validate_export(folder) == []
    await import_export(folder, tmp_path / "old.db")


async def test_show_renders_an_event_trigger(service: ScheduleService) -> None:
    schedule = await service.create_schedule(
        1, Owner(id=1), name="Notes", trigger=DEPLOY, action=Action(text="{event}")
    )
    card = schedule_card(schedule, service.clock.now(), None)
    assert "When: on the event 'deploy'" in card
    assert "Next fires: at each 'deploy' event (POST /api/v1/events/deploy" in card
    assert "will not fire again" not in card


# --- lifecycle: startup and after (chains) ---------------------------------------------------
def _engine(
    store: SqliteStore, service: ScheduleService, clock: FakeClock, dispatcher: Dispatcher
) -> Engine:
    engine = Engine(store.engine, clock, dispatcher, rng=random.Random(7))
    engine.lifecycle = LifecycleFires(service, [1])
    return engine


async def test_startup_schedules_fire_once_per_process_start(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
) -> None:
    boot = await service.create_schedule(
        1,
        Owner(id=1),
        name="Boot check",
        trigger=TriggerSpec(kind="startup"),
        action=Action(text="Tickler started: {event}"),
    )
    paused = await service.create_schedule(
        1, Owner(id=1), name="Off", trigger=TriggerSpec(kind="startup"), action=Action(text="x")
    )
    await service.pause(1, paused.id, by=None)
    assert boot.next_run_at is None and boot.trigger.describe() == "at each start of Tickler"
    first = _engine(store, service, clock, dispatcher)
    await first.run_until_idle()
    await first.startup()  # already started: nothing more
    await first.run_until_idle()
    [run] = await store.runs.list_for_chat(1, schedule_id=boot.id)
    assert run.status is RunStatus.SUCCEEDED and run.trigger is RunTrigger.EVENT
    assert first.instance_id in agent_stub.requests[0].json["message"]["text"]
    # The next process start fires it again, once.
    await _engine(store, service, clock, dispatcher).run_until_idle()
    assert len(await store.runs.list_for_chat(1, schedule_id=boot.id)) == 2
    assert await store.runs.list_for_chat(1, schedule_id=paused.id) == []
    assert len(agent_stub.requests) == 2
    # Those were the two starts' only events: the finished runs, which nothing follows,
    # wrote none.
    assert await _event_count(store) == 2


async def _event_count(store: SqliteStore) -> int:
    async with store.connection.read() as db:
        [(count,)] = await db.execute_fetchall("SELECT count(*) FROM events")
    return int(count)


async def test_after_schedules_chain_on_the_outcome_once_per_upstream_run(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
) -> None:
    upstream = await service.create_schedule(
        1,
        Owner(id=1),
        name="Build",
        trigger=TriggerSpec(kind="cron", cron="0 9 * * *"),
        action=Action(text="Build."),
        policies=Policies(retry=RetryPolicy(max_attempts=1)),
    )

    async def follower(on: str) -> Schedule:
        return await service.create_schedule(
            1,
            Owner(id=1),
            name=f"On {on}",
            trigger=TriggerSpec.model_validate(
                {"kind": "after", "schedule": upstream.id, "on": on}
            ),
            action=Action(text="After: {event}"),
        )

    success = await follower("success")
    failure = await follower("failure")
    either = await follower("any")
    assert success.trigger.describe() == f"after schedule {upstream.id} succeeds"
    engine = _engine(store, service, clock, dispatcher)

    async def runs_of(schedule: Schedule) -> list[Run]:
        return await store.runs.list_for_chat(1, schedule_id=schedule.id)

    ok = await service.run_now(1, upstream.id)
    await engine.run_until_idle()
    await engine.run_until_idle()
    assert [len(await runs_of(s)) for s in (success, failure, either)] == [1, 0, 1]
    [chained] = await runs_of(success)
    assert chained.status is RunStatus.SUCCEEDED
    texts = [r.json["message"]["text"] for r in agent_stub.requests]
    assert sum(ok.id in text for text in texts) == 2  # {event} names the upstream run
    # Once per upstream run: asking again (a second engine, a retry) fires nothing.
    finished = await store.runs.get(1, ok.id)
    assert finished is not None
    again = await service.fire_after(finished, upstream)
    assert again is not None and again.repeated

    agent_stub.respond_with(500)
    await clock.advance(timedelta(minutes=1))
    await service.run_now(1, upstream.id)
    await engine.run_until_idle()
    agent_stub.respond_with(200)
    await engine.run_until_idle()
    assert [len(await runs_of(s)) for s in (success, failure, either)] == [1, 1, 2]


def test_schedules_yaml_takes_startup_and_after_triggers() -> None:
    text = (
        "schedules:\n  - id: boot\n    chat_id: 1\n    name: Boot\n"
        "    trigger: {kind: startup}\n    prompt: hi\n"
        "  - id: next\n    chat_id: 1\n    name: Next\n"
        "    trigger: {kind: after, schedule: boot, on: failure}\n    prompt: hi\n"
    )
    entries, errors = parse_entries(text)
    assert errors == []
    assert [e.trigger.kind for e in entries] == ["startup", "after"]
    assert entries[1].trigger.schedule == "boot" and entries[1].trigger.on == "failure"
    _, [error] = parse_entries(text.replace("on: failure", "on: sometimes"))
    assert "success, failure or any" in error


async def test_an_after_trigger_names_a_schedule_of_the_chat_as_typed_and_never_itself(
    service: ScheduleService,
) -> None:
    upstream = await service.create_schedule(
        1,
        Owner(id=1),
        name="Build",
        trigger=TriggerSpec(kind="cron", cron="0 9 * * *"),
        action=Action(text="Build."),
    )

    def after(ref: str) -> TriggerSpec:
        return TriggerSpec.model_validate({"kind": "after", "schedule": ref, "on": "success"})

    follower = await service.create_schedule(
        1, Owner(id=1), name="Deploy", trigger=after(upstream.ref), action=Action(text="Go.")
    )
    # Stored by id: renumbering or a new #1 elsewhere never moves the chain.
    assert isinstance(follower.trigger, AfterTrigger)
    assert follower.trigger.schedule == upstream.id
    before = await service.store.schedules.list_for_chat(1)
    with pytest.raises(InvalidSchedule, match="no schedule '#9' in this chat to follow"):
        await service.create_schedule(
            1, Owner(id=1), name="X", trigger=after("#9"), action=Action(text="Go.")
        )
    with pytest.raises(InvalidSchedule, match=r"no schedule .* in this chat"):
        # Another chat's schedule is not there to follow.
        await service.create_schedule(
            2, Owner(id=2), name="X", trigger=after(upstream.id), action=Action(text="Go.")
        )
    with pytest.raises(InvalidSchedule, match="cannot follow its own runs"):
        await service.update_schedule(1, follower.id, trigger=after(follower.id))
    third = await service.create_schedule(
        1, Owner(id=1), name="Notify", trigger=after(follower.id), action=Action(text="Tell.")
    )
    before = await service.store.schedules.list_for_chat(1)
    # Build → Deploy → Notify; Build after Notify would fire round the loop forever.
    with pytest.raises(InvalidSchedule, match=f"loop: {third.ref} already runs after this"):
        await service.update_schedule(1, upstream.id, trigger=after(third.ref))
    assert await service.store.schedules.list_for_chat(1) == before


async def test_schedules_yaml_may_name_a_later_entry_as_the_one_followed(
    service: ScheduleService,
) -> None:
    text = (
        "schedules:\n  - id: deploy-checks\n    chat_id: 1\n    name: Checks\n"
        "    trigger: {kind: after, schedule: deploy}\n    prompt: check\n"
        "  - id: deploy\n    chat_id: 1\n    name: Deploy\n"
        "    trigger: {kind: event, name: deploy}\n    prompt: hi\n"
    )
    entries, errors = parse_entries(text)
    report = await apply_entries(entries, service, ApplyReport(errors=errors), chats={1}, text=text)
    assert report.errors == []
    assert sorted(report.created) == ["deploy", "deploy-checks"]


async def test_a_follower_made_by_another_replica_is_seen_within_the_ttl(
    store: SqliteStore,
) -> None:
    """Every finished run asks who follows its schedule; the answer is kept per chat
    for FOLLOWERS_TTL, cleared by this process's own changes, so another replica's new
    follower starts being fired within that time (and no run scans the chat's schedules)."""
    elapsed = [0.0]
    clock = FakeClock(datetime(2026, 11, 23, 8, 0, tzinfo=UTC), monotonic=lambda: elapsed[0])
    here, there = ScheduleService(store, clock), ScheduleService(store, clock)
    upstream = await here.create_schedule(
        1,
        Owner(id=1),
        name="Build",
        trigger=TriggerSpec(kind="cron", cron="0 9 * * *"),
        action=Action(text="Build."),
    )
    ok = manual_run(upstream, clock.now()).model_copy(update={"status": RunStatus.SUCCEEDED})
    assert await here.fire_after(ok, upstream) is None  # nobody follows it (yet)
    await there.create_schedule(
        1,
        Owner(id=1),
        name="Deploy",
        trigger=TriggerSpec.model_validate({"kind": "after", "schedule": upstream.id}),
        action=Action(text="Deploy."),
    )
    assert await here.fire_after(ok, upstream) is None  # not seen yet by this replica
    elapsed[0] += FOLLOWERS_TTL
    fired = await here.fire_after(ok, upstream)
    assert fired is not None and len(fired.runs) == 1
    # This replica's own new follower is seen at once.
    await here.create_schedule(
        1,
        Owner(id=1),
        name="Notify",
        trigger=TriggerSpec.model_validate({"kind": "after", "schedule": upstream.id}),
        action=Action(text="Tell."),
    )
    second = manual_run(upstream, clock.now()).model_copy(update={"status": RunStatus.SUCCEEDED})
    fired = await here.fire_after(second, upstream)
    assert fired is not None and len(fired.runs) == 2
