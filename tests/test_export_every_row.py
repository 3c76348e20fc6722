"""Export, validate-export and import through the CLI over a database that holds every
kind of row, after real runs in each agent mode: openai mode records token usage
(`prompt_tokens`, ...), which is a count and exports as it is, while credentials (the
configured agent token, a bot-token-shaped string in an agent's answer) never leave."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from scheduler.bundles import BundleService
from scheduler.chat_agents import ChatAgentService
from scheduler.engine import Engine, EngineConfig
from scheduler.models import Action, ActionKind, Owner, RunStatus, Step, StepKind
from scheduler.repositories import Notification
from scheduler.service import ScheduleService, TriggerSpec
from scheduler.sinks import SinkService
from scheduler.work_items import WorkItemService
from storage.database import open_database
from storage.sqlite_store import SqliteStore
from tests.test_backup import cli_env, tickler
from tests.test_export import add_proposal, read

AGENT_TOKEN = "agent-token-3f9c1b7e5d2a4c6e8f0b1d3a5c7e9f1b"
BOT_TOKEN_IN_OUTPUT = "123456789:AAH_exampleexampleexampleexample12345"
SINK_SECRET = "sinkkey-9c1b7e5d2a4c6e8f0b1d3a5c7e9f1b3d"
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


@pytest.fixture(params=["telegram", "openai"])
async def mode_dispatcher(
    request: pytest.FixtureRequest, agent_stub: AgentStub
) -> AsyncIterator[tuple[str, HttpAgentDispatcher]]:
    if request.param == "openai":
        agent_stub.openai_answer(f"Done; the bot uses {BOT_TOKEN_IN_OUTPUT}.", usage=USAGE)
        dispatcher = HttpAgentDispatcher(
            url=agent_stub.openai_url, mode="openai", token=AGENT_TOKEN, model="agent-1"
        )
    else:
        dispatcher = HttpAgentDispatcher(url=agent_stub.url, secret=AGENT_TOKEN)
    yield request.param, dispatcher
    await dispatcher.aclose()


CHAT_AGENT_SECRET = "chat-agent-secret-31337"


async def fill(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    dispatcher: HttpAgentDispatcher,
    agent_stub: AgentStub,
    db_path: Path,
) -> None:
    """Schedules of each trigger and action kind, real runs (succeeded, failed with
    retries), runs of every other status with their attempts, an event and its run,
    proposals, work items and their comments, notifications and a chat."""
    owner = Owner(id=1, first_name="Ada")
    agent = await service.create_schedule(
        7,
        owner,
        name="Daily brief",
        trigger=TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin"),
        action=Action(text="brief me"),
    )
    reminder = await service.create_schedule(
        7,
        owner,
        name="Stretch",
        trigger=TriggerSpec(kind="interval", every_seconds=3600),
        action=Action(kind=ActionKind.REMINDER, text="Stand up and stretch."),
    )
    task = await service.create_schedule(
        7,
        owner,
        name="Back up",
        trigger=TriggerSpec(kind="once", at=clock.now() + timedelta(days=2)),
        action=Action(kind=ActionKind.TASK, text="Back up the list"),
    )
    deploy = await service.create_schedule(
        7,
        owner,
        name="Release notes",
        trigger=TriggerSpec(kind="event", name="deploy"),
        action=Action(text="Deployed: {event}"),
    )
    newsletter = await service.create_schedule(
        7,
        owner,
        name="Newsletter",
        trigger=TriggerSpec(kind="cron", cron="0 9 * * 2", timezone="Europe/Berlin"),
        action=Action(
            kind=ActionKind.BUNDLE,
            lead_days=7,
            steps=(
                Step(kind=StepKind.TASK, title="Collect links", offset_days=-6, proof="link"),
                Step(kind=StepKind.AGENT, title="Intro", text="Draft the intro.", offset_days=-1),
            ),
        ),
    )
    await service.set_chat_timezone(7, "Europe/Berlin")
    work_items = WorkItemService(store.work_items, clock)
    engine = Engine(
        store.engine,
        clock,
        dispatcher,
        config=EngineConfig(),
        tasks=work_items,
        bundles=BundleService(store, clock, work_items),
    )
    for schedule in (agent, reminder, task, newsletter):
        await service.run_now(7, schedule.id)
    fired = await service.emit_event([7], "deploy", {"version": "1.4"}, caller="api")
    assert [r.schedule_id for r in fired.runs] == [deploy.id]
    await engine.run_until_idle()
    agent_stub.respond_with(500)
    await clock.advance(timedelta(minutes=1))
    await service.run_now(7, agent.id)
    await engine.run_until_idle()
    await engine.shutdown()
    await add_proposal(db_path, "p1", agent.id)
    items = WorkItemService(store.work_items, clock)
    item = await items.add_followup(
        7, "Ask Sponsor X", clock.now() + timedelta(days=1), actor="ada"
    )
    await items.followup_sent(item, clock.now() + timedelta(days=2), actor="ada", note="asked")
    # A sink whose signing key no export for people carries.
    sinks = SinkService(store.sinks, clock.now, lambda: SINK_SECRET)
    await sinks.add(7, "webhook", "https://example.com/hook", events="failed")
    await store.outbox.queue(
        [Notification("n1", 7, "followup", "⏰ Follow-up due", clock.now(), item_id=item.id)]
    )
    db = await open_database(db_path)
    try:
        # The statuses the engine did not reach here, each a copy of a real run with an
        # attempt of its own.
        [template] = await db.execute_fetchall(
            "SELECT id FROM runs WHERE status = 'succeeded' "
            "ORDER BY token_usage_json IS NULL, id LIMIT 1"
        )
        for n, status in enumerate(RunStatus):
            await db.execute(
                "INSERT INTO runs (id, schedule_id, chat_id, scheduled_for, trigger, status, "
                "attempt, output, error, token_usage_json, created_at, updated_at) SELECT "
                "?, schedule_id, chat_id, strftime('%Y-%m-%dT%H:%M:%S.000000Z', "
                "scheduled_for, ?), trigger, ?, attempt, output, error, token_usage_json, "
                "created_at, updated_at FROM runs WHERE id = ?",
                (f"copy{n:02d}", f"-{n + 1} days", status.value, template[0]),
            )
            await db.execute(
                "INSERT INTO run_attempts (run_id, attempt, owner, started_at, finished_at, "
                "status, error) VALUES (?, 1, 'engine-1', '2026-11-23T07:00:00.000000Z', "
                "'2026-11-23T07:00:01.000000Z', ?, NULL)",
                (f"copy{n:02d}", status.value),
            )
    finally:
        await db.close()


async def test_cli_export_after_runs_validates_and_reimports_byte_identical(
    service: ScheduleService,
    store: SqliteStore,
    clock: FakeClock,
    mode_dispatcher: tuple[str, HttpAgentDispatcher],
    agent_stub: AgentStub,
    db_path: Path,
    tmp_path: Path,
) -> None:
    mode, dispatcher = mode_dispatcher
    await fill(service, store, clock, dispatcher, agent_stub, db_path)
    # A chat's own agent: exported without its secret.
    await ChatAgentService(store.agents, clock).update(
        1, url="https://agent.example/hook", mode="openai", secret=CHAT_AGENT_SECRET
    )
    env = cli_env(db_path, AGENT_TOKEN=AGENT_TOKEN)
    first, second = tmp_path / "first", tmp_path / "second"
    code, _, err = await tickler("export", str(first), env=env)
    assert (code, err) == (0, ""), err
    assert await tickler("validate-export", str(first), env=env) == (0, "ok\n", "")

    restored = {**env, "DATABASE_PATH": str(tmp_path / "restored.db")}
    code, _, err = await tickler("import", str(first), env=restored)
    assert (code, err) == (0, ""), err
    code, _, err = await tickler("export", str(second), env=restored)
    assert (code, err) == (0, ""), err
    assert read(second) == read(first)

    exported = b"".join(read(first).values()).decode()
    runs = [json.loads(line) for line in (first / "runs.jsonl").read_text().splitlines()]
    assert {r["status"] for r in runs} == {s.value for s in RunStatus}
    kinds = [json.loads(line) for line in (first / "schedules.jsonl").read_text().splitlines()]
    assert sorted((s["trigger"]["kind"], s["action"]["kind"]) for s in kinds) == [
        ("cron", "agent"),
        ("cron", "bundle"),
        ("event", "agent"),
        ("interval", "reminder"),
        ("once", "agent"),  # the bundle's prompt step
        ("once", "task"),
    ]
    counts = json.loads((first / "manifest.json").read_text())["counts"]
    assert all(counts[name] > 0 for name in counts), counts
    assert AGENT_TOKEN not in exported and BOT_TOKEN_IN_OUTPUT not in exported
    assert CHAT_AGENT_SECRET not in exported
    assert SINK_SECRET not in exported
    [sink] = [json.loads(line) for line in (first / "sinks.jsonl").read_text().splitlines()]
    assert "secret" not in sink and sink["target"] == "https://example.com/hook"
    if mode == "openai":
        assert USAGE in [r["usage"] for r in runs]
        assert any("[redacted]" in (r["output"] or "") for r in runs)
