"""Agent-reported results, on every store (SQLite and PostgreSQL, the `store` of
tests/test_store_contract.py): the agent stub answers a run 202 over loopback HTTP, the
run waits `running` without holding an engine slot, and the agent's report (the
service's `report_result`, behind PATCH .../runs/{id} and the report_result tool) ends
it once; no report by the deadline follows the timeout policy."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from bot.demo_kit.agent_stub import AgentStub
from scheduler.agent_tools import AgentTools
from scheduler.engine import Engine, EngineConfig
from scheduler.engine_store import FinishedAttempt
from scheduler.errors import InvalidSchedule, InvalidState, RunNotFound
from scheduler.models import AWAITING_RESULT_OWNER, Policies, Run, RunStatus, TimeoutPolicy
from scheduler.planning import FirePlan
from scheduler.proposals import ProposalService
from scheduler.results import SUMMARY_LIMIT
from scheduler.service import ScheduleService
from storage.bundle import SqlStore
from storage.export import export_database, import_export, validate_export
from storage.locations import Location, open_store
from tests import test_store_contract as contract
from tests.test_store_contract_engine import CHAT, NINE, daily, key, keys

new_location = contract.new_location
location = contract.location
store = contract.store

PR = "https://git.example.com/acme/app/pull/42"


class Recorder:
    """The engine's notifier, keeping what the chat would be told."""

    def __init__(self) -> None:
        self.finished: list[FinishedAttempt] = []

    async def run_finished(self, finished: FinishedAttempt) -> None:
        self.finished.append(finished)

    async def schedule_tripped(self, finished: FinishedAttempt) -> None:
        pass

    async def fires_missed(self, plan: FirePlan) -> None:
        pass

    async def runs_awaiting_approval(self, plan: FirePlan) -> None:
        pass

    async def schedule_quarantined(self, broken: object) -> None:
        pass

    async def schedule_over_budget(self, paused: object) -> None:
        pass


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def engine(
    store: SqlStore, clock: FakeClock, dispatcher: HttpAgentDispatcher, recorder: Recorder
) -> Engine:
    config = EngineConfig(max_concurrency=1)
    return Engine(
        store.engine, clock, dispatcher, config=config, notifier=recorder, rng=random.Random(7)
    )


@pytest.fixture
def service(store: SqlStore, clock: FakeClock, engine: Engine) -> ScheduleService:
    return ScheduleService(
        store, clock, default_timezone="Europe/Berlin", on_result=engine.report_result
    )


async def accepted_run(
    service: ScheduleService, engine: Engine, clock: FakeClock, agent_stub: AgentStub, **kw: object
) -> Run:
    """A daily schedule whose 09:00 run the agent answers 202: the run, waiting."""
    sid = await daily(service, Policies.model_validate(kw))
    agent_stub.respond_with(202)
    await clock.set(NINE)
    await engine.run_until_idle()
    [run] = await service.history(CHAT, sid)
    return run


async def test_a_202_leaves_the_run_waiting_without_a_slot_and_a_report_ends_it_once(
    service: ScheduleService,
    store: SqlStore,
    engine: Engine,
    clock: FakeClock,
    agent_stub: AgentStub,
    recorder: Recorder,
) -> None:
    run = await accepted_run(service, engine, clock, agent_stub)
    assert run.status is RunStatus.RUNNING and run.awaiting_result
    assert run.owner == AWAITING_RESULT_OWNER
    assert run.next_attempt_at == NINE + timedelta(seconds=300)  # the default timeout
    assert engine.in_flight == 0 and recorder.finished == []
    # The one slot is free: another schedule's run starts and ends meanwhile.
    other = await daily(service, name="Other")
    agent_stub.respond_with(200)
    await clock.set(NINE + timedelta(minutes=1))
    await service.run_now(CHAT, other)
    await engine.run_until_idle()
    assert [r.status for r in await service.history(CHAT, other)] == [RunStatus.SUCCEEDED]
    # Nobody reaps it: it belongs to no engine.
    assert AWAITING_RESULT_OWNER not in await store.engine.running_owners()

    report = {"status": "succeeded", "summary": "Opened the PR.", "outputs_url": PR}
    report["log_excerpt"] = "tests: 120 passed"
    done = await service.report_result(CHAT, run.id, report)
    assert done.status is RunStatus.SUCCEEDED and done.owner is None
    stored = await service.get_run(CHAT, run.id)
    assert (stored.summary, stored.outputs_url, stored.log_excerpt) == (
        "Opened the PR.",
        PR,
        "tests: 120 passed",
    )
    assert stored.attempt == 1 and stored.finished_at is not None
    told = [f.run for f in recorder.finished if f.run.id == run.id]
    assert [(r.status, r.outputs_url) for r in told] == [(RunStatus.SUCCEEDED, PR)]
    # A second report changes nothing.
    with pytest.raises(InvalidState, match="not awaiting a result"):
        await service.report_result(CHAT, run.id, {"status": "failed"})
    assert await service.get_run(CHAT, run.id) == stored
    assert len([f for f in recorder.finished if f.run.id == run.id]) == 1
    # Kept in the history's attempts and in an export.
    [attempt] = await store.runs.attempts(CHAT, run.id)
    assert attempt.status is RunStatus.SUCCEEDED


