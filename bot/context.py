"""What handlers reach through `context`: `context.services`, the `Services` that
`bot.app.open_services` builds whole before the Application exists.

`build_application` hands them to PTB through `ApplicationBuilder.application_class`
(the documented way to give an Application more constructor arguments) and
`ContextTypes(context=Context)` makes every handler's `context` a `Context`, whose
`services` is typed: no handler reads `bot_data` or casts.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from telegram.ext import Application, CallbackContext, ExtBot, JobQueue

from adapters.agent_routing import ChatRoutingDispatcher
from bot.loop_watchdog import LoopWatchdog
from bot.metrics import Metrics
from bot.notifier import TelegramNotifier
from bot.settings import Settings
from bot.telegram_side import TelegramSide
from scheduler.bundles import BundleService
from scheduler.chat_agents import ChatAgentService
from scheduler.clock import Clock
from scheduler.engine import Engine
from scheduler.home import HomeService
from scheduler.proposals import ProposalService
from scheduler.service import ScheduleService
from scheduler.sinks import SinkService
from scheduler.work_items import WorkItemService
from storage.bundle import SqlStore

__all__ = ["Bot", "Context", "Server", "Services", "Started", "TicklerApp"]


@dataclass(frozen=True)
class Services:
    """Everything the handlers, the HTTP API and the sweeps use, all of it there from the
    start: the store is open and SCHEDULES_FILE applied before a handler can run."""

    settings: Settings
    clock: Clock
    store: SqlStore
    #: The schedules and their runs (every command on a schedule goes through it).
    service: ScheduleService
    #: The agent's proposals (HTTP API, tool calls) and their approvals.
    proposals: ProposalService
    #: The operator's work items (tasks and follow-ups).
    work_items: WorkItemService
    #: Workflow templates' bundles (their card, their steps' buttons, backfill).
    bundles: BundleService
    engine: Engine
    #: Each chat's runs and messages to its own agent, or to AGENT_URL's.
    dispatcher: ChatRoutingDispatcher
    #: Chats' own agents (/agent, the API, schedules.yaml's `agents:`).
    agents: ChatAgentService
    #: What the engine reports goes to the chat through it (and its outbox).
    notifier: TelegramNotifier
    metrics: Metrics

    @property
    def sinks(self) -> SinkService:
        """A chat's notification sinks (scheduler/sinks.py)."""
        return SinkService(self.store.sinks, self.clock.now, lambda: secrets.token_hex(32))

    @property
    def home(self) -> HomeService:
        """What /today and the Mini App's Home show (scheduler/home.py)."""
        store = self.store
        return HomeService(
            self.service,
            self.work_items,
            self.bundles,
            store.schedules,
            store.runs,
            store.proposals,
        )

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.settings.admin_ids

    def is_allowed(self, user_id: int | None) -> bool:
        return user_id is not None and (
            user_id in self.settings.admin_ids or user_id in self.settings.operator_ids
        )


class Server(Protocol):
    """The HTTP server as `stop_services` knows it (bot.http_api.HttpServer)."""

    async def stop(self) -> None: ...


@dataclass
class Started:
    """What `bot.app.start_services` started, until `stop_services` stops it. Not
    services: none of it exists before the start, and no handler uses it."""

    http: Server | None = None
    #: The engine's loop; /healthz reports whether it is alive.
    engine: asyncio.Task[None] | None = None
    #: The periodic sweeps (proposal expiry, follow-ups, retention), by task name; the
    #: outbox's is the Telegram side's (only the replica that sends runs it).
    sweeps: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    watchdog: LoopWatchdog | None = None
    #: Telegram answered getMe: until then the engine runs and the outbox holds messages.
    telegram_connected: bool = False
    #: Whether this replica polls Telegram and sends the outbox (with PostgreSQL, the one
    #: holding the Telegram lease; on SQLite always).
    telegram: TelegramSide | None = None


Data = dict[Any, Any]
#: The bot with PTB's rate limiter (AIORateLimiter's per-call argument is an int).
Bot = ExtBot[int]


class TicklerApp(Application[Bot, "Context", Data, Data, Data, JobQueue["Context"]]):
    """PTB's Application, carrying the `Services` it was built around."""

    def __init__(self, *, services: Services, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.services: Final = services
        self.started = Started()


class Context(CallbackContext[Bot, Data, Data, Data]):
    """The `context` of every handler: PTB's, plus `services`."""

    def __init__(
        self, application: TicklerApp, chat_id: int | None = None, user_id: int | None = None
    ) -> None:
        super().__init__(application, chat_id, user_id)
        self.services: Final = application.services
