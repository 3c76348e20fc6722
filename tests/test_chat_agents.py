"""Per-chat agents: each chat's runs reach only its own agent (two real agent stubs on
127.0.0.1, a real SQLite file, the engine driven by a fake clock)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.agent_routing import AgentSpec, ChatRoutingDispatcher, resolve
from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub, refused_url
from scheduler.chat_agents import ChatAgent, ChatAgentService, InvalidAgent, mask_secret
from scheduler.engine import Engine, EngineConfig
from scheduler.models import Action, Owner, Policies, RunStatus
from scheduler.service import ScheduleService, TriggerSpec
from storage.export import export_database, import_export
from storage.sqlite_store import SqliteStore

ANN, BOB = 1001, -2002
HOURLY = TriggerSpec(kind="cron", cron="0 * * * *", timezone="UTC")
#: Every chat without an agent of its own would go here, and fail: nothing may.
NOWHERE = AgentSpec(
    url=refused_url(), mode="telegram", secret="default-secret", token=None, model="default-model"
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def hourly(service: ScheduleService, chat: int, n: int, **policies: object) -> list[str]:
    ids = []
    for i in range(n):
        schedule = await service.create_schedule(
            chat,
            Owner(id=abs(chat), first_name="Op"),
            name=f"Hourly {i}",
            trigger=HOURLY,
            action=Action(text=f"Check feed {i} of chat {chat}"),
            policies=Policies(**policies),
        )
        ids.append(schedule.id)
    return ids


async def test_each_chats_runs_reach_only_its_own_agent(
    store: SqliteStore, clock: FakeClock, service: ScheduleService
) -> None:
    agents = ChatAgentService(store.agents, clock)
    async with AgentStub() as ann_agent, AgentStub() as bob_agent:
        await agents.update(ANN, url=ann_agent.url, secret="ann-secret-123456")
        await agents.update(
            BOB, url=bob_agent.openai_url, mode="openai", secret="bob-token-123456", model="bob-m"
        )
        owner = {sid: ANN for sid in await hourly(service, ANN, 25)}
        owner |= {sid: BOB for sid in await hourly(service, BOB, 25)}
        routing = ChatRoutingDispatcher(NOWHERE, store.agents)
        engine = Engine(store.engine, clock, routing, config=EngineConfig(), rng=random.Random(7))
        start = clock.now().replace(minute=0, second=0, microsecond=0)
        for hour in range(1, 21):  # 20 hours x 50 schedules: 1,000 runs
            await clock.set(start + timedelta(hours=hour))
            await engine.run_until_idle()
        await engine.shutdown()
        await routing.aclose()

        cross = 0
        for request in ann_agent.requests:
            sid = request.headers["idempotency-key"].split(":")[0]
            cross += owner[sid] != ANN or request.json["message"]["chat"]["id"] != ANN
            assert request.headers["x-telegram-bot-api-secret-token"] == "ann-secret-123456"
        for request in bob_agent.requests:
            sid = request.headers["idempotency-key"].split(":")[0]
            cross += owner[sid] != BOB
            assert request.headers["authorization"] == "Bearer bob-token-123456"
            assert request.json["model"] == "bob-m"
        assert cross == 0
        assert (len(ann_agent.requests), len(bob_agent.requests)) == (500, 500)
        ann_keys, bob_keys = ann_agent.count_by_key(), bob_agent.count_by_key()
        assert len(ann_keys) == len(bob_keys) == 500  # each fire once, under its own key
        assert not set(ann_keys) & set(bob_keys)
        for chat in (ANN, BOB):
            runs = await store.runs.list_for_chat(chat, limit=1000)
            assert {r.status for r in runs} == {RunStatus.SUCCEEDED}
            assert len(runs) == 500


async def test_a_schedules_pinned_model_reaches_the_agent(
    store: SqliteStore, clock: FakeClock, service: ScheduleService
) -> None:
    agents = ChatAgentService(store.agents, clock)
    async with AgentStub() as agent:
        await agents.update(BOB, url=agent.openai_url, mode="openai", model="chat-model")
        [pinned] = await hourly(service, BOB, 1, model="pinned-model")
        [plain] = await hourly(service, BOB, 1)
        routing = ChatRoutingDispatcher(NOWHERE, store.agents)
        engine = Engine(store.engine, clock, routing, config=EngineConfig())
        await clock.set(clock.now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1))
        await engine.run_until_idle()
        await engine.shutdown()
        await routing.aclose()
        models = {
            r.headers["idempotency-key"].split(":")[0]: r.json["model"] for r in agent.requests
        }
        assert models == {pinned: "pinned-model", plain: "chat-model"}


async def test_a_chat_with_its_own_url_never_gets_the_default_secret() -> None:
    default = AgentSpec(
        url="https://agent.example/hook", mode="telegram", secret="s", token="t", model="m"
    )
    assert resolve(default, None) == default
    own = resolve(default, ChatAgent(1, url="https://other.example/hook"))
    assert (own.secret, own.token, own.model) == (None, None, "m")
    same = resolve(default, ChatAgent(1, model="x"))
    assert (same.url, same.secret, same.token, same.model) == (default.url, "s", "t", "x")


@pytest.mark.parametrize(
    ("field", "value", "sentence"),
    [
        (
            "url",
            "ftp://agent.example/",
            "The agent URL must be an absolute http:// or https:// URL.",
        ),
        ("url", "agent.example/hook", "The agent URL must be an absolute http:// or https:// URL."),
        (
            "url",
            "https://user:pw@agent.example/",
            "The agent URL may not carry a user or password; set the credential with "
            "/agent secret instead.",
        ),
        ("mode", "grpc", "The agent mode must be telegram or openai."),
        ("secret", "two words", "The secret must be 1 to 256 characters without spaces."),
        ("model", "x" * 101, "The model must be a name of 1 to 100 characters without spaces."),
    ],
)
async def test_a_bad_setting_is_one_sentence_and_changes_nothing(
    store: SqliteStore, clock: FakeClock, field: str, value: str, sentence: str
) -> None:
    agents = ChatAgentService(store.agents, clock)
    await agents.update(ANN, url="https://agent.example/hook")
    with pytest.raises(InvalidAgent) as caught:
        await agents.update(ANN, **{field: value})
    assert str(caught.value) == sentence
    kept = await agents.get(ANN)
    assert kept is not None and (kept.url, kept.mode, kept.secret) == (
        "https://agent.example/hook",
        None,
        None,
    )


async def test_reset_goes_back_to_the_default_agent(store: SqliteStore, clock: FakeClock) -> None:
    agents = ChatAgentService(store.agents, clock)
    await agents.update(ANN, url="https://agent.example/hook", secret="abcdefgh12345678")
    assert mask_secret("abcdefgh12345678") == "••••5678"
    assert [a.chat_id for a in await agents.all()] == [ANN]
    assert await agents.reset(ANN)
    assert await agents.get(ANN) is None
    assert not await agents.reset(ANN)


async def test_an_export_leaves_the_chats_secret_out_and_migrate_store_keeps_it(
    store: SqliteStore, clock: FakeClock, db_path: Path, tmp_path: Path
) -> None:
    agents = ChatAgentService(store.agents, clock)
    await agents.update(ANN, url="https://agent.example/hook", secret="ann-secret-123456")
    await export_database(db_path, tmp_path / "people")
    text = (tmp_path / "people" / "chat_agents.jsonl").read_text()
    assert "ann-secret-123456" not in text
    assert json.loads(text) == {
        "chat_id": ANN,
        "url": "https://agent.example/hook",
        "mode": None,
        "model": None,
        "updated_at": "2026-11-23T07:00:00Z",
    }  # the secret's key is left out

    await export_database(db_path, tmp_path / "verbatim", verbatim=True)
    fresh = tmp_path / "fresh.db"
    await import_export(tmp_path / "verbatim", fresh, verbatim=True)
    async with await SqliteStore.open(fresh) as moved:
        kept = await moved.agents.get(ANN)
    assert kept is not None and kept.secret == "ann-secret-123456"


async def test_the_chats_secrets_are_handed_to_the_log_redactor_when_read(
    store: SqliteStore, clock: FakeClock
) -> None:
    await ChatAgentService(store.agents, clock).update(ANN, secret="ann-secret-123456")
    told: list[str | None] = []
    routing = ChatRoutingDispatcher(NOWHERE, store.agents, on_secrets=told.extend)
    spec = await routing.spec_for(ANN)
    assert (spec.url, spec.secret) == (NOWHERE.url, "ann-secret-123456")
    assert told == ["ann-secret-123456"]
    await routing.aclose()
