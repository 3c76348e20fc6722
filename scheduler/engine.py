"""The scheduling engine: a durable loop over the store, driven by an injected clock.

Each iteration reads the clock once and then:
1. heartbeats, and reaps runs left `running` by instances that died;
2. skips runs whose approval deadline passed unanswered;
3. claims due fires (planning them by the missed-run policy) in one transaction each,
   and asks the operator about the ones that need approval;
4. acquires ready runs up to the free dispatch slots and starts them;
then sleeps until the earliest due instant, a wake-up (schedules changed, a slot
freed), or a short cap, whichever is first. Idle, it uses no CPU.

Guarantees and where they live: exactly-once claiming is the store's transaction
plus UNIQUE(schedule_id, scheduled_for); retries are rows (status `failed` with
`next_attempt_at`), so a restart remembers them; shutdown puts unfinished attempts
back to `pending`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Protocol

from scheduler.clock import Clock
from scheduler.dispatching import Dispatcher, DispatchError, DispatchRequest, Operator
from scheduler.engine_store import (
    AcquiredRun,
    AttemptOutcome,
    BudgetPause,
    ClaimedFires,
    EngineInstance,
    EngineStore,
    FinishedAttempt,
)
from scheduler.errors import InvalidState, UnreadableSchedule
from scheduler.ids import new_id
from scheduler.log_context import log_context, log_context_for
from scheduler.models import (
    AWAITING_RESULT_OWNER,
    ActionKind,
    Run,
    RunStatus,
    Schedule,
    TimeoutPolicy,
    interrupted_error,
)
from scheduler.planning import DEFAULT_MISFIRE_GRACE, FirePlan, plan_due_fires, retry_delay
from scheduler.plans import plan_step
from scheduler.results import ResultReport
from scheduler.templates import TemplateLoader, load_template, prompt_variables, render

__all__ = [
    "BundleSink",
    "Engine",
    "EngineConfig",
    "EngineObserver",
    "Lifecycle",
    "Notifier",
    "ReminderSender",
    "TaskSink",
]

log = logging.getLogger("tickler.engine")

#: Engines alive in this process; two in one process share a pid, so the pid alone
#: cannot tell a dead predecessor from a live sibling.
_LOCAL_INSTANCES: set[str] = set()

#: Iterations failing in a row after which the engine reports itself failing (/healthz):
#: one or two are a passing lock; more mean it is not doing its work.
FAILING_AFTER = 3

#: Seconds a stopping engine waits for outcomes to be written after cancelling attempts.
_RECORD_GRACE = 5.0
#: Claims of at most `claim_batch` fires each that a stopping engine makes for the fires
#: it held for a slot (only the last `hold_for_slot` of fires can be unclaimed).
_HELD_FLUSH_ROUNDS = 20
_HELD_FLUSH_SECONDS = 5.0


@dataclass(frozen=True)
class EngineConfig:
    max_concurrency: int = 64
    claim_batch: int = 500
    misfire_grace: timedelta = DEFAULT_MISFIRE_GRACE
    #: The longest the loop sleeps, so a change made by another process (or a clock
    #: jump) is noticed within this time even without a wake-up.
    max_sleep: timedelta = timedelta(seconds=30)
    #: Real seconds that in-flight runs get to finish after a stop is requested.
    shutdown_grace: float = 20.0
    #: Dead runs in a row that trip a schedule's circuit breaker.
    trip_after: int = 3
    #: How long a due fire that could start at once waits, unclaimed, for a free slot:
    #: it is then written once, already running, instead of as a pending run that is
    #: acquired later (three writes and a read). Older fires are claimed as pending
    #: runs, slot or not, so a backlog is in the ledger within this time. Kept well
    #: inside `misfire_grace`, so a held fire is always planned as on time.
    hold_for_slot: timedelta = timedelta(seconds=10)
    heartbeat_every: timedelta = timedelta(seconds=15)
    #: An instance silent this long is presumed dead and its runs are reaped.
    stale_after: timedelta = timedelta(seconds=90)
    #: Attempts of one run that Tickler itself may cut off (its process killed while
    #: they ran) before the run is left `unknown` for the operator: interruptions spend
    #: neither the retry budget nor the breaker, so this bounds them instead.
    max_interruptions: int = 5


class Notifier(Protocol):
    """What the engine tells the operator's side (the bot) about."""

    async def run_finished(self, finished: FinishedAttempt) -> None: ...

    async def schedule_tripped(self, finished: FinishedAttempt) -> None: ...

    async def fires_missed(self, plan: FirePlan) -> None: ...

    async def runs_awaiting_approval(self, plan: FirePlan) -> None:
        """Fires of `plan` wait for an operator's Approve/Skip (status awaiting_approval);
        unanswered, each is skipped at its deadline (planning.approval_deadline)."""

    async def schedule_quarantined(self, broken: UnreadableSchedule) -> None:
        """A due schedule's stored definition cannot be decoded: it was paused with the
        reason (once), and the other schedules go on firing."""

    async def schedule_over_budget(self, paused: BudgetPause) -> None:
        """A due schedule reached its budget: it was paused instead of firing and the
        fire recorded skipped (once: a paused schedule is not due again)."""


class Lifecycle(Protocol):
    """What fires on the engine's own events (scheduler/service.py, LifecycleFires)."""

    async def started(self, instance_id: str) -> None:
        """The engine `instance_id` started and reconciled (startup schedules)."""

    async def finished(self, run: Run, schedule: Schedule) -> None:
        """A run of `schedule` changed status for good or for now (after schedules)."""