async def test_a_reported_failure_is_retried_with_the_same_key(
    service: ScheduleService, engine: Engine, clock: FakeClock, agent_stub: AgentStub
) -> None:
    run = await accepted_run(service, engine, clock, agent_stub)
    failed = await service.report_result(
        CHAT, run.id, {"status": "failed", "summary": "The build broke."}
    )
    assert failed.status is RunStatus.FAILED and failed.next_attempt_at is not None
    assert failed.error == "the agent reported a failure: The build broke."
    agent_stub.respond_with(200)
    await clock.set(failed.next_attempt_at)
    await engine.run_until_idle()
    again = await service.get_run(CHAT, run.id)
    assert again.status is RunStatus.SUCCEEDED and again.attempt == 2
    assert keys(agent_stub) == [key(run.schedule_id, NINE)] * 2


async def test_no_report_by_the_timeout_retries_with_the_same_key(
    service: ScheduleService,
    engine: Engine,
    clock: FakeClock,
    agent_stub: AgentStub,
    recorder: Recorder,
) -> None:
    run = await accepted_run(service, engine, clock, agent_stub, timeout_seconds=60)
    await clock.set(NINE + timedelta(seconds=59))
    await engine.run_until_idle()
    assert (await service.get_run(CHAT, run.id)).status is RunStatus.RUNNING
    assert await engine._next_wake(clock.now()) <= NINE + timedelta(seconds=60)
    await clock.set(NINE + timedelta(seconds=60))
    await engine.run_until_idle()
    timed_out = await service.get_run(CHAT, run.id)
    assert timed_out.status is RunStatus.FAILED
    assert timed_out.error == "no result from the agent within 60 s of its 202"
    assert timed_out.next_attempt_at is not None
    # A late report is refused, and nothing changes.
    with pytest.raises(InvalidState):
        await service.report_result(CHAT, run.id, {"status": "succeeded"})
    agent_stub.respond_with(200)
    await clock.set(timed_out.next_attempt_at)
    await engine.run_until_idle()
    assert (await service.get_run(CHAT, run.id)).status is RunStatus.SUCCEEDED
    assert keys(agent_stub) == [key(run.schedule_id, NINE)] * 2


async def test_no_report_under_timeout_policy_ask_leaves_it_unknown(
    service: ScheduleService, engine: Engine, clock: FakeClock, agent_stub: AgentStub
) -> None:
    run = await accepted_run(
        service, engine, clock, agent_stub, timeout_seconds=60, timeout_policy=TimeoutPolicy.ASK
    )
    await clock.set(NINE + timedelta(minutes=5))
    await engine.run_until_idle()
    assert (await service.get_run(CHAT, run.id)).status is RunStatus.UNKNOWN
    assert len(agent_stub.requests) == 1


