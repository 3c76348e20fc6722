"""A schedule's definition as it is written, before the service checks it: the trigger
spec, the per-chat limits, and the pure functions that turn a spec into a trigger.

Core, not service: risk classification, proposals and the service all read these,
and none of them may import another's module for it (that was an import cycle).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from scheduler.cron import load_zone
from scheduler.errors import InvalidSchedule
from scheduler.triggers import (
    NON_CALENDAR,
    CronTrigger,
    IntervalTrigger,
    Trigger,
    cron_trigger,
    event_trigger,
    interval_trigger,
    make_trigger,
    once_trigger,
)

__all__ = [
    "SCHEDULE_ID_PATTERN",
    "Limits",
    "TriggerSpec",
    "check_schedule_id",
    "first_fire",
    "never_fires",
    "never_fires_after",
    "trigger_from_spec",
    "with_zone",
]


# 30 characters at most: the longest button data that carries an id (a missed-fires
# answer, `m:latest:<id>:<epoch>:<epoch>`) must fit Telegram's 64 bytes.
SCHEDULE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,29}")


def check_schedule_id(schedule_id: str) -> str:
    """A chosen schedule id (schedules.yaml), whole: fullmatch, because `$` would let a
    trailing newline through into button data, URLs and log lines."""
    if not SCHEDULE_ID_PATTERN.fullmatch(schedule_id):
        raise InvalidSchedule(
            "Give the schedule an id of up to 30 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit.",
            field="id",
        )
    return schedule_id


@dataclass(frozen=True)
class Limits:
    """Per-chat limits; a request beyond them is refused with the limit named."""

    max_schedules_per_chat: int = 100
    min_interval_seconds: int = 60
    max_prompt_chars: int = 4000
    max_name_chars: int = 80


class TriggerSpec(BaseModel):
    """A trigger as an operator or the agent writes it, before validation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["cron", "interval", "once", "event", "startup", "after"]
    cron: str | None = None
    #: The event an event trigger listens to (`deploy`).
    name: str | None = None
    #: The schedule an after trigger follows, and on which outcome of its runs.
    schedule: str | None = None
    on: Literal["success", "failure", "any"] | None = None
    timezone: str | None = None
    every_seconds: int | None = None
    start_at: datetime | None = None
    at: datetime | None = None


def trigger_from_spec(spec: TriggerSpec, now: datetime, default_timezone: str = "UTC") -> Trigger:
    """The trigger `spec` describes (without a zone it keeps `default_timezone`; an
    interval without a start starts at `now`); InvalidSchedule with one sentence."""
    zone = spec.timezone or default_timezone
    if spec.kind == "cron":
        if not spec.cron:
            raise InvalidSchedule(
                "A cron schedule needs an expression, like '0 9 * * 1-5'.", field="trigger.cron"
            )
        return cron_trigger(spec.cron, zone)
    if spec.kind == "interval":
        if spec.every_seconds is None:
            raise InvalidSchedule(
                "An interval schedule needs its length, like every 2 hours.",
                field="trigger.every_seconds",
            )
        return interval_trigger(spec.every_seconds, spec.start_at or now, zone)
    if spec.kind == "event":
        if not spec.name:
            raise InvalidSchedule(
                "An event schedule needs the event's name, like 'deploy'.", field="trigger.name"
            )
        return event_trigger(spec.name, zone)
    if spec.kind == "startup":
        return make_trigger({"kind": "startup", "timezone": zone})
    if spec.kind == "after":
        if not spec.schedule:
            raise InvalidSchedule(
                "An after schedule needs the id of the schedule it follows.",
                field="trigger.schedule",
            )
        return make_trigger(
            {"kind": "after", "schedule": spec.schedule, "on": spec.on or "any", "timezone": zone}
        )
    if spec.at is None:
        raise InvalidSchedule("A one-time schedule needs the instant it fires.", field="trigger.at")
    return once_trigger(spec.at, now, zone)


def with_zone(trigger: Trigger, zone: str) -> Trigger:
    """`trigger` in another zone: a cron's fires move with it; an interval's grid and a
    one-time instant stay where they are and are only shown in the new zone."""
    name = load_zone(zone).key
    if isinstance(trigger, CronTrigger):
        return cron_trigger(trigger.expr, name)
    return trigger.model_copy(update={"timezone": name})


def never_fires() -> InvalidSchedule:
    """The refusal of a trigger with no fire after it is made."""
    return InvalidSchedule("That schedule would never fire.", field="trigger")


def never_fires_after(trigger: Trigger, now: datetime) -> bool:
    """A calendar trigger with no fire after `now`; an event, startup or after trigger
    fires on something happening, has no calendar fire and is never refused for it."""
    return not isinstance(trigger, NON_CALENDAR) and first_fire(trigger, now) is None


def first_fire(trigger: Trigger, now: datetime) -> datetime | None:
    """The first fire of a schedule created at `now` (an interval may start at `now`)."""
    if isinstance(trigger, IntervalTrigger) and trigger.start_at >= now:
        return trigger.start_at
    return trigger.next_after(now)
