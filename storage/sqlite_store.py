"""The SQLite implementation of `scheduler.store.Store`.

One aiosqlite connection per store. Writes run as `BEGIN IMMEDIATE` transactions, which
take SQLite's write lock up front: two engines on the same file serialise their claims
instead of both reading the same due rows. An asyncio lock keeps this process's own
coroutines from interleaving statements inside one another's transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from scheduler.errors import UnreadableSchedule
from scheduler.models import (
    Attempt,
    OverlapPolicy,
    PauseKind,
    Run,
    RunFigure,
    RunStatus,
    RunTrigger,
    Schedule,
)
from scheduler.planning import APPROVAL_DEADLINE_REASON, FirePlan, runs_for_plan, started_run
from scheduler.proposal_model import Proposal, ProposalStatus
from scheduler.store import (
    OUTPUT_LIMIT,
    AcquiredRun,
    AttemptOutcome,
    ChatPrefs,
    ClaimedFires,
    DueInstants,
    EngineInstance,
    FinishedAttempt,
    Notification,
    NotificationStatus,
    Planner,
    Pruned,
    ScheduleChange,
)
from scheduler.work_items import HistoryEntry, WorkItem, WorkItemStatus
from storage import (
    chats,
    due,
    instances,
    notifications,
    proposals,
    retention,
    runs,
    schedules,
    stats,
    work_items,
)
from storage.codec import (
    claimed_schedule,
    remember_claimed,
    started_run_from_row,
    started_schedule,
    to_db_time,
)
from storage.database import describe_failure, fetch_one, is_unavailable, open_database
from storage.one_trip import LoopWriter, WriterBusy, transact

__all__ = ["SqliteStore"]

log = logging.getLogger("tickler.storage")

#: How long (real seconds) a `due_instants` snapshot may answer "anything due?" while
#: this store has not written since: one engine iteration, not the next one. Another
#: process's writes are noticed at the next read, as they would be a moment later anyway.
_DUE_SNAPSHOT_FRESH = 0.05


_FIRE = attrgetter("fire")
_READY_AT = attrgetter("ready")
_DEADLINE = attrgetter("deadline")

T = TypeVar("T")
#: A due schedule as `schedules.due` reads it: its row's values, and the schedule.
_Due = tuple[tuple[Any, ...], Schedule]


class SqliteStore:
    def __init__(
        self,
        db: aiosqlite.Connection,
        path: str | Path = "the database",
        writer: LoopWriter | None = None,
    ) -> None:
        self._db = db
        self._path = path
        #: Runs the engine's hot transactions on the event loop's thread when the write
        #: lock is free (storage/one_trip.py); None: all on aiosqlite's thread.
        self._writer = writer
        self._checkpointing: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._cleanup: asyncio.Future[None] | None = None
        #: Why the last write failed (one sentence for the operator: a lock held past
        #: the busy timeout, a full disk, a read-only file), until a write succeeds.
        self.write_failure: str | None = None
        self._failed_writes = 0
        #: The last acquisition took as many runs as asked: more are surely ready.
        self._ready_backlog = False
        #: The last claim found as many due schedules as asked: more are surely due.
        self._due_backlog = False
        #: The engine's last `due_instants` read: (total_changes then, monotonic time, it).
        self._due_seen: tuple[int, float, DueInstants] | None = None
        #: Told the failure when writes start failing, and None when they work again
        #: (the bot alerts the admins); called inside the store's lock, so it must not
        #: wait for anything.
        self.on_write_health: Callable[[str | None], None] | None = None

    @classmethod
    async def open(cls, path: str | Path) -> SqliteStore:
        db = await open_database(path)
        return cls(db, path, None if str(path) == ":memory:" else LoopWriter(path))

    async def close(self) -> None:
        if self._checkpointing is not None:
            self._checkpointing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointing
        async with self._lock:
            if self._cleanup is not None:
                await self._cleanup
            if self._writer is not None:
                self._writer.close()
            await self._db.close()

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _changes(self) -> int:
        """Rows changed through this store's connections so far."""
        writer = 0 if self._writer is None else self._writer.total_changes
        return self._db.total_changes + writer

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            changes = self._changes()
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                await self._db.execute("COMMIT")
            except asyncio.CancelledError:
                # aiosqlite runs statements in order on its own thread, even when the
                # awaiting task was cancelled: a cancelled BEGIN may still open the
                # transaction later. A ROLLBACK queued behind it always closes it, and
                # any later statement queues behind the ROLLBACK, so it need not be
                # awaited here (that could take the whole busy timeout).
                self._cleanup = asyncio.ensure_future(self._rollback())
                raise
            except BaseException as exc:
                await self._rollback()
                if is_unavailable(exc):
                    self._write_failed(exc)
                raise
            self._wrote(changes)

    async def _transact(self, body: Callable[[aiosqlite.Connection], Coroutine[Any, Any, T]]) -> T:
        """`_write` for a transaction that only runs statements, in one trip to the
        database thread (storage/one_trip.py): the engine's hot path."""
        async with self._lock:
            changes = self._changes()
            try:
                result = await transact(self._db, body, self._writer)
            except BaseException as exc:
                if is_unavailable(exc):
                    self._write_failed(exc)
                raise
            self._wrote(changes)
        if self._writer is not None and self._writer.checkpoint_due():
            self._checkpoint_soon()
        return result

    def _checkpoint_soon(self) -> None:
        """Move the WAL's pages into the database file on aiosqlite's thread (the loop
        writer never does it, so that the event loop never waits for a sync)."""
        if self._checkpointing is None or self._checkpointing.done():
            self._checkpointing = asyncio.create_task(
                self._checkpoint(), name="wal-checkpoint", context=contextvars.Context()
            )

    async def _checkpoint(self) -> None:
        try:
            async with self._lock:
                # PASSIVE: copies what no reader still needs, never waits for anyone.
                await self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as exc:
            # The next one catches up; a closed store has nothing left to move.
            log.debug("WAL checkpoint skipped: %s", exc)

    def _wrote(self, changes_before: int) -> None:
        # A transaction that changed nothing wrote nothing, so it proves nothing.
        if self._failed_writes and self._changes() != changes_before:
            log.warning(
                "The database %s is writable again after %d failed writes.",
                self._path,
                self._failed_writes,
            )
            self.write_failure, self._failed_writes = None, 0
            self._tell_write_health(None)

    def _write_failed(self, exc: BaseException) -> None:
        failure = describe_failure(exc, self._path)
        previous, self.write_failure = self.write_failure, failure
        self._failed_writes += 1
        if failure != previous:
            # Once per kind of failure, not once per retry: the engine retries often.
            log.error("%s Nothing is lost: due runs wait until it can be written.", failure)
        if previous is None:
            self._tell_write_health(failure)

    def _tell_write_health(self, failure: str | None) -> None:
        if self.on_write_health is None:
            return
        try:
            self.on_write_health(failure)
        except Exception:
            log.exception("reporting the database's health failed")

    async def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.OperationalError):  # "no transaction is active"
            await self._db.execute("ROLLBACK")

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            yield self._db

    async def _anything_due(
        self, now: datetime, kind: Callable[[DueInstants], datetime | None]
    ) -> bool:
        # A plain read first: most ticks find nothing, and taking the write lock for
        # nothing would make a second engine (or a backup) wait. Within an engine
        # iteration the snapshot it just read answers instead (one trip, not three).
        seen = self._due_seen
        if (
            seen is not None
            and seen[0] == self._changes()
            and time.monotonic() - seen[1] < _DUE_SNAPSHOT_FRESH
        ):
            instants = seen[2]
        else:
            instants = await self.due_instants()
        first = kind(instants)
        return first is not None and first <= now

    async def _read_in_place(
        self, body: Callable[[aiosqlite.Connection], Coroutine[Any, Any, T]]
    ) -> T:
        """`_read` for the engine's hot reads: on the event loop's thread through the
        loop writer's connection (no hand-over), else on aiosqlite's thread."""
        async with self._lock:
            if self._writer is not None:
                try:
                    return self._writer.read(body)
                except WriterBusy:
                    pass
            return await body(self._db)

    async def due_instants(self) -> DueInstants:
        instants = await self._read_in_place(due.read)
        self._due_seen = (self._changes(), time.monotonic(), instants)
        return instants

    # --- schedules ---------------------------------------------------------------------
    async def add_schedule(self, schedule: Schedule) -> Schedule:
        async with self._write() as db:
            number = await schedules.insert(db, schedule)
        return schedule.model_copy(update={"number": number})

    async def find_schedules(
        self, chat_id: int, *, number: int | None = None, prefix: str | None = None, limit: int = 5
    ) -> list[Schedule]:
        async with self._read() as db:
            if number is not None:
                found = await schedules.by_number(db, chat_id, number)
                return [] if found is None else [found]
            if prefix is not None:
                return await schedules.by_prefix(db, chat_id, prefix, limit)
            return []

    async def get_schedule(self, chat_id: int, schedule_id: str) -> Schedule | None:
        async with self._read() as db:
            return await schedules.get(db, chat_id, schedule_id)

    async def list_schedules(
        self, chat_id: int, *, include_archived: bool = False
    ) -> list[Schedule]:
        async with self._read() as db:
            return await schedules.list_for_chat(db, chat_id, include_archived=include_archived)

    async def count_active_schedules(self, chat_id: int) -> int:
        async with self._read() as db:
            return await schedules.count_active(db, chat_id)

    async def count_all_schedules(self) -> int:
        """Schedules not archived, of every chat (the start-up line reports them)."""
        async with self._read() as db:
            return await schedules.count_all_active(db)

    async def modify_schedule(
        self, chat_id: int, schedule_id: str, change: Callable[[Schedule], ScheduleChange]
    ) -> Schedule | None:
        async with self._write() as db:
            current = await schedules.get(db, chat_id, schedule_id)
            if current is None:
                return None
            result = change(current)
            await schedules.replace(db, result.schedule)
            await runs.insert_many(db, result.new_runs)
            return result.schedule

    async def pause_schedule(
        self,
        chat_id: int,
        schedule_id: str,
        *,
        by: int | None,
        reason: str | None,
        now: datetime,
        kind: PauseKind = PauseKind.OPERATOR,
    ) -> Schedule | None:
        async with self._write() as db:
            current = await schedules.get(db, chat_id, schedule_id)
            if current is None:
                return None
            paused = current.model_copy(
                update={
                    "enabled": False,
                    "paused_by": by,
                    "pause_reason": reason,
                    "pause_kind": kind,
                    "updated_at": now,
                }
            )
            await schedules.replace(db, paused)
            await runs.settle_open(db, schedule_id, f"paused: {reason or 'by the operator'}", now)
            return paused

    async def archive_schedule(
        self, chat_id: int, schedule_id: str, *, now: datetime
    ) -> Schedule | None:
        async with self._write() as db:
            current = await schedules.get(db, chat_id, schedule_id)
            if current is None:
                return None
            archived = current.model_copy(
                update={"enabled": False, "archived_at": now, "updated_at": now}
            )
            await schedules.replace(db, archived)
            await runs.settle_open(db, schedule_id, "archived", now)
            return archived

    # --- chats ------------------------------------------------------------------------
    async def get_chat(self, chat_id: int) -> ChatPrefs:
        async with self._read() as db:
            return await chats.get(db, chat_id)

    async def set_chat_timezone(self, chat_id: int, zone: str, now: datetime) -> None:
        async with self._write() as db:
            await chats.set_timezone(db, chat_id, zone, now)

    async def set_chat_blocked(self, chat_id: int, reason: str | None, now: datetime) -> None:
        async with self._write() as db:
            await chats.set_blocked(db, chat_id, reason, now)

    # --- the engine ------------------------------------------------------------------
    async def claim_due_fires(self, now: datetime, limit: int, plan: Planner) -> list[FirePlan]:
        return (await self.claim_and_start(now, limit, plan, owner="", start=0)).plans

    async def claim_and_start(
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
        # While a backlog is being claimed the read-only look first is a wasted trip.
        if not self._due_backlog and not await self._anything_due(now, _FIRE):
            return ClaimedFires([], [])

        unreadable: list[UnreadableSchedule] = []

        async def read(db: aiosqlite.Connection) -> tuple[list[_Due], bool]:
            unreadable.clear()
            if hold_until is None:
                found = await schedules.due(db, now, limit, unreadable=unreadable)
                return found, len(found) >= limit
            # Fires past the hold are claimed whatever the slots, and so are newer ones of
            # schedules with a run open (never held: see `claim`); of the other newer
            # ones, only as many as could start are read (the rest wait, unread).
            found = await schedules.due(db, min(hold_until, now), limit, unreadable=unreadable)
            if len(found) >= limit:
                return found, True
            busy = await schedules.due(
                db,
                now,
                limit - len(found),
                after=hold_until,
                with_open_runs=True,
                unreadable=unreadable,
            )
            found += busy
            if len(found) >= limit or start <= 0:
                return found, len(found) >= limit
            # The old fires are due before the hold and these after it: only the busy
            # ones can come again.
            seen = {s.id for _, s in busy}
            fresh = await schedules.due(
                db, now, start + len(seen), after=hold_until, unreadable=unreadable
            )
            more = len(fresh) >= start + len(seen)
            return found + [f for f in fresh if f[1].id not in seen][:start], more

        found, more = await self._read_in_place(read)
        quarantined = await self._quarantine(unreadable, now) if unreadable else []
        self._due_backlog = more or bool(quarantined)
        # Plan outside the write lock: after a long outage planning takes a while,
        # and neither other writers nor this loop's heartbeats should wait for it.
        plans: list[tuple[tuple[Any, ...], Schedule, FirePlan]] = []
        for i, (values, schedule) in enumerate(found, 1):
            plans.append((values, schedule, plan(schedule, now)))
            if i % 50 == 0:
                await asyncio.sleep(0)
        # A fire can start at once only if it is its plan's one pending fire: a plan of
        # several fires (catch-up) is ordered by the acquisition.
        single = [
            len(fire_plan.fires) == 1 and fire_plan.fires[0].status is RunStatus.PENDING
            for _, _, fire_plan in plans
        ]
        applied: list[FirePlan] = []
        started: list[AcquiredRun] = []
        #: Whether this claim left a fire due, held for a slot.
        held = False

        async def claim(db: aiosqlite.Connection) -> set[str]:
            nonlocal held
            applied.clear()
            started.clear()
            held = False
            busy: Collection[str] = ()
            waiting: datetime | None = None
            if any(single):
                # Not started, nor held, beside another run of its schedule: a running
                # one (the overlap policy decides), or a pending or failed one (a retry
                # keeps its place; holding this fire could let that retry come due
                # first and so turn this fire into an overlap).
                busy = await runs.with_open_runs(
                    db, [s.id for (_, s, _), alone in zip(plans, single, strict=True) if alone]
                )
                waiting = await due.earliest_ready(db)
            budget = start
            # What each plan becomes: started (True), pending rows (False), or left
            # unclaimed (None).
            fate: list[bool | None] = []
            for (_, schedule, fire_plan), alone in zip(plans, single, strict=True):
                if (
                    alone
                    and schedule.id not in busy
                    and schedule.id not in settling
                    and (waiting is None or fire_plan.fires[0].scheduled_for <= waiting)
                ):
                    if budget > 0:
                        budget -= 1
                        fate.append(True)
                        continue
                    assert schedule.next_run_at is not None
                    if hold_until is not None and schedule.next_run_at > hold_until:
                        fate.append(None)
                        held = True
                        continue
                fate.append(False)
            # Compare-and-set on next_run_at, all plans in one statement: if another
            # engine claimed these fires, or the operator paused or edited the schedule
            # meanwhile, its plan is dropped.
            moved = await schedules.advance_many(
                db,
                [
                    (schedule.id, schedule.next_run_at, fire_plan.next_run_at)
                    for (_, schedule, fire_plan), fated in zip(plans, fate, strict=True)
                    if schedule.next_run_at is not None and fated is not None
                ],
                now,
            )
            new_runs: list[Run] = []
            for (_, schedule, fire_plan), fated in zip(plans, fate, strict=True):
                if schedule.id not in moved or fated is None:
                    continue
                applied.append(fire_plan)
                if fated:
                    after = claimed_schedule(schedule, fire_plan.next_run_at, now)
                    run = started_run(schedule, fire_plan.fires[0], owner, now)
                    started.append(AcquiredRun(run, after))
                else:
                    new_runs.extend(runs_for_plan(schedule, fire_plan, now))
            await runs.insert_many(db, new_runs)
            if started:
                written = await runs.insert_many(db, [a.run for a in started])
                if written != len(started):
                    # An instant already in the ledger (a backfill of that very
                    # instant) is not run again: start only the rows written here.
                    mine = await runs.owned_by(db, [a.run.id for a in started], owner)
                    started[:] = [a for a in started if a.run.id in mine]
            return moved

        moved = await self._transact(claim)
        if len(started) < sum(f.status is RunStatus.PENDING for p in applied for f in p.fires):
            # Runs just made ready: the acquisition that follows need not read first to
            # find out.
            self._ready_backlog = True
        begun = {a.run.schedule_id for a in started}
        for values, schedule, fire_plan in plans:
            if schedule.id in moved and schedule.id not in begun:
                # Starting the run reads the schedule again, as this claim left it.
                remember_claimed(values, schedule, fire_plan.next_run_at, now)
        return ClaimedFires(applied, list(started), more=more or held, quarantined=quarantined)

    async def _quarantine(
        self, unreadable: list[UnreadableSchedule], now: datetime
    ) -> list[UnreadableSchedule]:
        """Pause the schedules whose rows cannot be decoded; those paused just now."""
        async with self._write() as db:
            paused: dict[str, UnreadableSchedule] = {}
            for broken in unreadable:
                if broken.schedule_id not in paused and await schedules.quarantine(db, broken, now):
                    paused[broken.schedule_id] = broken
            return list(paused.values())

    async def next_fire_at(self) -> datetime | None:
        return (await self.due_instants()).fire

    async def acquire_ready_runs(
        self, now: datetime, limit: int, owner: str, *, settling: Collection[str] = ()
    ) -> list[AcquiredRun]:
        if limit <= 0:
            return []
        # Skip the read-only look first while a backlog is being worked off: the last
        # acquisition filled up, so there is surely more (and at worst a write
        # transaction finds nothing).
        if not self._ready_backlog and not await self._anything_due(now, _READY_AT):
            return []

        async def acquire(db: aiosqlite.Connection) -> list[AcquiredRun]:
            # One read for two kinds of run, so one schedule's backlog cannot starve the
            # others: each idle schedule's earliest ready run, and the ready runs of busy
            # schedules; each with its schedule.
            rows = await runs.ready_with_schedules(db, now, limit, limit * 4)
            take: list[AcquiredRun] = []
            skipped: dict[str, list[str]] = {}
            for row in rows:
                if len(take) >= limit:
                    break
                values = tuple(row)
                run_id, trigger, attempt = values[0], RunTrigger(values[4]), values[6]
                try:
                    schedule = started_schedule(values[runs.RUN_WIDTH : -2])
                except UnreadableSchedule as exc:
                    # Never started from a definition that cannot be read.
                    skipped.setdefault(f"schedule cannot be read: {exc.reason}", []).append(run_id)
                    continue
                reason = _inactive_reason(schedule, trigger)
                if reason is not None:
                    skipped.setdefault(reason, []).append(run_id)
                elif values[-1] or schedule.policies.overlap is OverlapPolicy.ALLOW:
                    take.append(AcquiredRun(started_run_from_row(values, owner, now), schedule))
                elif (
                    schedule.policies.overlap is OverlapPolicy.SKIP
                    and trigger is RunTrigger.SCHEDULE
                    and attempt == 0
                    # An interrupted run (attempt given back) may have reached the agent.
                    and not values[-2]
                    and schedule.id not in settling
                ):
                    skipped.setdefault(OVERLAP_REASON, []).append(run_id)
                # Otherwise it waits: queued behind the running one, or a catch-up
                # or retry that keeps its place.
            await runs.mark_running(db, [a.run.id for a in take], owner, now)
            for reason, ids in skipped.items():
                await runs.mark_skipped(db, ids, reason, now)
            return take

        take = await self._transact(acquire)
        self._ready_backlog = len(take) >= limit
        return take

    async def finish_attempt(
        self, acquired: AcquiredRun, owner: str, outcome: AttemptOutcome, *, trip_after: int
    ) -> FinishedAttempt | None:
        [result] = await self.finish_attempts([(acquired, outcome)], owner, trip_after=trip_after)
        return result

    async def finish_attempts(
        self,
        items: Sequence[tuple[AcquiredRun, AttemptOutcome]],
        owner: str,
        *,
        trip_after: int,
    ) -> list[FinishedAttempt | None]:
        if not items:
            return []

        async def finish(db: aiosqlite.Connection) -> list[FinishedAttempt | None]:
            results: list[FinishedAttempt | None] = []
            # Successes (the bulk at high volume) are written a few statements per batch;
            # any other outcome, which may trip a breaker, one at a time. Order is kept,
            # so a schedule's failure streak comes out as if written one by one.
            start = 0
            while start < len(items):
                end = start
                while end < len(items) and items[end][1].status is RunStatus.SUCCEEDED:
                    end += 1
                if end > start:
                    results += await _apply_successes(db, items[start:end], owner)
                    start = end
                else:
                    acquired, outcome = items[start]
                    results.append(await _apply_outcome(db, acquired, owner, outcome, trip_after))
                    start += 1
            return results

        return await self._transact(finish)

    async def release_runs(self, owner: str, run_ids: Collection[str], now: datetime) -> int:
        async with self._write() as db:
            return await runs.release(db, owner, run_ids, now)

    async def next_due_at(self) -> datetime | None:
        return (await self.due_instants()).earliest

    async def register_instance(self, instance: EngineInstance) -> None:
        async with self._write() as db:
            await instances.upsert(db, instance)

    async def heartbeat(self, instance_id: str, now: datetime) -> None:
        async with self._write() as db:
            await instances.heartbeat(db, instance_id, now)

    async def mark_instance_stopped(self, instance_id: str, now: datetime) -> None:
        async with self._write() as db:
            await instances.stop(db, instance_id, now)

    async def list_instances(self) -> list[EngineInstance]:
        async with self._read() as db:
            return await instances.list_all(db)

    async def running_owners(self) -> set[str]:
        async with self._read() as db:
            return await runs.running_owners(db)

    async def reap_orphans(
        self,
        dead_owners: Collection[str],
        now: datetime,
        decide: Callable[[Run, Schedule, int], AttemptOutcome],
        *,
        keep: Collection[str] = (),
    ) -> list[FinishedAttempt]:
        if not dead_owners:
            return []
        async with self._write() as db:
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
                    done.append(FinishedAttempt(interrupted, schedule, tripped_now=False))
            return done

    # --- runs, for operators ------------------------------------------------------------
    async def add_run(self, run: Run) -> bool:
        async with self._write() as db:
            return await runs.insert_many(db, [run]) == 1

    async def get_run(self, chat_id: int, run_id: str) -> Run | None:
        async with self._read() as db:
            return await runs.get(db, chat_id, run_id)

    async def list_runs(
        self,
        chat_id: int,
        *,
        schedule_id: str | None = None,
        statuses: Collection[RunStatus] | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Run]:
        async with self._read() as db:
            return await runs.list_for_chat(
                db, chat_id, schedule_id=schedule_id, statuses=statuses, limit=limit, offset=offset
            )

    async def run_figures(self, chat_id: int, since: datetime, until: datetime) -> list[RunFigure]:
        async with self._read() as db:
            return await stats.run_figures(db, chat_id, since, until)

    async def list_attempts(self, chat_id: int, run_id: str) -> list[Attempt]:
        async with self._read() as db:
            return await runs.attempts(db, chat_id, run_id)

    async def transition_run(
        self,
        chat_id: int,
        run_id: str,
        *,
        expected: Collection[RunStatus],
        changes: dict[str, Any],
        now: datetime,
    ) -> Run | None:
        async with self._write() as db:
            if not await runs.transition(
                db, chat_id, run_id, expected=expected, changes=changes, now=now
            ):
                return None
            return await runs.get(db, chat_id, run_id)

    # --- operations ------------------------------------------------------------------
    async def ping(self) -> None:
        async with self._read() as db:
            await fetch_one(db, "SELECT 1")

    async def count_runs_by_status(self) -> dict[RunStatus, int]:
        async with self._read() as db:
            return await runs.count_by_status(db)

    async def count_due_runs(self, now: datetime) -> int:
        async with self._read() as db:
            return await runs.count_due(db, now)

    async def count_due_schedules(self, now: datetime) -> int:
        async with self._read() as db:
            return await schedules.count_due(db, now)

    async def count_tripped_schedules(self) -> int:
        async with self._read() as db:
            return await schedules.count_tripped(db)

    async def skip_expired_approvals(self, now: datetime) -> int:
        if not await self._anything_due(now, _DEADLINE):
            return 0
        async with self._write() as db:
            return await runs.skip_expired_approvals(db, APPROVAL_DEADLINE_REASON, now)

    # --- retention -------------------------------------------------------------------------
    async def prune_history(self, cutoff: datetime, *, keep: int, batch: int) -> Pruned:
        """Delete finished runs (storage.retention.PRUNABLE_RUN_STATUSES) fired and last
        changed before `cutoff`, except each schedule's `keep` latest runs, with their
        attempts; and settled chat messages written before `cutoff`. At most `batch` rows
        per transaction, letting the engine in between, so it never waits long."""
        if keep < 1:
            raise ValueError("keep at least one run per schedule")
        limit = to_db_time(cutoff)
        pruned = Pruned()
        after_schedule = ""
        while True:
            async with self._read() as db:
                ids = await retention.schedule_ids(db, after_schedule, batch)
            if not ids:
                break
            after_schedule = ids[-1]
            for schedule_id in ids:
                async with self._read() as db:
                    kept_from = await retention.keep_from(db, schedule_id, keep)
                if kept_from is None:
                    continue  # fewer than `keep` runs: all stay
                before = min(kept_from, limit)
                after: str | None = ""
                while after is not None:
                    # Read first: most schedules have nothing to prune on most days, and
                    # the write lock is then not taken for nothing.
                    async with self._read() as db:
                        found, after = await retention.prunable_runs(
                            db, schedule_id, before=before, cutoff=cutoff, after=after, limit=batch
                        )
                    if found:
                        async with self._write() as db:
                            gone, attempts = await retention.delete_runs(db, found, cutoff)
                        pruned += Pruned(runs=gone, attempts=attempts)
                    await asyncio.sleep(0)
        while True:
            async with self._write() as db:
                gone = await retention.delete_notifications(db, cutoff, batch)
            pruned += Pruned(notifications=gone)
            await asyncio.sleep(0)
            if gone < batch:
                break
        return pruned

    # --- proposals -------------------------------------------------------------------------
    async def add_proposal(
        self, proposal: Proposal, schedule: Schedule | None = None
    ) -> Schedule | None:
        async with self._write() as db:
            return await proposals.insert_with_schedule(db, proposal, schedule)

    async def decide_proposal(
        self,
        chat_id: int,
        proposal_id: str,
        *,
        expected: Collection[ProposalStatus],
        changes: dict[str, Any],
        add_schedule: Schedule | None = None,
        change_schedule: Callable[[Schedule], ScheduleChange] | None = None,
        archive_at: datetime | None = None,
    ) -> Proposal | None:
        async with self._write() as db:
            return await proposals.decide(
                db,
                chat_id,
                proposal_id,
                expected=expected,
                changes=changes,
                add_schedule=add_schedule,
                change_schedule=change_schedule,
                archive_at=archive_at,
            )

    async def get_proposal(self, chat_id: int, proposal_id: str) -> Proposal | None:
        async with self._read() as db:
            return await proposals.get(db, chat_id, proposal_id)

    async def list_proposals(
        self,
        chat_id: int,
        *,
        statuses: Collection[ProposalStatus] | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Proposal]:
        async with self._read() as db:
            return await proposals.list_for_chat(
                db, chat_id, statuses=statuses, limit=limit, offset=offset
            )

    async def transition_proposal(
        self,
        chat_id: int,
        proposal_id: str,
        *,
        expected: Collection[ProposalStatus],
        changes: dict[str, Any],
    ) -> Proposal | None:
        async with self._write() as db:
            if not await proposals.transition(
                db, chat_id, proposal_id, expected=expected, changes=changes
            ):
                return None
            return await proposals.get(db, chat_id, proposal_id)

    async def list_pending_expired(self, now: datetime) -> list[Proposal]:
        async with self._read() as db:
            return await proposals.pending_expired(db, now)

    async def next_proposal_expiry(self) -> datetime | None:
        async with self._read() as db:
            return await proposals.earliest_expiry(db)

    # --- work items ------------------------------------------------------------------------
    async def insert_work_item(self, item: WorkItem, entry: HistoryEntry) -> bool:
        async with self._write() as db:
            return await work_items.insert(db, item, entry)

    async def update_work_item(self, item: WorkItem, entry: HistoryEntry) -> None:
        async with self._write() as db:
            await work_items.update(db, item, entry)

    async def get_work_item(self, chat_id: int, item_id: str) -> WorkItem | None:
        async with self._read() as db:
            return await work_items.get(db, chat_id, item_id)

    async def list_work_items(
        self, chat_id: int, statuses: Collection[WorkItemStatus]
    ) -> list[WorkItem]:
        async with self._read() as db:
            return await work_items.list_for_chat(db, chat_id, statuses)

    async def work_item_history(self, item_id: str) -> list[HistoryEntry]:
        async with self._read() as db:
            return await work_items.history(db, item_id)

    async def unpinged_followups(self, now: datetime) -> list[WorkItem]:
        async with self._read() as db:
            return await work_items.unpinged_followups(db, now)

    async def mark_followup_pinged(
        self, item_id: str, follow_up_at: datetime, now: datetime
    ) -> bool:
        async with self._write() as db:
            return await work_items.mark_pinged(db, item_id, follow_up_at, now)

    async def unmark_followup_pinged(self, item_id: str, pinged_at: datetime) -> None:
        async with self._write() as db:
            await work_items.unmark_pinged(db, item_id, pinged_at)

    async def next_followup_at(self) -> datetime | None:
        async with self._read() as db:
            return await work_items.earliest_followup(db)

    # --- the outbox ------------------------------------------------------------------------
    async def queue_notifications(self, queued: Sequence[Notification]) -> None:
        if not queued:
            return
        async with self._write() as db:
            await notifications.insert_many(db, queued)

    async def pending_notifications(self, chat_id: int, limit: int) -> list[Notification]:
        async with self._read() as db:
            return await notifications.queue_of(db, chat_id, limit)

    async def chats_with_pending_notifications(self, due_by: datetime | None) -> list[int]:
        async with self._read() as db:
            return await notifications.chats_waiting(db, due_by)

    async def next_notification_due(self) -> datetime | None:
        async with self._read() as db:
            return await notifications.earliest_due(db)

    async def mark_notification_sent(
        self, notification_id: str, message_id: int, now: datetime
    ) -> None:
        async with self._write() as db:
            await notifications.mark_sent(db, notification_id, message_id, now)

    async def postpone_notification(
        self, notification_id: str, error: str, next_attempt_at: datetime
    ) -> None:
        async with self._write() as db:
            await notifications.postpone(db, notification_id, error, next_attempt_at)

    async def settle_notification(
        self, notification_id: str, status: NotificationStatus, error: str
    ) -> None:
        async with self._write() as db:
            await notifications.settle(db, notification_id, status, error)

    async def block_pending_notifications(self, chat_id: int, reason: str) -> int:
        async with self._write() as db:
            return await notifications.block_pending(db, chat_id, reason)

    async def sent_proposal_message(self, chat_id: int, proposal_id: str) -> Notification | None:
        async with self._read() as db:
            return await notifications.sent_for_proposal(db, chat_id, proposal_id)

    async def sent_run_message(self, chat_id: int, run_id: str) -> Notification | None:
        async with self._read() as db:
            return await notifications.sent_for_run(db, chat_id, run_id)

    async def list_notifications(
        self,
        chat_id: int,
        *,
        statuses: Collection[NotificationStatus] | None = None,
        limit: int = 100,
    ) -> list[Notification]:
        async with self._read() as db:
            return await notifications.list_for_chat(db, chat_id, statuses=statuses, limit=limit)


OVERLAP_REASON = "overlap: the previous run was still running"
#: Fires the schedule itself made; an operator's run now or retry goes through a pause.
_OWN_FIRES = (RunTrigger.SCHEDULE, RunTrigger.CATCH_UP, RunTrigger.BACKFILL)


def _inactive_reason(schedule: Schedule, trigger: RunTrigger) -> str | None:
    if schedule.archived_at is not None:
        return "schedule is archived"
    if trigger in _OWN_FIRES:
        if schedule.tripped:
            return "circuit breaker tripped"
        if not schedule.enabled:
            return "schedule is paused"
    return None


async def _apply_successes(
    db: aiosqlite.Connection,
    items: Sequence[tuple[AcquiredRun, AttemptOutcome]],
    owner: str,
) -> list[FinishedAttempt | None]:
    """`_apply_outcome` for many successful attempts: three statements in all."""
    finished = [_finished_run(acquired.run, outcome) for acquired, outcome in items]
    written = await runs.finish_succeeded(db, finished, owner)
    done = [r for r in finished if r.id in written]
    await runs.record_attempts(db, done, owner)
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
        schedule = acquired.schedule
        now_tripped = tripped.get(run.schedule_id, schedule.tripped)
        if schedule.consecutive_failures or schedule.tripped != now_tripped:
            schedule = schedule.model_copy(
                update={"consecutive_failures": 0, "tripped": now_tripped}
            )
        results.append(FinishedAttempt(run, schedule, False, answer=outcome.output))
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
    db: aiosqlite.Connection,
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
    if tripped_now:
        await runs.settle_open(db, run.schedule_id, "circuit breaker tripped", outcome.finished_at)
    return FinishedAttempt(run, schedule, tripped_now, answer=outcome.output)