@pytest.mark.parametrize(
    ("report", "sentence"),
    [
        ({"status": "done"}, "The status must be 'succeeded' or 'failed'."),
        ({"summary": "no status"}, "The status must be 'succeeded' or 'failed'."),
        (
            {"status": "succeeded", "outputs_url": "javascript:alert(1)"},
            "The outputs_url must be an absolute http:// or https:// link.",
        ),
        (
            {"status": "succeeded", "outputs_url": "ftp://example.com/x"},
            "The outputs_url must be an absolute http:// or https:// link.",
        ),
        (
            {"status": "succeeded", "summary": "x" * (SUMMARY_LIMIT + 1)},
            f"The summary must be at most {SUMMARY_LIMIT} characters.",
        ),
        ({"status": "succeeded", "extra": 1}, "Unknown field 'extra' in the result."),
        (["succeeded"], "The result must be a JSON object."),
    ],
    ids=["status", "no-status", "javascript", "ftp", "long-summary", "unknown", "not-object"],
)
async def test_a_bad_report_is_refused_in_one_sentence_and_changes_nothing(
    service: ScheduleService,
    engine: Engine,
    clock: FakeClock,
    agent_stub: AgentStub,
    report: object,
    sentence: str,
) -> None:
    run = await accepted_run(service, engine, clock, agent_stub)
    with pytest.raises(InvalidSchedule) as refused:
        await service.report_result(CHAT, run.id, report)
    assert str(refused.value) == sentence
    assert await service.get_run(CHAT, run.id) == run


async def test_another_chats_run_is_not_found_and_unchanged(
    service: ScheduleService, engine: Engine, clock: FakeClock, agent_stub: AgentStub
) -> None:
    run = await accepted_run(service, engine, clock, agent_stub)
    with pytest.raises(RunNotFound):
        await service.report_result(CHAT + 1, run.id, {"status": "succeeded"})
    assert await service.get_run(CHAT, run.id) == run


async def test_a_run_that_answered_at_once_takes_no_report(
    service: ScheduleService, engine: Engine, clock: FakeClock, agent_stub: AgentStub
) -> None:
    sid = await daily(service)
    await clock.set(NINE)
    await engine.run_until_idle()
    [run] = await service.history(CHAT, sid)
    with pytest.raises(InvalidState, match="succeeded, not awaiting a result"):
        await service.report_result(CHAT, run.id, {"status": "failed"})


async def test_the_report_result_tool_ends_the_run_as_the_api_does(
    service: ScheduleService,
    store: SqlStore,
    engine: Engine,
    clock: FakeClock,
    agent_stub: AgentStub,
) -> None:
    run = await accepted_run(service, engine, clock, agent_stub)
    tools = AgentTools(service, ProposalService(service, store, clock))

    async def call(**args: object) -> dict[str, object]:
        text = await tools.call(
            CHAT, {"function": {"name": "report_result", "arguments": json.dumps(args)}}
        )
        result: dict[str, object] = json.loads(text)
        return result

    bad = await call(run_id=run.id, status="succeeded", outputs_url="file:///etc/passwd")
    assert bad == {
        "ok": False,
        "error": "The outputs_url must be an absolute http:// or https:// link.",
    }
    assert await call(run_id=run.id, status="succeeded", outputs_url=PR) == {
        "ok": True,
        "run_id": run.id,
        "status": "succeeded",
    }
    again = await call(run_id=run.id, status="succeeded")
    assert again["ok"] is False and "not awaiting a result" in str(again["error"])
    assert (await service.get_run(CHAT, run.id)).outputs_url == PR


async def test_the_reported_result_goes_through_export_and_import(
    service: ScheduleService,
    store: SqlStore,
    location: Location,
    new_location: Callable[[], Location],
    engine: Engine,
    clock: FakeClock,
    agent_stub: AgentStub,
    tmp_path: Path,
) -> None:
    run = await accepted_run(service, engine, clock, agent_stub)
    report = {"status": "succeeded", "summary": "Done.", "outputs_url": PR, "log_excerpt": "ok"}
    await service.report_result(CHAT, run.id, report)
    reported = await service.get_run(CHAT, run.id)
    exported = tmp_path / "exported"
    await export_database(location, exported)
    assert validate_export(exported) == []
    copy = new_location()
    await import_export(exported, copy)
    async with await open_store(copy) as restored:
        assert await restored.runs.get(CHAT, run.id) == reported
    # An export made before migration 0014 has no such keys: its runs import with none.
    runs_file = exported / "runs.jsonl"
    old = [json.loads(line) for line in runs_file.read_text().splitlines()]
    for row in old:
        for name in ("summary", "outputs_url", "log_excerpt"):
            row.pop(name, None)
    runs_file.write_text("".join(json.dumps(row) + "\n" for row in old))
    assert validate_export(exported) == []
    older = new_location()
    await import_export(exported, older)
    async with await open_store(older) as restored:
        got = await restored.runs.get(CHAT, run.id)
    assert got == reported.model_copy(
        update={"summary": None, "outputs_url": None, "log_excerpt": None}
    )
