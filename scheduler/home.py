"""Operations Home: everything that needs the operator now, gathered once for /today in
the chat and for the Mini App's Home page, so both show the same groups.

Pure: the stores and services are injected and `now` is passed in; nothing here reads
a clock or speaks Telegram.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from scheduler.bundles import BundleCard, BundleService
from scheduler.errors import InvalidState, shown
from scheduler.models import Run, RunStatus, Schedule
from scheduler.proposal_model import Proposal, ProposalStatus
from scheduler.repositories import ProposalRepository, RunRepository, ScheduleRepository
from scheduler.service import ScheduleService
from scheduler.work_items import Today, WorkItemService

__all__ = [
    "FAILED_WINDOW",
    "HomeService",
    "OperationsHome",
    "is_follow_up_date",
    "parse_follow_up",
]

#: Failed, dead and uncertain runs of this long ago still show on Home.
FAILED_WINDOW = timedelta(hours=24)
_RELATIVE = re.compile(r"^(\d{1,3})([hdw])$", re.IGNORECASE)
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
#: A follow-up given as a date is due at this local time.
_FOLLOW_UP_TIME = time(9, 0)


def is_follow_up_date(text: str) -> bool:
    """Whether `text` reads as a follow-up date (`3d`, `2w`, `12h`, `2026-12-01`)."""
    text = text.strip()
    return bool(_RELATIVE.match(text) or re.match(r"^\d{4}-\d{2}-\d{2}$", text))


def parse_follow_up(text: str, now: datetime, zone: str) -> datetime:
    """`3d`, `2w`, `12h` from `now`, or `YYYY-MM-DD` (at 09:00 in `zone`)."""
    text = text.strip()
    match = _RELATIVE.match(text)
    if match:
        return now + int(match.group(1)) * _UNITS[match.group(2).lower()]
    try:
        day = datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise InvalidState(
            f"'{shown(text)}' is not a date; use 3d, 2w, 12h or a date like 2026-12-01."
        ) from None
    return datetime.combine(day, _FOLLOW_UP_TIME, ZoneInfo(zone))


@dataclass(frozen=True)
class OperationsHome:
    """The chat's home at `now`: its work items by group, its active bundles, what waits
    for approval, its tripped schedules and its runs that failed in FAILED_WINDOW."""

    now: datetime
    #: The chat's zone (the page's own time, and items without a schedule).
    zone: str
    today: Today
    bundles: list[BundleCard]
    #: Pending proposals, newest first.
    proposals: list[Proposal]
    #: Runs held for a per-run approval, newest first.
    awaiting: list[Run]
    tripped: list[Schedule]
    #: Failed, dead and unknown runs finished in FAILED_WINDOW, newest first.
    failed: list[Run]
    #: The chat's schedules by id (names and zones of the runs and items above).
    schedules: dict[str, Schedule]

    def name(self, schedule_id: str) -> str:
        schedule = self.schedules.get(schedule_id)
        return schedule.name if schedule else schedule_id

    def zone_for(self, schedule_id: str | None) -> str:
        """A schedule's times are shown in its own zone; the rest in the chat's."""
        schedule = self.schedules.get(schedule_id) if schedule_id else None
        return schedule.timezone if schedule else self.zone


class HomeService:
    def __init__(
        self,
        service: ScheduleService,
        work_items: WorkItemService,
        bundles: BundleService,
        schedules: ScheduleRepository,
        runs: RunRepository,
        proposals: ProposalRepository,
    ) -> None:
        self.service = service
        self.work_items = work_items
        self.bundles = bundles
        self.schedules = schedules
        self.runs = runs
        self.proposals = proposals

    async def gather(self, chat_id: int, now: datetime) -> OperationsHome:
        zone = await self.service.chat_timezone(chat_id)
        today = await self.work_items.today(chat_id, now, zone)
        proposals = await self.proposals.list_for_chat(
            chat_id, statuses=[ProposalStatus.PENDING], limit=50
        )
        awaiting = await self.runs.list_for_chat(
            chat_id, statuses=[RunStatus.AWAITING_APPROVAL], limit=50
        )
        schedules = {s.id: s for s in await self.schedules.list_for_chat(chat_id)}
        failed = [
            r
            for r in await self.runs.list_for_chat(
                chat_id, statuses=[RunStatus.FAILED, RunStatus.DEAD, RunStatus.UNKNOWN], limit=100
            )
            if (r.finished_at or r.updated_at) >= now - FAILED_WINDOW
        ]
        return OperationsHome(
            now=now,
            zone=zone,
            today=today,
            bundles=await self.bundles.active(chat_id),
            proposals=proposals,
            awaiting=awaiting,
            tripped=[s for s in schedules.values() if s.tripped and s.archived_at is None],
            failed=failed,
            schedules=schedules,
        )
