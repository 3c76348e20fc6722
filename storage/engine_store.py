"""The engine store (`scheduler.engine_store.EngineStore`).

It reads rows, asks the pure rules in `scheduler.policies` and `scheduler.planning`
what each becomes, and writes that in one transaction; it decides nothing itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from scheduler.budgets import BudgetLimits, BudgetUse, has_budget
from scheduler.engine_store import (
    OUTPUT_LIMIT,
    AcquiredRun,
    AttemptOutcome,
    BudgetPause,
    ClaimedFires,
    DueInstants,
    EngineInstance,
    FinishedAttempt,
    Planner,
)
from scheduler.errors import UnreadableSchedule
from scheduler.models import Run, RunStatus, RunTrigger, Schedule, SkipReason
from scheduler.planning import APPROVAL_DEADLINE_REASON, FirePlan, runs_for_plan, started_run
from scheduler.plans import following_runs
from scheduler.policies import (
    TRIPPED_TEXT,
    Acquisition,
    ClaimCandidate,
    Fate,
    ReadyRun,
    acquisition,
    claim_fates,
    closing_status,
    starts_alone,
)
from storage import budgets, due, events, instances, runs, schedules
from storage.codec import (
    claimed_schedule,
    remember_claimed,
    run_from_row,
    started_run_from_row,
    started_schedule,
)
from storage.sql import Connection, Db

__all__ = ["SqlEngineStore"]

#: How long a claim trusts the chat budgets it read (a chat's new budget takes effect
#: within this time, on every engine sharing the database).
CHAT_BUDGETS_EVERY = timedelta(seconds=30)

#: A due schedule as `schedules.due` reads it: its row's values, and the schedule.
_Due = tuple[tuple[Any, ...], Schedule]


class SqlEngineStore:
    #: Whether several engines claim from the database at once, each locking the rows
    #: it reads and skipping those another holds (PostgreSQL); on SQLite one write lock
    #: serialises the claims instead.
    locks_rows = False

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        #: The chats that have a budget (/budget), read at most every
        #: CHAT_BUDGETS_EVERY by a claim: a chat's budget costs no query per fire.
        self._chat_budgets: dict[int, BudgetLimits] = {}
        self._chat_budgets_at: datetime | None = None
        #: One chat's backlog as the last claims saw it (fairness across chats).
        self._backlog = schedules.Backlog()

    async def _chat_limits(self, db: Db, now: datetime) -> dict[int, BudgetLimits]:
        at = self._chat_budgets_at
        if at is None or not at <= now < at + CHAT_BUDGETS_EVERY:
            self._chat_budgets = await budgets.chat_budgets(db)
            self._chat_budgets_at = now
        return self._chat_budgets

    async def next_due(self) -> DueInstants:
        return await self._conn.read_in_place(due.read)

    async def claim(
        self,
        now: datetime,
        limit: int,
        plan: Planner,
        *,
        owner: str,
        start: int,
        hold_until: datetime | None = None,
        settling: Collection[str] = (),
    ) -> ClaimedFires:
        unreadable: list[UnreadableSchedule] = []
        lock = self.locks_rows

        async def read(db: Db) -> tuple[list[_Due], bool]:
            unreadable.clear()
            if hold_until is None:
                found = await schedules.due(
                    db, now, limit, unreadable=unreadable, lock=lock, backlog=self._backlog
                )
                return found, len(found) >= limit
            # Fires past the hold are claimed whatever the slots, and so are newer ones of
            # schedules with a run open (never held: see `claim`); of the other newer
            # ones, only as many as could start are read (the rest wait, unread).
            found = await schedules.due(
                db,
                min(hold_until, now),
                limit,
                unreadable=unreadable,
                lock=lock,
                backlog=self._backlog,
                whole=hold_until >= now,
            )
            if len(found) >= limit:
                return found, True
            busy = await schedules.due(
                db,
                now,
                limit - len(found),
                after=hold_until,
                with_open_runs=True,
                unreadable=unreadable,
                lock=lock,
            )
            found += busy
            if len(found) >= limit or start <= 0:
                return found, len(found) >= limit
            # The old fires are due before the hold and these after it: only the busy
            # ones can come again.
            seen = {s.id for _, s in busy}
            # The backlog's chat was alone up to its `checked_to`, whatever the bounds
            # of a read: only what came due since is asked about again.
            fresh = await schedules.due(
                db,
                now,
                start + len(seen),
                after=hold_until,
                unreadable=unreadable,
                lock=lock,
                backlog=self._backlog,
            )
            more = len(fresh) >= start + len(seen)
            return found + [f for f in fresh if f[1].id not in seen][:start], more

        plans: list[tuple[tuple[Any, ...], Schedule, FirePlan]] = []
        candidates: list[ClaimCandidate] = []
        alone: list[bool] = []

        async def make_plans(found: list[_Due]) -> None:
            plans.clear()
            for i, (values, schedule) in enumerate(found, 1):
                plans.append((values, schedule, plan(schedule, now)))
                if i % 50 == 0:
                    await asyncio.sleep(0)
            candidates[:] = [ClaimCandidate(schedule, p) for _, schedule, p in plans]
            alone[:] = [starts_alone(c.plan) for c in candidates]

        applied: list[FirePlan] = []
        started: list[AcquiredRun] = []
        over_budget: list[BudgetPause] = []
        #: Whether this claim left a fire due, held for a slot.
        held = False

        async def claim(db: Db) -> set[str]:
            nonlocal held
            applied.clear()
            started.clear()
            over_budget.clear()
            held = False
            busy: Collection[str] = ()
            waiting: datetime | None = None
            if any(alone):
                # Which schedules have another run open, and the earliest ready run: what
                # `claim_fates` needs to know whether a fire may start in its claim.
                busy = await runs.with_open_runs(
                    db, [c.schedule.id for c, a in zip(candidates, alone, strict=True) if a]
                )
                waiting = await due.earliest_ready(db)
            fates = claim_fates(
                candidates,
                start=start,
                busy=busy,
                settling=settling,
                waiting=waiting,
                hold_until=hold_until,
            )
            held = Fate.HOLD in fates
            # Compare-and-set on next_run_at, all plans in one statement: if another
            # engine claimed these fires, or the operator paused or edited the schedule
            # meanwhile, its plan is dropped.
            moved = await schedules.advance_many(
                db,
                [
                    (schedule.id, schedule.next_run_at, fire_plan.next_run_at)
                    for (_, schedule, fire_plan), fate in zip(plans, fates, strict=True)
                    if schedule.next_run_at is not None and fate is not Fate.HOLD
                ],
                now,
            )
            new_runs: list[Run] = []
            chat_limits = await self._chat_limits(db, now)
            #: Chats' use read in this claim, with the fires it let through since.
            chat_use: dict[int, BudgetUse] = {}
            for (_, schedule, fire_plan), fate in zip(plans, fates, strict=True):
                if schedule.id not in moved or fate is Fate.HOLD:
                    continue
                budgeted = schedule.chat_id in chat_limits or has_budget(schedule.policies)
                fired: list[Run] | None = None
                if budgeted and any(f.status is not RunStatus.SKIPPED for f in fire_plan.fires):
                    # Only schedules with a budget (theirs or their chat's) are counted:
                    # the others cost no query.
                    fired = runs_for_plan(schedule, fire_plan, now)
                    paused = await budgets.gate(
                        db,
                        claimed_schedule(schedule, fire_plan.next_run_at, now),
                        fired,
                        now,
                        chat_limits,
                        chat_use,
                    )
                    if paused is not None:
                        new_runs.extend(paused[0])
                        over_budget.append(paused[1])
                        continue
                applied.append(fire_plan)
                if fate is Fate.START:
                    after = claimed_schedule(schedule, fire_plan.next_run_at, now)
                    run = started_run(schedule, fire_plan.fires[0], owner, now)
                    started.append(AcquiredRun(run, after))
                else:
                    new_runs.extend(
                        fired if fired is not None else runs_for_plan(schedule, fire_plan, now)
                    )
            await runs.insert_many(db, new_runs)
            if started:
                written = await runs.insert_many(db, [a.run for a in started])
                if written != len(started):
                    # An instant already in the ledger (a backfill of that very
                    # instant) is not run again: start only the rows written here.
                    mine = await runs.owned_by(db, [a.run.id for a in started], owner)
                    started[:] = [a for a in started if a.run.id in mine]
            return moved

        if lock:
            more = False

            async def read_plan_claim(db: Db) -> set[str]:
                nonlocal more
                found, more = await read(db)
                await make_plans(found)
                return await claim(db)

            # The due rows stay locked from the read to the write, and the other engines
            # skip them: planning happens inside the transaction.
            moved = await self._conn.transact(read_plan_claim)
            quarantined = await self._quarantine(unreadable, now) if unreadable else []
        else:
            found, more = await self._conn.read_in_place(read)
            quarantined = await self._quarantine(unreadable, now) if unreadable else []
            # Plan outside the write lock: after a long outage planning takes a while,
            # and neither other writers nor this loop's heartbeats should wait for it.
            await make_plans(found)
            moved = await self._conn.transact(claim)
        begun = {a.run.schedule_id for a in started}
        begun |= {p.schedule.id for p in over_budget}
        for values, schedule, fire_plan in plans:
            if schedule.id in moved and schedule.id not in begun:
                # Starting the run reads the schedule again, as this claim left it.
                remember_claimed(values, schedule, fire_plan.next_run_at, now)
        return ClaimedFires(
            applied,
            list(started),
            more=more or held,
            quarantined=quarantined,
            over_budget=list(over_budget),
        )

    async def _quarantine(
        self, unreadable: list[UnreadableSchedule], now: datetime
    ) -> list[UnreadableSchedule]:
        """Pause the schedules whose rows cannot be decoded; those paused just now."""
        async with self._conn.write() as db:
            paused: dict[str, UnreadableSchedule] = {}
            for broken in unreadable:
                if broken.schedule_id not in paused and await schedules.quarantine(db, broken, now):
                    paused[broken.schedule_id] = broken
            return list(paused.values())

    async def acquire(
        self, now: datetime, limit: int, owner: str, *, settling: Collection[str] = ()
    ) -> list[AcquiredRun]:
        if limit <= 0:
            return []

        async def acquire(db: Db) -> list[AcquiredRun]:
            # One read for two kinds of run, so one schedule's backlog cannot starve the
            # others: each idle schedule's earliest ready run, and the ready runs of busy
            # schedules; each with its schedule.
            rows = await runs.ready_with_schedules(db, now, limit, limit * 4)
            if self.locks_rows and rows:
                # Only rows still as read, and not held by another engine's acquisition.
                mine = await runs.lock_unchanged(db, [tuple(row) for row in rows])
                rows = [row for row in rows if row[0] in mine]
            take: list[AcquiredRun] = []
            skipped: dict[tuple[SkipReason, str], list[tuple[str, RunStatus]]] = {}
            ended: list[Run] = []
            for row in rows:
                schedule: Schedule | None = None
                if len(take) >= limit:
                    break
                values = tuple(row)
                run_id, trigger = values[0], RunTrigger(values[4])
                attempt, interruptions = values[6], values[-2]
                why: tuple[SkipReason, str] | None
                try:
                    schedule = started_schedule(values[runs.RUN_WIDTH : -2])
                except UnreadableSchedule as exc:
                    # Never started from a definition that cannot be read.
                    why = (SkipReason.UNREADABLE, f"schedule cannot be read: {exc.reason}")
                else:
                    step = values[runs.RUN_WIDTH - 1]
                    decision, why = acquisition(
                        ReadyRun(trigger, attempt, interruptions, bool(values[-1]), step),
                        schedule,
                        settling=schedule.id in settling,
                    )
                    if decision is Acquisition.START:
                        take.append(AcquiredRun(started_run_from_row(values, owner, now), schedule))
                        continue
                if why is not None:
                    closing = closing_status(RunStatus(values[5]), attempt, interruptions)
                    skipped.setdefault(why, []).append((run_id, closing))
                    if schedule is not None:
                        # A plan step closed here ends its plan: the rest are skipped.
                        closed = run_from_row(values[: runs.RUN_WIDTH]).model_copy(
                            update={"status": closing}
                        )
                        ended.extend(following_runs(closed, schedule, now))
            begun = await runs.mark_running(db, [a.run.id for a in take], owner, now)
            if len(begun) != len(take):
                take = [a for a in take if a.run.id in begun]
            for (kind, text), closed_runs in skipped.items():
                await runs.close_runs(db, closed_runs, kind, text, now)
            await runs.write_plan_steps(db, ended)
            return take

        return await self._conn.transact(acquire)

    async def finish(
        self,
        items: Sequence[tuple[AcquiredRun, AttemptOutcome]],
        owner: str,
        *,
        trip_after: int,
    ) -> list[FinishedAttempt | None]:
        if not items:
            return []

        async def finish(db: Db) -> list[FinishedAttempt | None]:
            results: list[FinishedAttempt | None] = []
            # Successes (the bulk at high volume) are written a few statements per batch;
            # any other outcome, which may trip a breaker, one at a time. Order is kept,
            # so a schedule's failure streak comes out as if written one by one.
            start = 0
            while start < len(items):
                end = start
                while end < len(items) and _plain_success(items[end][1]):
                    end += 1
                if end > start:
                    results += await _apply_successes(db, items[start:end], owner)
                    start = end
                else:
                    acquired, outcome = items[start]
                    if outcome.status is RunStatus.RUNNING:
                        results.append(await _hand_to_agent(db, acquired, owner, outcome))
                    else:
                        results.append(
                            await _apply_outcome(db, acquired, owner, outcome, trip_after)
                        )
                    start += 1
            return results

        return await self._conn.transact(finish)

    async def overdue_results(self, now: datetime, limit: int) -> list[AcquiredRun]:
        async with self._conn.read() as db:
            overdue = await runs.overdue_results(db, now, limit)
            by_id = await schedules.get_many(db, sorted({r.schedule_id for r in overdue}))
        # A run whose schedule cannot be read stays for the operator, as in `reap`.
        return [AcquiredRun(r, by_id[r.schedule_id]) for r in overdue if r.schedule_id in by_id]

    async def awaited_run(self, chat_id: int, run_id: str) -> AcquiredRun | None:
        async with self._conn.read() as db:
            run = await runs.get(db, chat_id, run_id)
            if run is None or not run.awaiting_result:
                return None
            schedule = (await schedules.get_many(db, [run.schedule_id])).get(run.schedule_id)
        return None if schedule is None else AcquiredRun(run, schedule)

    async def release(self, owner: str, run_ids: Collection[str], now: datetime) -> int:
        async with self._conn.write() as db:
            return await runs.release(db, owner, run_ids, now)

    async def expire_approvals(self, now: datetime) -> int:
        async with self._conn.write() as db:
            skipped = await runs.skip_expired_approvals(
                db, SkipReason.APPROVAL_DEADLINE, APPROVAL_DEADLINE_REASON, now
            )
            steps = [r for r in skipped if r.plan_run_id is not None]
            if steps:
                # A step nobody approved in time stops its plan, as a failure would.
                by_id = await schedules.get_many(db, sorted({r.schedule_id for r in steps}))
                await runs.write_plan_steps(
                    db,
                    [
                        follow
                        for r in steps
                        if r.schedule_id in by_id
                        for follow in following_runs(r, by_id[r.schedule_id], now)
                    ],
                )
            return len(skipped)

    async def last_output(self, chat_id: int, schedule_id: str) -> str | None:
        async with self._conn.read() as db:
            return await runs.last_output(db, chat_id, schedule_id)

    async def event_payload(self, run_id: str) -> str | None:
        async with self._conn.read() as db:
            return await events.payload_of_run(db, run_id)

    async def register(self, instance: EngineInstance) -> None:
        async with self._conn.write() as db:
            await instances.upsert(db, instance)

    async def heartbeat(self, instance_id: str, now: datetime) -> None:
        async with self._conn.write() as db:
            await instances.heartbeat(db, instance_id, now)

    async def unregister(self, instance_id: str, now: datetime) -> None:
        async with self._conn.write() as db:
            await instances.stop(db, instance_id, now)

    async def instances(self) -> list[EngineInstance]:
        async with self._conn.read() as db:
            return await instances.list_all(db)

    async def running_owners(self) -> set[str]:
        async with self._conn.read() as db:
            return await runs.running_owners(db)

    async def reap(
        self,
        dead_owners: Collection[str],
        now: datetime,
        decide: Callable[[Run, Schedule, int], AttemptOutcome],
        *,
        keep: Collection[str] = (),
    ) -> list[FinishedAttempt]:
        if not dead_owners:
            return []
        async with self._conn.write() as db:
            orphans = [r for r in await runs.running_of_owners(db, dead_owners) if r.id not in keep]
            by_id = await schedules.get_many(db, sorted({r.schedule_id for r in orphans}))
            before = await runs.interruptions_of(db, [r.id for r in orphans])
            done: list[FinishedAttempt] = []
            for run in orphans:
                schedule = by_id.get(run.schedule_id)
                if schedule is None:
                    continue  # unreadable: left to the operator, never redelivered blind
                outcome = decide(run, schedule, before.get(run.id, 0) + 1)
                # Neither the failure streak nor the breaker: the agent did not fail.
                interrupted = await runs.interrupt(
                    db,
                    run,
                    status=outcome.status,
                    error=outcome.error,
                    next_attempt_at=outcome.next_attempt_at,
                    now=outcome.finished_at,
                )
                if interrupted is not None:
                    done.append(
                        FinishedAttempt(interrupted, schedule, tripped_now=False, interrupted=True)
                    )
            return done


def _plain_success(outcome: AttemptOutcome) -> bool:
    """A success the batched statements can write: one without a reported result."""
    return outcome.status is RunStatus.SUCCEEDED and (
        outcome.summary is None and outcome.outputs_url is None and outcome.log_excerpt is None
    )


async def _hand_to_agent(
    db: Db, acquired: AcquiredRun, owner: str, outcome: AttemptOutcome
) -> FinishedAttempt | None:
    """An attempt the agent accepted for later (202): the run waits for its report."""
    deadline = outcome.next_attempt_at
    assert deadline is not None, "a deferred outcome carries its deadline"
    run = await runs.await_result(db, acquired.run.id, owner, deadline, outcome.finished_at)
    return None if run is None else FinishedAttempt(run, acquired.schedule, tripped_now=False)


async def _apply_successes(
    db: Db,
    items: Sequence[tuple[AcquiredRun, AttemptOutcome]],
    owner: str,
) -> list[FinishedAttempt | None]:
    """`_apply_outcome` for many successful attempts: three statements in all."""
    finished = [_finished_run(acquired.run, outcome) for acquired, outcome in items]
    written = await runs.finish_succeeded(db, finished, owner)
    await runs.record_attempts(db, [r for r in finished if written.get(r.id)], owner)
    tripped = await schedules.record_successes(
        db,
        [
            (r.schedule_id, outcome.finished_at)
            for r, (_, outcome) in zip(finished, items, strict=True)
            if r.id in written
        ],
    )
    results: list[FinishedAttempt | None] = []
    for run, (acquired, outcome) in zip(finished, items, strict=True):
        if run.id not in written:
            results.append(None)
            continue
        # The next step of a plan, in this transaction: a crash cannot lose it.
        then = following_runs(run, acquired.schedule, outcome.finished_at)
        if then:
            await runs.write_plan_steps(db, then)
        schedule = acquired.schedule
        now_tripped = tripped.get(run.schedule_id, schedule.tripped)
        if schedule.consecutive_failures or schedule.tripped != now_tripped:
            schedule = schedule.model_copy(
                update={"consecutive_failures": 0, "tripped": now_tripped}
            )
        results.append(FinishedAttempt(run, schedule, False, answer=outcome.output, then=then))
    return results


def _finished_run(run: Run, outcome: AttemptOutcome) -> Run:
    """The run as a successful outcome leaves it in the database (runs.finish_succeeded)."""
    output = None if outcome.output is None else outcome.output[:OUTPUT_LIMIT]
    return run.model_copy(
        update={
            "status": RunStatus.SUCCEEDED,
            "finished_at": outcome.finished_at,
            "duration_ms": outcome.duration_ms,
            "output": run.output if output is None else output,
            "error": None,
            "token_usage": run.token_usage if outcome.token_usage is None else outcome.token_usage,
            "next_attempt_at": None,
            "owner": None,
            "updated_at": outcome.finished_at,
        }
    )


async def _apply_outcome(
    db: Db,
    acquired: AcquiredRun,
    owner: str,
    outcome: AttemptOutcome,
    trip_after: int,
) -> FinishedAttempt | None:
    usage = None if outcome.token_usage is None else json.dumps(outcome.token_usage)
    run = await runs.finish(
        db,
        acquired.run.id,
        owner,
        status=outcome.status,
        finished_at=outcome.finished_at,
        duration_ms=outcome.duration_ms,
        output=None if outcome.output is None else outcome.output[:OUTPUT_LIMIT],
        error=outcome.error,
        token_usage_json=usage,
        next_attempt_at=outcome.next_attempt_at,
        summary=outcome.summary,
        outputs_url=outcome.outputs_url,
        log_excerpt=outcome.log_excerpt,
    )
    if run is None:
        return None
    await runs.record_attempt(db, run, owner)
    schedule = acquired.schedule
    streak = await schedules.record_outcome(
        db,
        run.schedule_id,
        succeeded=outcome.status is RunStatus.SUCCEEDED,
        dead=outcome.status is RunStatus.DEAD,
        finished_at=outcome.finished_at,
        trip_after=trip_after,
    )
    tripped_now = False
    if streak is not None:
        failures, tripped, tripped_now = streak
        schedule = schedule.model_copy(
            update={"consecutive_failures": failures, "tripped": tripped}
        )
    # A plan's next step (or the rest of it skipped), in this transaction: a crash
    # cannot lose it or write it twice. Before the breaker's settling, which closes a
    # next step written here as it closes any open run.
    then = following_runs(run, acquired.schedule, outcome.finished_at)
    await runs.write_plan_steps(db, then)
    if tripped_now:
        await runs.settle_open(
            db, run.schedule_id, SkipReason.TRIPPED, TRIPPED_TEXT, outcome.finished_at, schedule
        )
        # A next step written above was closed with the rest: nothing of it to announce.
        then = tuple(r for r in then if r.status is RunStatus.SKIPPED)
    return FinishedAttempt(run, schedule, tripped_now, answer=outcome.output, then=then)
