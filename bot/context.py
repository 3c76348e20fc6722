"""What handlers reach through `context`: the services opened by `start_services`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from telegram.ext import ContextTypes

from adapters.agent_dispatch import HttpAgentDispatcher
from bot.loop_watchdog import LoopWatchdog
from bot.settings import Settings
from scheduler.clock import Clock
from scheduler.engine import Engine
from scheduler.proposals import ProposalService
from scheduler.service import ScheduleService
from scheduler.work_items import WorkItemService
from storage.sqlite_store import SqliteStore

if TYPE_CHECKING:
    from bot.notifier import TelegramNotifier

__all__ = ["Services", "services"]

SERVICES_KEY = "services"


@dataclass
class Services:
    settings: Settings
    clock: Clock
    store: SqliteStore
    service: ScheduleService
    engine: Engine
    dispatcher: HttpAgentDispatcher
    engine_task: asyncio.Task[None] | None = None
    #: The agent's proposals (HTTP API, tool calls) and their approvals.
    proposals: ProposalService | None = None
    #: The proposal expiry sweep (bot/proposal_expiry.py), cancelled by `stop_services`.
    proposal_task: asyncio.Task[None] | None = None
    #: The operator's work items (tasks and follow-ups), and the follow-up ping loop.
    work_items: WorkItemService | None = None
    followup_task: asyncio.Task[None] | None = None
    #: The outbox's delivery sweep (bot/outbox.py), cancelled by `stop_services`.
    outbox_task: asyncio.Task[None] | None = None
    #: The daily history pruning (bot/retention.py); None when RETENTION_DAYS is 0.
    retention_task: asyncio.Task[None] | None = None
    watchdog: LoopWatchdog | None = None
    #: Telegram answered getMe: until then the engine runs and the outbox holds messages.
    telegram_connected: bool = False
    #: What the engine reports goes to the chat through it (and its outbox).
    notifier: TelegramNotifier | None = None
    #: Background sends (alerts) still in progress, awaited at shutdown.
    pending: set[asyncio.Task[None]] = field(default_factory=set)

    def is_admin(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self.settings.admin_ids

    def is_allowed(self, user_id: int | None) -> bool:
        return user_id is not None and (
            user_id in self.settings.admin_ids or user_id in self.settings.operator_ids
        )


def services(context: ContextTypes.DEFAULT_TYPE) -> Services:
    return cast(Services, context.application.bot_data[SERVICES_KEY])