class ReminderSender(Protocol):
    async def send_reminder(self, chat_id: int, text: str) -> None: ...


class TaskSink(Protocol):
    """Where a `task` fire becomes a work item (scheduler/work_items.py)."""

    async def create_from_fire(self, schedule: Schedule, fire: datetime, title: str) -> bool:
        """False when the schedule already made an item for the fire's local date."""


class BundleSink(Protocol):
    """Where a workflow template's fire becomes a bundle (scheduler/bundles.py)."""

    async def create_from_fire(self, schedule: Schedule, fire: datetime, heading: str) -> str:
        """Make the fire's bundle once; what the chat is told (made, or there already)."""

    async def reconcile(self) -> int:
        """At start: finish the bundles a stopped process left half made."""


class EngineObserver(Protocol):
    """Sees every attempt start and end, for metrics. Called synchronously from the
    engine's tasks; it must be quick, and whatever it raises is logged and ignored."""

    def attempt_started(self, run: Run, lag_s: float) -> None:
        """`run` (already `running`, attempt counted) starts `lag_s` seconds after its
        scheduled instant, by the engine's clock."""

    def attempt_finished(self, run: Run, duration_s: float, status: RunStatus) -> None:
        """The attempt took `duration_s` real seconds and ended as `status` (SUCCEEDED,
        FAILED, DEAD or UNKNOWN). Attempts cut off by shutdown are not reported."""


class _LogNotifier:
    async def run_finished(self, finished: FinishedAttempt) -> None:
        """Nothing to add: the engine logs every finished run itself."""

    async def schedule_tripped(self, finished: FinishedAttempt) -> None:
        log.warning(
            "schedule tripped its circuit breaker", extra={"schedule_id": finished.schedule.id}
        )

    async def fires_missed(self, plan: FirePlan) -> None:
        log.warning("fires missed", extra={"schedule_id": plan.schedule_id, "missed": plan.missed})

    async def runs_awaiting_approval(self, plan: FirePlan) -> None:
        waiting = [f for f in plan.fires if f.status is RunStatus.AWAITING_APPROVAL]
        log.info(
            "fires await approval", extra={"schedule_id": plan.schedule_id, "count": len(waiting)}
        )

    async def schedule_quarantined(self, broken: UnreadableSchedule) -> None:
        """Nothing to add: the engine logs every quarantine itself."""

    async def schedule_over_budget(self, paused: BudgetPause) -> None:
        """Nothing to add: the engine logs every budget pause itself."""


@dataclass(slots=True)
class _InFlight:
    acquired: AcquiredRun
    task: asyncio.Task[None] | None = None
    #: True while the attempt itself runs (not yet recording its outcome): only then
    #: may shutdown cancel the task.
    attempting: bool = False
    #: Counted in `Engine._attempts`: from start until the attempt (not its recording)
    #: ends.
    holds_slot: bool = True


class _GroupCommit:
    """Records finished attempts in shared transactions.

    Outcomes that arrive while a write is in progress are committed together in the
    next one, so at high volume one transaction serves many runs instead of each
    run paying for its own. Each caller still learns its own result.
    """

    def __init__(self, store: EngineStore, owner: str, trip_after: int) -> None:
        self._store = store
        self._owner = owner
        self._trip_after = trip_after
        self._queue: list[
            tuple[AcquiredRun, AttemptOutcome, asyncio.Future[FinishedAttempt | None]]
        ] = []
        self._writer: asyncio.Task[None] | None = None

    async def finish(
        self, acquired: AcquiredRun, outcome: AttemptOutcome
    ) -> FinishedAttempt | None:
        done: asyncio.Future[FinishedAttempt | None] = asyncio.get_running_loop().create_future()
        self._queue.append((acquired, outcome, done))
        if self._writer is None or self._writer.done():
            # A fresh context: the writer serves many runs, so its lines must not carry
            # the ids of the run that happened to start it.
            self._writer = asyncio.create_task(self._drain(), context=contextvars.Context())
        return await done

    async def _drain(self) -> None:
        failures = 0
        while self._queue:
            # One turn of the loop first: answers that are already in (their callbacks
            # are queued behind this one) join this commit instead of the next. The
            # write itself often runs in place without yielding (storage/one_trip.py).
            await asyncio.sleep(0)
            batch, self._queue = self._queue, []
            try:
                await self._write(batch)
            except Exception:
                # One bad item must not hold back the rest: write each alone, and keep
                # what still fails for another try. The outcome stays in memory until
                # it is committed; if the process dies first, the run is reaped.
                log.exception("recording %d outcomes failed; retrying one by one", len(batch))
                retry = []
                for item in batch:
                    try:
                        await self._write([item])
                    except Exception:
                        run = item[0].run
                        log.exception(
                            "recording the run failed",
                            extra={"run_id": run.id, "schedule_id": run.schedule_id},
                        )
                        retry.append(item)
                if retry:
                    failures += 1
                    self._queue = retry + self._queue
                    await asyncio.sleep(min(30.0, 0.1 * 2**failures))
                continue
            failures = 0

    async def _write(
        self,
        batch: list[tuple[AcquiredRun, AttemptOutcome, asyncio.Future[FinishedAttempt | None]]],
    ) -> None:
        results = await self._store.finish(
            [(a, o) for a, o, _ in batch], self._owner, trip_after=self._trip_after
        )
        for (_, _, done), result in zip(batch, results, strict=True):
            if not done.done():
                done.set_result(result)


