"""The slimmed ledger (issue 23): a run whose first attempt succeeds writes no
run_attempts row; /history, the Mini App (both through `runs.attempts`) and the export
read that attempt from the run. Proved by running one workload twice, from the same
seeds and the same fake clock, once as Tickler writes the ledger now and once as it
wrote it before (every success's attempt row written: the statement of `main` before
the slimming, `UNSLIMMED_SQL` below), and comparing what each shows. On both stores.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock
from adapters.ids import system_ids
from bot.demo_kit.agent_stub import AgentStub
from scheduler.engine import Engine, EngineConfig
from scheduler.ids import Ulids, use_id_source
from scheduler.models import Action, ActionKind, Owner, RunStatus
from scheduler.planning import DEFAULT_MISFIRE_GRACE, plan_due_fires
from scheduler.service import ScheduleService, TriggerSpec
from scheduler.work_items import WorkItemService
from storage import runs as ledger
from storage.bundle import SqlStore
from storage.export import export_database, import_export, validate_export
from storage.locations import Location, open_store
from tests import test_store_contract as contract
from tests.engine_calls import claim_due_fires

new_location = contract.new_location

CHAT = 4242
ADA = Owner(id=CHAT, first_name="Ada")
#: Monday 23 November 2026, 09:00 in Berlin.
NINE = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
HALF_PAST_EIGHT = NINE - timedelta(minutes=30)
DAY = timedelta(days=1)
DAILY_9 = TriggerSpec(kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")

#: The success statement as it was before the slimming: every success gives up its
#: owner and has its attempt row written (`git show main:storage/runs.py`, before
#: a45443f; MAIN_FINISH_SUCCEEDED_SQL). Made from today's statement, and checked
#: against that text.
UNSLIMMED_SQL = re.sub(
    r"next_attempt_at = NULL, updated_at = f\.value ->> 1, owner = CASE .*? THEN runs\.owner END ",
    "next_attempt_at = NULL, owner = NULL, updated_at = f.value ->> 1 ",
    ledger.FINISH_SUCCEEDED_SQL,
)
MAIN_FINISH_SUCCEEDED_SQL = (
    "UPDATE runs SET status = 'succeeded', finished_at = f.value ->> 1, "
    "duration_ms = CAST(f.value ->> 2 AS INTEGER), "
    "output = COALESCE(f.value ->> 3, output), error = NULL, "
    "token_usage_json = COALESCE(f.value ->> 4, token_usage_json), "
    "next_attempt_at = NULL, owner = NULL, updated_at = f.value ->> 1 "
    "FROM json_each(?) AS f "
    "WHERE runs.id = f.value ->> 0 AND runs.owner = ? AND runs.status = 'running' "
    "RETURNING runs.id"
)


async def killed_while_running(store: SqlStore, clock: FakeClock, process: str) -> None:
    """A process takes the due run and dies (kill -9) before it ends (as
    tests/test_interruptions.py's, on either store)."""
    now = clock.now()
    await claim_due_fires(
        store, now, 10, lambda s, at: plan_due_fires(s, at, DEFAULT_MISFIRE_GRACE)
    )
    [taken] = await store.engine.acquire(now, 10, process)
    assert taken.run.status is RunStatus.RUNNING


class Reminders:
    async def send_reminder(self, chat_id: int, text: str) -> None:
        return None


@pytest.fixture(autouse=True)
def system_ids_after() -> Iterator[None]:
    yield
    use_id_source(system_ids())  # the workloads installed seeded ones


async def workload(where: Location, agent_stub: AgentStub) -> dict[str, str]:
    """Fires that succeed first time (an agent schedule, a reminder, a task), one that
    fails then succeeds on its retry, one interrupted by a kill then succeeded, and a
    dead run retried by the operator that then succeeds at its (new) first attempt.
    Returns what the run ids are, by what happened to them."""
    clock = FakeClock(NINE - timedelta(hours=1), monotonic=lambda: clock.now().timestamp())
    seeded = random.Random(23)
    use_id_source(Ulids(lambda: int(clock.now().timestamp() * 1000), seeded.randbytes))
    agent_stub.reset()
    store = await open_store(where)
    service = ScheduleService(store, clock, default_timezone="Europe/Berlin")
    tasks = WorkItemService(store.work_items, clock)
    made = {}
    for name, action in (
        ("Daily brief", Action(text="Prepare my brief for {date}.")),
        ("Stand-up", Action(kind=ActionKind.REMINDER, text="Stand-up in 5 minutes")),
        ("Backup", Action(kind=ActionKind.TASK, text="Back up the list")),
    ):
        schedule = await service.create_schedule(
            CHAT, ADA, name=name, trigger=DAILY_9, action=action
        )
        made[name] = schedule.id
    slow = await service.create_schedule(
        CHAT,
        ADA,
        name="Slow report",
        trigger=TriggerSpec(kind="interval", every_seconds=7 * 86400, start_at=HALF_PAST_EIGHT),
        action=Action(text="Write the report."),
    )
    async with HttpAgentDispatcher(url=agent_stub.url) as dispatcher:

        def engine() -> Engine:
            return Engine(
                store.engine,
                clock,
                dispatcher,
                config=EngineConfig(),
                reminders=Reminders(),
                tasks=tasks,
                rng=random.Random(7),
                instance_id=f"engine-{seeded.randrange(1000)}",
            )

        # Day 1: the slow report's process is killed mid-run; the next start reaps it
        # and runs it again; everything else succeeds at once.
        await clock.set(HALF_PAST_EIGHT)
        await killed_while_running(store, clock, "killed-1")
        first = engine()
        await first.startup()
        await first.run_until_idle()
        await clock.set(NINE)
        await first.run_until_idle()
        await first.shutdown()
        # Day 2: the brief's first attempt fails, its retry succeeds.
        agent_stub.script([503])
        await clock.set(NINE + DAY)
        day2 = engine()
        await day2.run_until_idle()
        await clock.advance(timedelta(minutes=2))
        await day2.run_until_idle()
        # Day 3: the brief dies (three 503s); the operator retries it and it succeeds.
        agent_stub.script([503, 503, 503])
        await clock.set(NINE + 2 * DAY)
        await day2.run_until_idle()
        for _ in range(3):
            await clock.advance(timedelta(minutes=2))
            await day2.run_until_idle()
        [dead] = await store.runs.list_for_chat(
            CHAT, schedule_id=made["Daily brief"], statuses=[RunStatus.DEAD]
        )
        await service.retry(CHAT, dead.id)
        await day2.run_until_idle()
        await day2.shutdown()
    runs = {r.id: r for r in await store.runs.list_for_chat(CHAT, limit=100)}
    await store.close()
    retried = await_one([r for r in runs.values() if r.trigger.value == "retry"])
    interrupted = await_one([r for r in runs.values() if r.schedule_id == slow.id])
    assert {r.status for r in runs.values()} == {RunStatus.SUCCEEDED}, runs
    return {"retried": retried.id, "interrupted": interrupted.id}


def await_one(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


def lines(folder: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / name).read_text().splitlines()]


def by_run(attempts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each run's attempts in the file's order, without `seq`: a storage sequence number
    whose only meaning is that order (the slimmed ledger writes fewer rows, so the
    numbers of the rows it does write differ)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in attempts:
        out.setdefault(row["run_id"], []).append({k: v for k, v in row.items() if k != "seq"})
    return out


def read(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


async def raw_attempt_rows(where: Location) -> int:
    from tests.reliability.ledger import query

    [(count,)] = await query(where, "SELECT COUNT(*) FROM run_attempts")
    return int(count)


async def test_the_slimmed_ledger_exports_every_attempt_the_full_one_wrote(
    new_location: Callable[[], Location],
    agent_stub: AgentStub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # main's statement, returning each run's owner too (None: every row is written).
    assert (
        MAIN_FINISH_SUCCEEDED_SQL.replace("RETURNING runs.id", "RETURNING runs.id, runs.owner")
        == UNSLIMMED_SQL
    )
    slim, full = new_location(), new_location()
    which = await workload(slim, agent_stub)
    with monkeypatch.context() as old:
        old.setattr(ledger, "FINISH_SUCCEEDED_SQL", UNSLIMMED_SQL)
        assert await workload(full, agent_stub) == which
    await export_database(slim, tmp_path / "slim")
    await export_database(full, tmp_path / "full")
    assert validate_export(tmp_path / "slim") == []
    slim_files, full_files = read(tmp_path / "slim"), read(tmp_path / "full")

    # Everything but the attempts' sequence numbers is the same, the manifest's counts
    # (derived attempts included) and the runs' owners too.
    assert {n: b for n, b in slim_files.items() if n != "run_attempts.jsonl"} == {
        n: b for n, b in full_files.items() if n != "run_attempts.jsonl"
    }
    slim_attempts = lines(tmp_path / "slim", "run_attempts.jsonl")
    full_attempts = lines(tmp_path / "full", "run_attempts.jsonl")
    assert by_run(slim_attempts) == by_run(full_attempts)

    # The derived rows are the runs that succeeded at their first try, built from the
    # runs' own fields (and the owner the full ledger wrote); the rest were written.
    runs = lines(tmp_path / "slim", "runs.jsonl")
    full_by_run = by_run(full_attempts)
    first_try = [r for r in runs if len(full_by_run[r["id"]]) == 1]
    assert which["retried"] not in {r["id"] for r in first_try}
    assert which["interrupted"] not in {r["id"] for r in first_try}
    derived = [a for a in slim_attempts if a["seq"] is None]
    assert derived == [
        {
            "seq": None,
            "run_id": r["id"],
            "attempt": r["attempt"],
            "owner": full_by_run[r["id"]][0]["owner"],
            "started_at": r["started_at"],
            "finished_at": r["finished_at"],
            "status": r["status"],
            "error": None,
        }
        for r in sorted(first_try, key=lambda r: r["id"])
    ]
    assert {r["attempt"] for r in first_try} == {1} and len(first_try) >= 4
    # The operator's retry and the interrupted run kept every row, their first too.
    assert [a["status"] for a in full_by_run[which["retried"]]] == [
        "failed",
        "failed",
        "dead",
        "succeeded",
    ]
    # The interrupted attempt is written as the run was put back: pending.
    assert [a["status"] for a in full_by_run[which["interrupted"]]] == ["pending", "succeeded"]
    assert await raw_attempt_rows(full) - await raw_attempt_rows(slim) == len(first_try)

    # /history, the Mini App and the API read the same runs and attempts from both.
    async with await open_store(slim) as a, await open_store(full) as b:
        assert await a.runs.list_for_chat(CHAT, limit=100) == await b.runs.list_for_chat(
            CHAT, limit=100
        )
        for run in runs:
            assert await a.runs.attempts(CHAT, run["id"]) == await b.runs.attempts(CHAT, run["id"])

    # The slimmed export imports and exports again byte for byte.
    copy = new_location()
    await import_export(tmp_path / "slim", copy)
    await export_database(copy, tmp_path / "again")
    assert read(tmp_path / "again") == slim_files
    assert await raw_attempt_rows(copy) == await raw_attempt_rows(slim)


async def test_a_ledger_written_before_the_slimming_imports_and_exports_the_same(
    new_location: Callable[[], Location],
    agent_stub: AgentStub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database whose first-attempt successes have their rows (as every database made
    before the slimming has): its export numbers every attempt, and a new database made
    from it keeps those rows and exports the same bytes."""
    old = new_location()
    with monkeypatch.context() as before:
        before.setattr(ledger, "FINISH_SUCCEEDED_SQL", UNSLIMMED_SQL)
        await workload(old, agent_stub)
    await export_database(old, tmp_path / "old")
    attempts = lines(tmp_path / "old", "run_attempts.jsonl")
    assert attempts and all(a["seq"] is not None for a in attempts)
    copy = new_location()
    await import_export(tmp_path / "old", copy)
    await export_database(copy, tmp_path / "again")
    assert read(tmp_path / "again") == read(tmp_path / "old")
    assert await raw_attempt_rows(copy) == len(attempts)


async def test_validate_export_refuses_a_derived_attempt_that_is_not_one(
    new_location: Callable[[], Location], agent_stub: AgentStub, tmp_path: Path
) -> None:
    """A line without seq must be its succeeded run's only attempt and agree with it."""
    where = new_location()
    which = await workload(where, agent_stub)
    folder = tmp_path / "export"
    await export_database(where, folder)
    path = folder / "run_attempts.jsonl"
    rows = lines(folder, "run_attempts.jsonl")
    first = next(n for n, row in enumerate(rows, start=1) if row["seq"] is None)
    rows[first - 1]["finished_at"] = "2030-01-01T00:00:00Z"
    # A second, unnumbered attempt of the retried run, which has numbered ones.
    rows.append({**rows[first - 1], "run_id": which["retried"]})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["counts"]["run_attempts"] += 1
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert validate_export(folder) == [
        f"run_attempts.jsonl:{first}: no seq, but it differs from its run.",
        f"run_attempts.jsonl:{len(rows)}: no seq, but its run has other attempts.",
    ]
    with pytest.raises(ValueError, match="no seq, but it differs from its run"):
        await import_export(folder, new_location())
