"""Prometheus metrics, in a registry of their own (never the global one, so two bots in
one process, as in tests, do not collide).

Histograms are fed by the engine through its observer hook as attempts start and end;
gauges are read from the store when /metrics is scraped, so they are right even after
a restart and cost nothing between scrapes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from scheduler.engine import Engine
from scheduler.models import Run, RunStatus
from scheduler.repositories import OperationsRepository, Pruned

__all__ = ["Metrics"]

_DISPATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_LAG_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0)


class Metrics:
    """The engine's observer (`scheduler.engine.EngineObserver`) and the /metrics page."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.runs = Gauge(
            "tickler_runs",
            "Runs in the ledger, by status.",
            ["status"],
            registry=self.registry,
        )
        self.due_backlog = Gauge(
            "tickler_due_runs",
            "Ready runs (pending, or failed and due for a retry) due now and not started.",
            registry=self.registry,
        )
        self.due_schedules = Gauge(
            "tickler_due_schedules",
            "Schedules due now whose fire is not claimed yet: held for a free slot "
            "(at most 10 s; older ones are queued as pending runs).",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "tickler_runs_in_flight",
            "Attempts this process is running right now.",
            registry=self.registry,
        )
        self.tripped = Gauge(
            "tickler_tripped_schedules",
            "Active schedules paused by their circuit breaker.",
            registry=self.registry,
        )
        self.last_tick_age = Gauge(
            "tickler_engine_last_tick_age_seconds",
            "Seconds since the engine loop last began an iteration (engine clock).",
            registry=self.registry,
        )
        self.dispatch = Histogram(
            "tickler_dispatch_duration_seconds",
            "How long one attempt took (agent request or reminder), by outcome.",
            ["status"],
            buckets=_DISPATCH_BUCKETS,
            registry=self.registry,
        )
        self.fire_lag = Histogram(
            "tickler_fire_lag_seconds",
            "From a run's scheduled instant to its first attempt's start, by trigger.",
            ["trigger"],
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
        self.pruned = Counter(
            "tickler_history_pruned",
            "Rows deleted by the retention sweep (RETENTION_DAYS), by kind: runs, "
            "attempts, notifications.",
            ["kind"],
            registry=self.registry,
        )

    # --- retention --------------------------------------------------------------------
    def history_pruned(self, pruned: Pruned) -> None:
        """Told by the retention sweep (bot/retention.py) after each pass."""
        self.pruned.labels("runs").inc(pruned.runs)
        self.pruned.labels("attempts").inc(pruned.attempts)
        self.pruned.labels("notifications").inc(pruned.notifications)

    # --- EngineObserver ---------------------------------------------------------------
    def attempt_started(self, run: Run, lag_s: float) -> None:
        # Only the first attempt: a retry's distance from the fire is its backoff.
        if run.attempt == 1:
            self.fire_lag.labels(run.trigger.value).observe(max(0.0, lag_s))

    def attempt_finished(self, run: Run, duration_s: float, status: RunStatus) -> None:
        self.dispatch.labels(status.value).observe(max(0.0, duration_s))

    # --- scraping ---------------------------------------------------------------------
    async def render(self, operations: OperationsRepository, engine: Engine) -> bytes:
        """The text exposition format, gauges refreshed from the store."""
        now = engine.clock.now()
        counts = await operations.count_runs_by_status()
        for status in RunStatus:
            self.runs.labels(status.value).set(counts.get(status, 0))
        self.due_backlog.set(await operations.count_due_runs(now))
        self.due_schedules.set(await operations.count_due_schedules(now))
        self.tripped.set(await operations.count_tripped_schedules())
        self.in_flight.set(engine.in_flight)
        if engine.last_tick_at is not None:
            self.last_tick_age.set(max(0.0, (now - engine.last_tick_at).total_seconds()))
        return generate_latest(self.registry)
