"""Process wiring: open the store, build the dispatcher and engine from settings, run
until SIGTERM/SIGINT, then shut down gracefully."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Literal

from adapters.agent_routing import AgentSpec, ChatRoutingDispatcher
from adapters.clocks import SystemClock, parse_test_clock
from adapters.process import host_name, pid_alive, process_id, tune_gc
from bot import redact
from bot.loop_watchdog import LoopWatchdog
from bot.schedules_file import UnusableFile, apply_schedules_file
from bot.settings import Settings
from scheduler.bundles import BundleService
from scheduler.chat_agents import ChatAgentService
from scheduler.clock import Clock
from scheduler.dispatching import Dispatcher
from scheduler.engine import (
    BundleSink,
    Engine,
    EngineConfig,
    EngineObserver,
    Notifier,
    ReminderSender,
    TaskSink,
)
from scheduler.engine_store import EngineStore
from scheduler.models import Run
from scheduler.service import LifecycleFires, ScheduleService
from scheduler.work_items import WorkItemService
from storage.bundle import SqlStore
from storage.locations import is_postgres, open_store, shown

__all__ = [
    "EngineSide",
    "apply_configured_schedules",
    "build_clock",
    "build_engine",
    "log_started",
    "open_database",
    "run_engine",
    "warn_if_nobody_served",
    "wire_engine",
]

#: How the process serves: Telegram by long polling or webhook, or the engine alone.
Mode = Literal["polling", "webhook", "engine"]

log = logging.getLogger("tickler")


def default_agent(settings: Settings) -> AgentSpec:
    """The agent of AGENT_URL and its settings: every chat's unless it has its own."""
    return AgentSpec(
        url=settings.agent_url,
        mode=settings.agent_mode,
        secret=settings.agent_secret.get_secret_value() if settings.agent_secret else None,
        token=settings.agent_token.get_secret_value() if settings.agent_token else None,
        model=settings.agent_model,
    )


def build_dispatcher(settings: Settings, store: SqlStore) -> ChatRoutingDispatcher:
    """Each chat's runs to its own agent (`/agent`), the others to AGENT_URL's."""
    routing = ChatRoutingDispatcher(
        default_agent(settings),
        store.agents,
        max_connections=settings.max_concurrency,
        on_secrets=redact.remember,
    )
    # Built now so that a bad AGENT_URL stops the start, not the first fire hours later.
    routing.dispatcher(routing.default)
    return routing


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


def build_engine(
    store: EngineStore,
    clock: Clock,
    dispatcher: Dispatcher,
    *,
    config: EngineConfig,
    notifier: Notifier | None = None,
    reminders: ReminderSender | None = None,
    tasks: TaskSink | None = None,
    bundles: BundleSink | None = None,
    observer: EngineObserver | None = None,
) -> Engine:
    """The engine of this process: it knows its host and pid, and asks the OS whether
    an engine of this host that went silent is still alive."""
    return Engine(
        store,
        clock,
        dispatcher,
        config=config,
        notifier=notifier,
        reminders=reminders,
        tasks=tasks,
        bundles=bundles,
        observer=observer,
        host=host_name(),
        pid=process_id(),
        is_alive=pid_alive,
    )


@dataclass(frozen=True)
class EngineSide:
    """The engine and the services wired around it, as the bot and `tickler engine`
    both need them."""

    engine: Engine
    service: ScheduleService
    work_items: WorkItemService
    bundles: BundleService
    agents: ChatAgentService


def wire_engine(
    settings: Settings,
    store: SqlStore,
    clock: Clock,
    dispatcher: ChatRoutingDispatcher,
    *,
    config: EngineConfig,
    notifier: Notifier | None = None,
    reminders: ReminderSender | None = None,
    observer: EngineObserver | None = None,
    on_notice: Callable[[int], None] | None = None,
    on_approval_asked: Callable[[list[Run]], Awaitable[None]] | None = None,
) -> EngineSide:
    """The engine with its sinks, the schedule service with its hooks (wake, results,
    approvals asked by events), the lifecycle fires and the chat agents: one wiring
    for both processes; the bot adds its chat (`notifier`, `reminders`, `on_notice`,
    `on_approval_asked`)."""
    work_items = WorkItemService(store.work_items, clock)
    bundles = BundleService(store, clock, work_items, on_notice=on_notice)
    engine = build_engine(
        store.engine,
        clock,
        dispatcher,
        config=config,
        notifier=notifier,
        reminders=reminders,
        tasks=work_items,
        bundles=bundles,
        observer=observer,
    )
    bundles.on_change = engine.wake
    service = ScheduleService(
        store,
        clock,
        default_timezone=settings.default_timezone,
        on_change=engine.wake,
        on_result=engine.report_result,
        on_approval_asked=on_approval_asked,
        on_over_budget=engine.budgets_reached,
    )
    engine.lifecycle = LifecycleFires(
        service,
        {*settings.admin_ids, *settings.operator_ids, *settings.api_chat_ids},
        step_finished=bundles.step_finished,
    )
    agents = ChatAgentService(store.agents, clock, on_change=dispatcher.invalidate)
    return EngineSide(engine, service, work_items, bundles, agents)


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        max_concurrency=settings.max_concurrency,
        shutdown_grace=settings.shutdown_grace_seconds,
        trip_after=settings.trip_after,
    )


