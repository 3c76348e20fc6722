"""Everything durable the services are built on: the engine store and one repository
per aggregate, opened and closed together (`storage.sqlite_store.SqliteStore`,
`storage.postgres.store.PostgresStore`)."""

from __future__ import annotations

from typing import Protocol

from scheduler.bundle_model import BundleRepository
from scheduler.chat_agents import ChatAgentRepository
from scheduler.engine_store import EngineStore
from scheduler.repositories import (
    ChatRepository,
    EventRepository,
    OperationsRepository,
    OutboxRepository,
    ProposalRepository,
    RunRepository,
    ScheduleRepository,
)
from scheduler.sinks import SinkRepository
from scheduler.work_item_model import WorkItemRepository

__all__ = ["Stores"]


class Stores(Protocol):
    @property
    def engine(self) -> EngineStore: ...

    @property
    def schedules(self) -> ScheduleRepository: ...

    @property
    def runs(self) -> RunRepository: ...

    @property
    def events(self) -> EventRepository: ...

    @property
    def proposals(self) -> ProposalRepository: ...

    @property
    def work_items(self) -> WorkItemRepository: ...

    @property
    def bundles(self) -> BundleRepository: ...

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def chats(self) -> ChatRepository: ...

    @property
    def agents(self) -> ChatAgentRepository: ...

    @property
    def operations(self) -> OperationsRepository: ...

    @property
    def sinks(self) -> SinkRepository: ...

    @property
    def write_failure(self) -> str | None:
        """Why writes fail now (one sentence for the operator), or None."""

    async def close(self) -> None:
        """Release the database; every store and repository is unusable afterwards."""
