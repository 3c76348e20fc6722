"""Process wiring: open the store, build the dispatcher and engine from settings, run
until SIGTERM/SIGINT, then shut down gracefully."""

from __future__ import annotations

import asyncio
import logging
import signal

from bot.loop_watchdog import LoopWatchdog
from bot.settings import Settings
from scheduler.clock import Clock, SystemClock, parse_test_clock
from scheduler.dispatch import HttpAgentDispatcher
from scheduler.engine import Engine, EngineConfig
from scheduler.work_items import WorkItemService
from storage.sqlite_store import SqliteStore

__all__ = ["build_clock", "run_engine"]

log = logging.getLogger("tickler")


def build_dispatcher(settings: Settings) -> HttpAgentDispatcher:
    return HttpAgentDispatcher(
        url=settings.agent_url,
        mode=settings.agent_mode,
        secret=settings.agent_secret.get_secret_value() if settings.agent_secret else None,
        token=settings.agent_token.get_secret_value() if settings.agent_token else None,
        model=settings.agent_model,
        max_connections=settings.max_concurrency,
    )


def build_clock(settings: Settings) -> Clock:
    """The clock everything in the process reads: the system's, or the accelerated fake
    clock of TICKLER_TEST_CLOCK (tests only; loudly logged)."""
    if not settings.tickler_test_clock:
        return SystemClock()
    clock = parse_test_clock(settings.tickler_test_clock)
    log.warning(
        "TICKLER_TEST_CLOCK is set: time runs %gx fast from %s (for tests only)",
        clock.speed,
        clock.now().isoformat(),
    )
    return clock


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        max_concurrency=settings.max_concurrency,
        shutdown_grace=settings.shutdown_grace_seconds,
        trip_after=settings.trip_after,
    )


async def run_engine(settings: Settings) -> None:
    """The headless engine: fires schedules until a stop signal, then drains."""
    settings.database_path.parent.mkdir(parents=True, exist_ok=True)
    store = await SqliteStore.open(settings.database_path)
    dispatcher = build_dispatcher(settings)
    clock = build_clock(settings)
    engine = Engine(
        store,
        clock,
        dispatcher,
        config=engine_config(settings),
        tasks=WorkItemService(store, clock),
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, engine.request_stop)
    log.info(
        "engine started",
        extra={"instance": engine.instance_id, "database": str(settings.database_path)},
    )
    watchdog = LoopWatchdog()
    watchdog.start()
    try:
        await engine.run_forever()
    finally:
        watchdog.stop()
        await dispatcher.aclose()
        await store.close()
        log.info("engine stopped", extra={"instance": engine.instance_id})