class Engine:
    def __init__(
        self,
        store: EngineStore,
        clock: Clock,
        dispatcher: Dispatcher,
        *,
        config: EngineConfig | None = None,
        notifier: Notifier | None = None,
        reminders: ReminderSender | None = None,
        tasks: TaskSink | None = None,
        bundles: BundleSink | None = None,
        observer: EngineObserver | None = None,
        instance_id: str | None = None,
        rng: random.Random | None = None,
        host: str = "localhost",
        pid: int = 0,
        is_alive: Callable[[int], bool] | None = None,
        templates: TemplateLoader = load_template,
    ) -> None:
        """`host`, `pid` and `is_alive` (whether a pid of this host is alive) tell a dead
        predecessor from a live one (adapters/process.py gives the real ones); without
        them, engines of this host are judged by their heartbeats and this process's
        list of live engines. `templates` reads a named prompt template."""
        self.store = store
        self.clock = clock
        self.dispatcher = dispatcher
        #: The dispatcher keeps its own deadline (HttpAgentDispatcher), so agent runs need
        #: no second one; asked once, not per run.
        self._dispatcher_limits_time = dispatcher.limits_own_time
        self.config = config or EngineConfig()
        self.notifier: Notifier = notifier or _LogNotifier()
        self.reminders = reminders
        self.tasks = tasks
        self.bundles = bundles
        self.observer = observer
        #: Startup and after schedules' hooks; set by whoever assembles the process.
        self.lifecycle: Lifecycle | None = None
        self._host = host
        self._pid = pid
        self._is_alive = is_alive
        self._templates = templates
        self.instance_id = instance_id or f"{self._host}:{self._pid}:{new_id()}"
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        #: `_wake` was set for more than a freed slot (a change, a stop, a retry to plan).
        self._woken = False
        self._stopping = False
        self._started = False
        #: Registered and reconciled (orphans reaped): `startup` has nothing left to do.
        self._ready = False
        self._inflight: dict[str, _InFlight] = {}
        #: Runs of `_inflight` whose attempt has not ended: the agent's share of the
        #: concurrency. A run whose answer is in but not yet recorded no longer loads
        #: the agent, so it does not hold back the next start.
        self._attempts = 0
        #: Schedules with a run whose attempt has ended but whose outcome is still being
        #: recorded (it is `running` in the store until then), with how many.
        self._settling: dict[str, int] = {}
        #: The last claim left fires due (it filled its batch, held fires for a slot, or
        #: quarantined a row): claim again without waiting for the next read to say so.
        self._due_backlog = False
        #: The last acquisition filled its slots, or a claim made runs ready: acquire
        #: again without waiting for the next read to say so.
        self._ready_backlog = False
        self._next_heartbeat: datetime | None = None
        self._refill_batch = max(1, self.config.max_concurrency // 8)
        #: With slow answers, slots are refilled in small batches (`_has_room`).
        self._slow_refill_batch = max(1, self.config.max_concurrency // 64)
        #: How long the agent's answers take lately (a moving average, seconds), and
        #: how many it has averaged.
        self._attempt_seconds = 0.0
        self._answers = 0
        self._recorder = _GroupCommit(store, self.instance_id, self.config.trip_after)
        self.last_tick_at: datetime | None = None
        #: Loop iterations so far; /healthz and tests read it to see the loop is alive
        #: and not polling.
        self.ticks = 0
        #: Iterations that failed in a row, and why the last one did (see `failing`).
        self.failed_iterations = 0
        self._last_failure: str | None = None

    # --- lifecycle -----------------------------------------------------------------
    def wake(self) -> None:
        """Re-plan now: a schedule was added, changed or run by hand."""
        self._woken = True
        self._wake.set()

    def request_stop(self) -> None:
        """Stop claiming; `run_forever` then drains in-flight work and returns."""
        self._stopping = True
        self._woken = True
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    @property
    def failing(self) -> str | None:
        """Why the engine is not doing its work (its iterations keep failing), as a
        sentence; None while it works. The loop still ticks, so its tick age says
        nothing of this."""
        if self.failed_iterations < FAILING_AFTER:
            return None
        return (
            f"The engine's last {self.failed_iterations} iterations failed "
            f"({self._last_failure}); due runs are not being started."
        )

    async def startup(self) -> None:
        """Register this instance and reconcile what a dead predecessor left behind.
        Missed fires need no step here: the first claim plans them by policy."""
        if self._ready:
            return
        now = self.clock.now()
        if not self._started:
            _LOCAL_INSTANCES.add(self.instance_id)
            await self.store.register(
                EngineInstance(self.instance_id, self._host, self._pid, now, now, None)
            )
            self._started = True
        # Registered but not yet reconciled if this fails: the next call reaps again.
        await self._reap(now)
        if self.bundles is not None:
            # Bundles a dead process left half made are finished before anything fires.
            await self.bundles.reconcile()
        if self.lifecycle is not None:
            # After reconciliation; a failure retries start-up, and the instance id
            # keys the fires, so a second try fires nothing twice.
            await self.lifecycle.started(self.instance_id)
        self._next_heartbeat = now + self.config.heartbeat_every
        self._ready = True

    async def run_forever(self) -> None:
        """The long-running loop, until `request_stop()`; then a graceful shutdown."""
        heartbeat: asyncio.Task[None] | None = None
        try:
            while not self._stopping:
                self._wake.clear()
                self._woken = False
                now = self.clock.now()
                try:
                    # Start-up inside the retry: a write lock held past the busy timeout
                    # right at start must delay the engine, not end it.
                    await self.startup()
                    if heartbeat is None:
                        heartbeat = asyncio.create_task(
                            self._heartbeat_forever(), name="engine-heartbeat"
                        )
                    more = await self._tick(now)
                    # More to claim but no slot to start it in: wait for a freed slot
                    # (the runs just started finish meanwhile) or for held fires to
                    # pass their hold, as `_next_wake` says. Ticking again at once would
                    # read and claim nothing before those runs had a turn of the loop.
                    if more and (self._stopping or self._has_room()):
                        deadline = now
                    else:
                        deadline = await self._next_wake(now)
                    self.failed_iterations, self._last_failure = 0, None
                except Exception as exc:
                    # A locked database or a full disk must not end the loop: log,
                    # back off, try again. Only a stop request ends it.
                    failures = self.failed_iterations = self.failed_iterations + 1
                    self._last_failure = f"{type(exc).__name__}: {str(exc)[:200]}"
                    log.exception("engine iteration failed (%d in a row)", failures)
                    backoff = min(self.config.max_sleep.total_seconds(), 2.0**failures)
                    deadline = now + timedelta(seconds=backoff)
                if self._stopping:
                    break
                if self._wake.is_set() and not self._woken and not self._has_room():
                    # Set by runs that freed slots which this tick has filled since: no
                    # news. Left set, it would end the sleep at once and the next tick
                    # would find no slot (the runs just started have not had a turn).
                    self._wake.clear()
                if deadline > now:
                    await self.clock.sleep_until(deadline, self._wake)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            await self.shutdown()

    async def _heartbeat_forever(self) -> None:
        """Prove liveness on a schedule of its own, so a busy loop iteration (a long
        transaction, a slow notifier) does not make this engine look dead."""
        never = asyncio.Event()
        while not self._stopping:
            await self.clock.sleep_until(self.clock.now() + self.config.heartbeat_every, never)
            try:
                await self.store.heartbeat(self.instance_id, self.clock.now())
            except Exception:
                log.exception("heartbeat failed")

    async def run_until_idle(self) -> None:
        """Burst mode for tests and one-shot jobs: work until nothing is due at the
        clock's current instant and nothing is in flight."""
        await self.startup()
        while True:
            more = await self._tick(self.clock.now())
            if not self._inflight:
                if more:
                    continue
                return
            # Saturated: wait until a refill batch is free. Otherwise nothing was
            # startable, so wait for any run to end (it may free a queued one or plan
            # a retry).
            await asyncio.wait(self._tasks(), return_when=asyncio.FIRST_COMPLETED)
            while more and self._inflight and not self._has_room():
                await asyncio.wait(self._tasks(), return_when=asyncio.FIRST_COMPLETED)

    async def shutdown(self) -> None:
        """Let in-flight attempts finish within the grace period; put the rest back."""
        self._stopping = True
        if self._ready:
            await self._record_held()
        tasks = self._tasks()
        if tasks:
            await asyncio.wait(tasks, timeout=self.config.shutdown_grace)
        for flight in list(self._inflight.values()):
            if flight.attempting and flight.task is not None:
                flight.task.cancel()
        remaining = self._tasks()
        if remaining:
            _, stuck = await asyncio.wait(remaining, timeout=_RECORD_GRACE)
            # Still waiting to record (the database is unwritable): give up on them.
            # Their rows stay `running` under this instance, marked stopped below, so
            # the next start reaps and retries them.
            for task in stuck:
                task.cancel()
            if stuck:
                await asyncio.wait(stuck)
        if self._started:
            await self.store.unregister(self.instance_id, self.clock.now())
            self._started = False
        _LOCAL_INSTANCES.discard(self.instance_id)
        self._ready = False

    def _free_slots(self) -> int:
        # Answers waiting to be recorded are bounded too, so a slow disk slows the
        # starts down instead of piling outcomes up in memory.
        limit = self.config.max_concurrency
        return min(limit - self._attempts, 2 * limit - len(self._inflight))

    def _has_room(self) -> bool:
        # Refill in batches: one acquiring transaction per freed slot would cost more
        # than the dispatches themselves at high volume. When answers take long, a
        # transaction per few slots costs little beside them, while a slot left free
        # until many others finish idles for a share of an answer's time.
        free = self._free_slots()
        batch = (
            self._slow_refill_batch
            if self._attempt_seconds >= SLOW_ANSWER_SECONDS
            else self._refill_batch
        )
        return free >= batch or (free > 0 and not self._attempts)

    def _settle(self, schedule_id: str, change: int) -> None:
        count = self._settling.get(schedule_id, 0) + change
        if count > 0:
            self._settling[schedule_id] = count
        else:
            self._settling.pop(schedule_id, None)

    def _release_slot(self, flight: _InFlight) -> None:
        if flight.holds_slot:
            flight.holds_slot = False
            self._attempts -= 1

    def _tasks(self) -> list[asyncio.Task[None]]:
        return [f.task for f in self._inflight.values() if f.task is not None]

    # --- one iteration -------------------------------------------------------------------
    async def _tick(self, now: datetime) -> bool:
        """Do everything due at `now`; True if there may be more to do right away."""
        self.last_tick_at = now
        self.ticks += 1
        if self._next_heartbeat is not None and now >= self._next_heartbeat:
            await self.store.heartbeat(self.instance_id, now)
            await self._reap(now)
            self._next_heartbeat = now + self.config.heartbeat_every
        # One read decides which of the three steps below have anything to do.
        instants = await self.store.next_due()
        if _reached(instants.deadline, now):
            expired = await self.store.expire_approvals(now)
            if expired:
                log.info("%d runs skipped: no approval before their deadline", expired)
        if _reached(instants.result, now):
            await self._expire_results(now)
        room = not self._stopping and self._has_room()
        free = self._free_slots() if room else 0
        more = False
        if self._due_backlog or _reached(instants.fire, now):
            claimed = await self.store.claim(
                now,
                self.config.claim_batch,
                self._plan,
                owner=self.instance_id,
                start=free,
                hold_until=now - self.config.hold_for_slot,
                settling=set(self._settling),
            )
            # Started first: the notifier may take a while, and these runs are due now.
            for item in claimed.started:
                self._start(item)
            await self._report(claimed)
            more = self._due_backlog = claimed.more or bool(claimed.quarantined)
            free -= len(claimed.started)
            if len(claimed.started) < sum(
                f.status is RunStatus.PENDING for p in claimed.plans for f in p.fires
            ):
                # Runs just made ready: acquire without waiting for the next read.
                self._ready_backlog = True
        if room and free > 0 and (self._ready_backlog or _reached(instants.ready, now)):
            acquired = await self.store.acquire(
                now, free, self.instance_id, settling=set(self._settling)
            )
            for item in acquired:
                self._start(item)
            self._ready_backlog = len(acquired) == free
            if self._ready_backlog:
                more = True
        return more

    async def _report(self, claimed: ClaimedFires) -> None:
        for broken in claimed.quarantined:
            log.error(
                "schedule paused: its stored definition cannot be read (%s)",
                broken.reason,
                extra={"schedule_id": broken.schedule_id, "chat_id": broken.chat_id},
            )
            await self._notify(self.notifier.schedule_quarantined(broken))
        await self.budgets_reached(claimed.over_budget)
        for plan in claimed.plans:
            if plan.missed:
                await self._notify(self.notifier.fires_missed(plan))
            if any(f.status is RunStatus.AWAITING_APPROVAL for f in plan.fires):
                await self._notify(self.notifier.runs_awaiting_approval(plan))

    async def _record_held(self) -> None:
        """At a stop, write the fires held for a slot as pending runs, as if claimed
        when due: the next start runs them, however long it takes to come."""
        now = self.clock.now()
        try:
            # Bounded: a database locked past this must not eat the stop's grace period.
            async with asyncio.timeout(_HELD_FLUSH_SECONDS):
                for _ in range(_HELD_FLUSH_ROUNDS):
                    claimed = await self.store.claim(
                        now, self.config.claim_batch, self._plan, owner=self.instance_id, start=0
                    )
                    await self._report(claimed)
                    if not claimed.more:
                        return
        except Exception:
            # They stay due: the next start plans them by the missed-run policy.
            log.exception("recording the fires held for a slot failed")

    def _plan(self, schedule: Schedule, now: datetime) -> FirePlan:
        return plan_due_fires(schedule, now, self.config.misfire_grace)

    async def _next_wake(self, now: datetime) -> datetime:
        deadline = now + self.config.max_sleep
        if self._next_heartbeat is not None:
            deadline = min(deadline, self._next_heartbeat)
        instants = await self.store.next_due()
        fire = instants.fire
        if fire is not None and fire <= now:
            if self._stopping or self._has_room():
                # A fire that the claim left behind (another engine or an edit changed
                # the schedule under it): look again at once.
                return now
            # Held for a slot: a freed slot wakes the loop; at the latest, the fire is
            # claimed as pending once held for `hold_for_slot`.
            deadline = min(deadline, fire + self.config.hold_for_slot)
        due = instants.earliest
        # A run already due that we could not take waits for a slot or for the run
        # it queues behind; both wake us, so only a future instant sets a deadline.
        if due is not None and due > now:
            deadline = min(deadline, due)
        return deadline

    # --- reaping -------------------------------------------------------------------
    async def _reap(self, now: datetime) -> None:
        owners = await self.store.running_owners()
        if not owners:
            return
        known = {i.id: i for i in await self.store.instances()}
        dead = [
            o
            for o in owners
            if o != self.instance_id and (o not in known or self._is_dead(known[o], now))
        ]
        # Our own runs that no task holds any more (an outcome that could not be
        # recorded) are orphans too; those still in flight are kept.
        if self.instance_id in owners:
            dead.append(self.instance_id)
        if not dead:
            return
        finished = await self.store.reap(dead, now, self._orphan_outcome, keep=set(self._inflight))
        for item in finished:
            with _run_context(item.run, item.schedule):
                log.warning(
                    "run interrupted: the engine running it stopped",
                    extra={"owners": ",".join(dead), "status": item.run.status.value},
                )
                await self._after_finish(item)
        if finished:
            self.wake()

    def _is_dead(self, inst: EngineInstance, now: datetime) -> bool:
        if inst.stopped_at is not None:
            return True
        silent = now - inst.heartbeat_at
        if inst.id in _LOCAL_INSTANCES:
            return False  # a live engine of this process
        if inst.host == self._host and self._is_alive is not None:
            # On this host the process table is the truth; a stale heartbeat alone
            # (a stalled loop) must not get a live engine's runs dispatched twice.
            if inst.pid == self._pid:
                return True  # an earlier engine of this very process
            if self._is_alive(inst.pid):
                # ...unless silent for so long that the pid was surely reused.
                return silent > self.config.stale_after * 10
            return True
        return silent > self.config.stale_after

    def _orphan_outcome(self, run: Run, schedule: Schedule, interruptions: int) -> AttemptOutcome:
        """How a run cut off by a dead engine goes on (the store gives its attempt back)."""
        now = self.clock.now()
        if interruptions >= self.config.max_interruptions:
            error = interrupted_error(interruptions)
            return AttemptOutcome(RunStatus.UNKNOWN, finished_at=now, error=error)
        error = interrupted_error(1)
        # The dead process may have delivered the request: as after a timeout, the
        # operator who asked to decide such cases does.
        if schedule.policies.timeout_policy is TimeoutPolicy.ASK:
            return AttemptOutcome(RunStatus.UNKNOWN, finished_at=now, error=error)
        # The agent did not fail, so it goes out again at once, with the same key.
        return AttemptOutcome(RunStatus.PENDING, finished_at=now, error=error, next_attempt_at=now)

    # --- running one attempt --------------------------------------------------------
    def _start(self, acquired: AcquiredRun) -> None:
        flight = _InFlight(acquired)
        run = acquired.run
        # One task per run, in a context that carries its ids, so every line logged while
        # the run is dispatched and reported (dispatcher and notifier included) has them.
        flight.task = asyncio.create_task(
            self._execute(flight),
            context=log_context_for(
                run_id=run.id, schedule_id=run.schedule_id, chat_id=acquired.schedule.chat_id
            ),
        )
        self._inflight[run.id] = flight
        self._attempts += 1

    async def _execute(self, flight: _InFlight) -> None:
        acquired = flight.acquired
        run = acquired.run
        retry_planned = False
        settling = False
        try:
            if self.observer is not None:
                lag = (self.clock.now() - run.scheduled_for).total_seconds()
                self._observe(lambda o: o.attempt_started(run, lag))
            started = self.clock.monotonic()
            flight.attempting = True
            try:
                outcome = await self._attempt(acquired)
            except asyncio.CancelledError:
                # Cancelled by shutdown after the grace period: not a failure.
                flight.attempting = False
                self._release_slot(flight)
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                await self.store.release(self.instance_id, [run.id], self.clock.now())
                return
            flight.attempting = False
            took = self.clock.monotonic() - started
            if self._answers:
                self._attempt_seconds += (took - self._attempt_seconds) * _ATTEMPT_WEIGHT
            else:
                self._attempt_seconds = took
            self._answers += 1
            self._release_slot(flight)
            self._settle(run.schedule_id, +1)
            settling = True
            if self._has_room():
                # Start the next runs while this outcome is being recorded.
                self._wake.set()
            if self.observer is not None:
                self._observe(lambda o: o.attempt_finished(run, took, outcome.status))
            if outcome.status is RunStatus.RUNNING:
                await self._await_result(acquired, outcome)
                return
            retry_planned = outcome.status is RunStatus.FAILED
            finished = await self._recorder.finish(acquired, outcome)
            _log_outcome(outcome, run.attempt)
            if finished is not None:
                # A plan's next step was written: start it without waiting for a read.
                retry_planned = retry_planned or bool(finished.then)
                await self._after_finish(finished)
        except Exception:
            log.exception("recording the run failed")
        finally:
            self._release_slot(flight)
            if settling:
                self._settle(run.schedule_id, -1)
            self._inflight.pop(run.id, None)
            # Wake the loop to plan a new retry instant, or when it can start a batch;
            # a wake per finished run would cost a loop iteration each.
            if retry_planned:
                self.wake()
            elif self._has_room():
                self._wake.set()

    async def _attempt(self, acquired: AcquiredRun) -> AttemptOutcome:
        run, schedule = acquired.run, acquired.schedule
        timeout = schedule.policies.timeout_seconds
        started = self.clock.monotonic()
        output: str | None = None
        usage: dict[str, int] | None = None
        deferred = False
        try:
            if schedule.action.kind in _TO_AGENT and self._dispatcher_limits_time:
                # The dispatcher keeps its own deadline (HttpAgentDispatcher: an asyncio
                # deadline around the HTTP phases); a second one per run is pure cost.
                output, usage, deferred = await self._perform(run, schedule, timeout)
            else:
                # A safety net around whatever the reminder, task or dispatcher does.
                async with asyncio.timeout(timeout + 1.0):
                    output, usage, deferred = await self._perform(run, schedule, timeout)
        except DispatchError as exc:
            return self._failure_outcome(
                run, schedule, str(exc), uncertain=exc.uncertain, now=self.clock.now()
            )
        except TimeoutError:
            return self._failure_outcome(
                run,
                schedule,
                f"timed out after {timeout:g} s",
                uncertain=True,
                now=self.clock.now(),
            )
        except Exception as exc:
            log.exception("run failed unexpectedly")
            return self._failure_outcome(
                run, schedule, f"internal error: {exc}", uncertain=False, now=self.clock.now()
            )
        if deferred:
            # Accepted for later: the run waits for the agent's report, at most the
            # attempt's timeout counted from its start; then the timeout policy applies.
            now = self.clock.now()
            begun = run.started_at or now
            return AttemptOutcome(
                status=RunStatus.RUNNING,
                finished_at=now,
                next_attempt_at=begun + timedelta(seconds=timeout),
            )
        return AttemptOutcome(
            status=RunStatus.SUCCEEDED,
            finished_at=self.clock.now(),
            duration_ms=int((self.clock.monotonic() - started) * 1000),
            output=output,
            token_usage=usage,
        )

    async def _perform(
        self, run: Run, schedule: Schedule, timeout: float
    ) -> tuple[str | None, dict[str, int] | None, bool]:
        """The answer, its token usage, and whether the agent will report it later."""
        action = schedule.action
        fire = run.scheduled_for
        step: int | None = None
        if action.kind is ActionKind.PLAN:
            place = plan_step(run, schedule)
            if place is None:
                raise DispatchError(
                    f"The plan has no step {(run.step or 0) + 1} any more (it was edited).",
                    uncertain=False,
                )
            # Every step renders for the plan's fire instant and is keyed by it.
            text, fire, step = place.step.text, place.instant, place.index
        elif run.step:
            # A later step of a plan run whose schedule is no longer a plan (edited).
            raise DispatchError(
                f"Step {run.step + 1} belongs to a plan, and the schedule is no longer one.",
                uncertain=False,
            )
        else:
            text = self._templates(action.template) if action.template else action.text
        last_output = None
        if "{last_output}" in text:
            last_output = await self.store.last_output(schedule.chat_id, schedule.id)
        event = None
        if "{event}" in text:
            event = await self.store.event_payload(run.id)
        if last_output is None and event is None and "{schedule_name" not in text:
            # The same text at the same instant renders the same for every schedule.
            prompt = _render_at(text, fire, schedule.timezone)
        else:
            variables = {**_time_variables(fire, schedule.timezone)}
            variables["schedule_name"] = schedule.name
            if event is not None:
                variables["event"] = event
            if last_output is not None:
                variables["last_output"] = prompt_variables(
                    fire=fire,
                    timezone=schedule.timezone,
                    schedule_name=schedule.name,
                    last_output=last_output,
                )["last_output"]
            prompt = render(text, variables)
        if action.kind is ActionKind.REMINDER:
            if self.reminders is None:
                raise DispatchError("No chat is connected to deliver reminders.", uncertain=False)
            await self.reminders.send_reminder(schedule.chat_id, prompt)
            return None, None, False
        if action.kind is ActionKind.TASK:
            if self.tasks is None:
                raise DispatchError("No task list is connected to record tasks.", uncertain=False)
            made = await self.tasks.create_from_fire(schedule, run.scheduled_for, prompt)
            # The output is what the chat is told: the task itself, so it reads as a to-do.
            return (
                (f"New task: {prompt}" if made else "The task for that day exists already."),
                None,
                False,
            )
        if action.kind is ActionKind.BUNDLE:
            if self.bundles is None:
                raise DispatchError("No task list is connected to make bundles.", uncertain=False)
            told = await self.bundles.create_from_fire(schedule, run.scheduled_for, prompt)
            return told, None, False
        result = await self.dispatcher.dispatch(
            DispatchRequest(
                schedule_id=schedule.id,
                run_id=run.id,
                scheduled_for=fire,
                chat_id=schedule.chat_id,
                operator=_operator(schedule.owner.id, schedule.owner.first_name),
                schedule_name=schedule.name,
                prompt=prompt,
                timezone=schedule.timezone,
                step=step,
                model=schedule.policies.model,
            ),
            timeout=timeout,
        )
        return result.output, result.token_usage, result.deferred

    def _failure_outcome(
        self,
        run: Run,
        schedule: Schedule,
        error: str,
        *,
        uncertain: bool,
        now: datetime,
    ) -> AttemptOutcome:
        policies = schedule.policies
        if uncertain and policies.timeout_policy is TimeoutPolicy.ASK:
            return AttemptOutcome(RunStatus.UNKNOWN, finished_at=now, error=error)
        if run.attempt >= policies.retry.max_attempts:
            return AttemptOutcome(RunStatus.DEAD, finished_at=now, error=error)
        delay = retry_delay(policies.retry, run.attempt, self._rng)
        return AttemptOutcome(
            RunStatus.FAILED, finished_at=now, error=error, next_attempt_at=now + delay
        )

    # --- results the agent reports later -----------------------------------------------
    async def _await_result(self, acquired: AcquiredRun, outcome: AttemptOutcome) -> None:
        """The agent answered 202: hand the run over to wait for its report. The slot
        is free already; the store's `next_due` wakes the loop at the deadline."""
        [waiting] = await self.store.finish(
            [(acquired, outcome)], self.instance_id, trip_after=self.config.trip_after
        )
        if waiting is not None:
            log.info("run accepted by the agent; awaiting its result", extra={"status": "running"})
            # The loop may be asleep past the deadline.
            self.wake()

    async def _expire_results(self, now: datetime) -> None:
        """End the runs whose agent reported nothing by their deadline, as a timeout
        after delivery (the schedule's timeout policy: a retry with the same key, or
        unknown for the operator)."""
        overdue = await self.store.overdue_results(now, self.config.claim_batch)
        items = [
            (
                item,
                self._failure_outcome(
                    item.run,
                    item.schedule,
                    "no result from the agent within "
                    f"{item.schedule.policies.timeout_seconds:g} s of its 202",
                    uncertain=True,
                    now=now,
                ),
            )
            for item in overdue
        ]
        finished = await self.store.finish(
            items, AWAITING_RESULT_OWNER, trip_after=self.config.trip_after
        )
        for (item, outcome), done in zip(items, finished, strict=True):
            if done is None:
                continue  # reported meanwhile
            with _run_context(item.run, item.schedule):
                _log_outcome(outcome, item.run.attempt)
                await self._after_finish(done)
        if finished:
            self.wake()

    async def budgets_reached(self, over_budget: list[BudgetPause]) -> None:
        """Log and tell the chat of each schedule a fire paused at its budget (a claim's,
        or an event's run, `ScheduleService.emit_event`)."""
        for paused in over_budget:
            log.warning(
                "schedule paused: %s",
                paused.schedule.pause_reason,
                extra={"schedule_id": paused.schedule.id, "chat_id": paused.schedule.chat_id},
            )
            await self._notify(self.notifier.schedule_over_budget(paused))

    async def report_result(self, chat_id: int, run_id: str, report: ResultReport) -> Run:
        """Apply an agent's checked report on a run awaiting it, once, as a synchronous
        answer would end it (failure streak, breaker, a retry for a failure), and tell
        the chat. InvalidState if it is not awaiting a result (finished already, or
        never accepted with a 202); the service says RunNotFound before asking."""
        acquired = await self.store.awaited_run(chat_id, run_id)
        if acquired is None:
            raise InvalidState(
                "That run is not awaiting a result; it was reported or ended already."
            )
        run, schedule = acquired.run, acquired.schedule
        now = self.clock.now()
        if report.status == "succeeded":
            outcome = AttemptOutcome(RunStatus.SUCCEEDED, finished_at=now, output=report.summary)
        else:
            outcome = self._failure_outcome(
                run,
                schedule,
                f"the agent reported a failure: {report.summary or 'no details'}",
                uncertain=False,
                now=now,
            )
        duration = None
        if run.started_at is not None:
            duration = max(0, int((now - run.started_at).total_seconds() * 1000))
        outcome = dataclasses.replace(
            outcome,
            duration_ms=duration,
            summary=report.summary,
            outputs_url=report.outputs_url,
            log_excerpt=report.log_excerpt,
        )
        [finished] = await self.store.finish(
            [(acquired, outcome)], AWAITING_RESULT_OWNER, trip_after=self.config.trip_after
        )
        if finished is None:
            raise InvalidState(
                "That run is not awaiting a result; it was reported or ended already."
            )
        with _run_context(run, schedule):
            _log_outcome(outcome, run.attempt)
            await self._after_finish(finished)
        if outcome.status is RunStatus.FAILED or finished.then:
            self.wake()  # plan the retry, or start the plan's next step
        return finished.run

    async def _after_finish(self, finished: FinishedAttempt) -> None:
        if self.lifecycle is not None:
            # Before the chat is told, so a chained run starts without waiting on it.
            await self._notify(self.lifecycle.finished(finished.run, finished.schedule))
        await self._notify(self.notifier.run_finished(finished))
        if finished.tripped_now:
            await self._notify(self.notifier.schedule_tripped(finished))

    def _observe(self, call: Callable[[EngineObserver], None]) -> None:
        if self.observer is None:
            return
        try:
            call(self.observer)
        except Exception:
            log.exception("engine observer failed")

    @staticmethod
    async def _notify(call: Awaitable[None]) -> None:
        # A failing notifier (Telegram down) must never break the ledger.
        try:
            await call
        except Exception:
            log.exception("notifier failed")


#: Answers slower than this on average make the engine refill slots in small batches.
SLOW_ANSWER_SECONDS = 0.25
#: The weight of the latest answer in the moving average of answer times.
_ATTEMPT_WEIGHT = 0.05

#: Actions whose attempt is a dispatch to the agent.
_TO_AGENT = (ActionKind.AGENT, ActionKind.PLAN)


def _run_context(run: Run, schedule: Schedule) -> contextlib.AbstractContextManager[None]:
    return log_context(run_id=run.id, schedule_id=run.schedule_id, chat_id=schedule.chat_id)


def _log_outcome(outcome: AttemptOutcome, attempt: int) -> None:
    """One line per finished attempt; the run's ids come from the run's log context."""
    # The agent failing is the operator's concern, not a fault of Tickler: WARNING, and
    # ERROR stays for Tickler's own faults.
    level = logging.INFO if outcome.status is RunStatus.SUCCEEDED else logging.WARNING
    if not log.isEnabledFor(level):
        return
    fields: dict[str, object] = {"status": outcome.status.value, "attempt": attempt}
    if outcome.duration_ms is not None:
        fields["duration_ms"] = outcome.duration_ms
    if outcome.error:
        fields["error"] = outcome.error
    log.log(level, "run finished", extra=fields)


@lru_cache(maxsize=1024)
def _time_variables(fire: datetime, timezone: str) -> dict[str, str]:
    """The prompt variables of a fire instant (callers copy before adding their own):
    a burst renders thousands of prompts for the same instant."""
    return prompt_variables(fire=fire, timezone=timezone, schedule_name="", last_output=None)


def _reached(instant: datetime | None, now: datetime) -> bool:
    return instant is not None and instant <= now


@lru_cache(maxsize=1024)
def _render_at(text: str, fire: datetime, timezone: str) -> str:
    """A prompt that names no schedule and no earlier output, rendered for a fire."""
    return render(text, {**_time_variables(fire, timezone), "schedule_name": ""})


@lru_cache(maxsize=1024)
def _operator(owner_id: int, first_name: str) -> Operator:
    # Keyed by the plain values: hashing the Owner model costs more than the lookup.
    return Operator(id=owner_id, first_name=first_name)