async def apply_configured_schedules(
    settings: Settings,
    service: ScheduleService,
    clock: Clock,
    agents: ChatAgentService | None = None,
) -> None:
    """Apply SCHEDULES_FILE (if set) for the allow-listed chats, logging what changed and
    one line per refused entry; `tickler run` and `tickler engine` both start with it.
    A file that cannot be applied as a whole stops the start (UnusableFile)."""
    if settings.schedules_file is None:
        return
    chats = {*settings.admin_ids, *settings.operator_ids, *settings.api_chat_ids}
    report = await apply_schedules_file(
        settings.schedules_file, service, now=clock.now(), chats=chats, agents=agents
    )
    if report.unusable is not None:
        raise UnusableFile(
            f"Cannot start: {report.unusable} (SCHEDULES_FILE={settings.schedules_file})"
        )
    log.info("applied %s: %s", settings.schedules_file, report.summary())
    for error in report.errors:
        log.error("%s", error)


def warn_if_nobody_served(settings: Settings) -> None:
    if not settings.admin_ids and not settings.operator_ids:
        log.warning(
            "ADMIN_IDS and OPERATOR_IDS are both empty, so the bot serves nobody: set "
            "ADMIN_IDS to your Telegram user id (`tickler doctor` checks every setting)"
        )


async def open_database(settings: Settings) -> SqlStore:
    """The store of `settings.database`, created and migrated if need be; a SQLite
    file's folder is made first (a PostgreSQL database must exist already)."""
    where = settings.database
    if not is_postgres(where):
        settings.database_path.parent.mkdir(parents=True, exist_ok=True)
    return await open_store(where)


async def log_started(settings: Settings, store: SqlStore, mode: Mode, **fields: object) -> None:
    """The one line that says the process is up, and with what."""
    log.info(
        "started",
        extra={
            "version": _version(),
            "mode": mode,
            "database": shown(settings.database),
            "timezone": settings.default_timezone,
            "schedules": await store.operations.count_all_schedules(),
            **fields,
        },
    )


def _version() -> str:
    try:
        return version("tickler")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


async def run_engine(
    settings: Settings, install_stop: Callable[[Callable[[], None]], None]
) -> None:
    """The headless engine: fires schedules until a stop signal, then drains.
    `install_stop(stop)` makes SIGTERM and SIGINT call `stop` (bot.__main__ does)."""
    # Signals first: a SIGTERM during start-up (a slow database) still stops it.
    stop = asyncio.Event()
    install_stop(stop.set)
    store = await open_database(settings)
    try:
        await _run_engine(settings, store, stop)
    finally:
        await store.close()


async def _run_engine(settings: Settings, store: SqlStore, stop: asyncio.Event) -> None:
    dispatcher = build_dispatcher(settings, store)
    clock = build_clock(settings)
    side = wire_engine(settings, store, clock, dispatcher, config=engine_config(settings))
    engine, service, chat_agents = side.engine, side.service, side.agents
    try:
        await apply_configured_schedules(settings, service, clock, chat_agents)
        await log_started(settings, store, "engine", instance=engine.instance_id)
        stopper = asyncio.create_task(_stop_on(stop, engine), name="stop-signal")
        watchdog = LoopWatchdog()
        watchdog.start()
        try:
            tune_gc()
            await engine.run_forever()
        finally:
            watchdog.stop()
            stopper.cancel()
            log.info("engine stopped", extra={"instance": engine.instance_id})
    finally:
        await dispatcher.aclose()


async def _stop_on(stop: asyncio.Event, engine: Engine) -> None:
    """A stop asked for before the loop began counts too (request_stop is sticky)."""
    await stop.wait()
    engine.request_stop()
