"""How risky an agent's proposal is, and whether it is allowed at all (SPEC "Proposals
and approvals").

`classify` is pure: it takes the request, `now`, the chat's limits and how many
schedules the chat has, and returns a `RiskDecision`. No clock, no store.

    refusal  beyond the chat's limits (max schedules, minimum interval, prompt length)
             or not a valid trigger, whatever the tier
    high     fires more often than hourly (two consecutive fires less than an hour
             apart; more than 168 fires a week implies it); or the agent says high
    medium   an agent action that is not low
    low      a reminder (it only sends a message); or a schedule that fires at most
             once a day: at most 7 fires in its first week and no two within 23 hours
             (23, not 24: a daily fire is 23 hours after the previous one on the day
             clocks spring forward); a one-time schedule fires once, so it is low too

The agent's hint (`risk_hint`, and `policies.risk_tier` when it sends policies) can
raise the tier, never lower it. Frequency is measured from the first fire on, so an
interval that starts next month is judged by how often it will fire, not by the empty
week before it starts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from scheduler.errors import InvalidSchedule, about
from scheduler.models import ActionKind, RiskTier
from scheduler.specs import Limits, first_fire, never_fires, never_fires_after, trigger_from_spec
from scheduler.templates import load_template
from scheduler.triggers import NON_CALENDAR, IntervalTrigger, OnceTrigger, Trigger

if TYPE_CHECKING:
    from scheduler.proposal_model import ProposalRequest

__all__ = [
    "DAILY_GAP",
    "RiskDecision",
    "classify",
    "describe_duration",
    "measure",
    "raise_tier",
]

WEEK = timedelta(days=7)
#: "More often than hourly": two fires closer than this.
HOUR = timedelta(hours=1)
#: At most once a day: no two fires closer than this (a spring-forward day is 23 h).
DAILY_GAP = timedelta(hours=23)
#: Fires walked at most to measure a trigger; a denser one is extrapolated.
_SAMPLE_LIMIT = 1000
#: A sparse trigger (weekly, monthly) is walked until this many fires to measure it...
_SPARSE_SAMPLE = 8
#: ...but never further ahead than this.
_HORIZON = timedelta(days=400)

_ORDER = {RiskTier.LOW: 0, RiskTier.MEDIUM: 1, RiskTier.HIGH: 2}


@dataclass(frozen=True)
class RiskDecision:
    tier: RiskTier
    #: How many times it fires in a week (a one-time schedule: 1); extrapolated for
    #: very dense triggers, averaged over several weeks for sparse ones.
    runs_per_week: float
    #: Why this tier, in words for the operator.
    reasons: list[str] = field(default_factory=list)
    #: Set when the proposal is refused: the one sentence saying why.
    refusal: str | None = None
    #: The part of the request the refusal is about (InvalidSchedule.field).
    refusal_field: str | None = None


def raise_tier(tier: RiskTier, other: RiskTier | None) -> RiskTier:
    """The higher of the two tiers."""
    if other is None or _ORDER[other] <= _ORDER[tier]:
        return tier
    return other


def measure(trigger: Trigger, first: datetime) -> tuple[float, timedelta | None]:
    """(fires per week, the closest two consecutive fires) from the `first` fire on."""
    if isinstance(trigger, OnceTrigger):
        return 1.0, None
    if isinstance(trigger, IntervalTrigger):
        every = timedelta(seconds=trigger.every_seconds)
        return WEEK / every, every
    if isinstance(trigger, NON_CALENDAR):
        return 0.0, None
    # A week of the schedule's own wall clock: a daily job fires 7 times in it even
    # when a DST change makes it 167 or 169 hours long.
    end = (first.astimezone(trigger.zone) + WEEK).astimezone(UTC)
    fires = [first]
    for cursor in itertools.islice(trigger.fires(first), _SAMPLE_LIMIT - 1):
        if cursor - first > _HORIZON:
            break
        if cursor >= end and len(fires) >= _SPARSE_SAMPLE:
            break
        fires.append(cursor)
    gaps = [b - a for a, b in itertools.pairwise(fires)]
    closest = min(gaps) if gaps else None
    if len(fires) < 2:
        return 1.0, closest
    in_week = sum(1 for f in fires if f < end)
    dense = len(fires) >= _SAMPLE_LIMIT and fires[-1] < end
    if in_week >= 2 and not dense:
        return float(in_week), closest
    # Too dense to walk a whole week, or weekly and sparser: the average rate over
    # the fires walked.
    return (len(fires) - 1) / ((fires[-1] - first) / WEEK), closest


def classify(
    request: ProposalRequest,
    *,
    now: datetime,
    limits: Limits,
    active_count: int,
    timezone: str = "UTC",
) -> RiskDecision:
    """The tier of `request` and whether it is refused; see the module docstring.
    `timezone` is the zone of a cron that names none (the chat's)."""
    hint = request.risk_hint
    if request.policies is not None:
        hint = raise_tier(request.policies.risk_tier, hint)
    try:
        trigger = trigger_from_spec(request.trigger, now, timezone)
        first = first_fire(trigger, now)
        if never_fires_after(trigger, now):
            raise never_fires()
    except InvalidSchedule as exc:
        return RiskDecision(RiskTier.HIGH, 0.0, ["its trigger is not valid"], str(exc), exc.field)
    if isinstance(trigger, NON_CALENDAR) or first is None:
        return _event_decision(request, trigger, hint, limits, active_count)
    runs_per_week, closest = measure(trigger, first)

    reasons: list[str] = []
    # More often than hourly: two fires less than an hour apart. (More than 168 fires
    # in 168 hours implies that; a wall-clock week that falls back has 169 hours, in
    # which an hourly job rightly fires 169 times without being more than hourly.)
    if closest is not None and closest < HOUR:
        tier = RiskTier.HIGH
        reasons.append(f"it fires more often than hourly{_rate(runs_per_week, closest)}")
    elif request.action.kind is ActionKind.REMINDER:
        tier = RiskTier.LOW
        reasons.append("it only sends a reminder to this chat; no agent is involved")
    elif runs_per_week <= 7 and (closest is None or closest >= DAILY_GAP):
        tier = RiskTier.LOW
        reasons.append("it fires only once" if closest is None else "it fires at most once a day")
    else:
        tier = RiskTier.MEDIUM
        reasons.append(
            f"your agent acts on its own more than once a day{_rate(runs_per_week, closest)}"
        )
    raised = raise_tier(tier, hint)
    if raised is not tier:
        reasons.append(f"your agent rated it {raised.value}")
    try:
        _check_limits(request, trigger, closest, limits, active_count)
    except InvalidSchedule as exc:
        return RiskDecision(raised, runs_per_week, reasons, str(exc), exc.field)
    return RiskDecision(raised, runs_per_week, reasons)


def _event_decision(
    request: ProposalRequest,
    trigger: Trigger,
    hint: RiskTier | None,
    limits: Limits,
    active_count: int,
) -> RiskDecision:
    """An event, startup or after trigger: how often it fires is up to something else
    (whoever posts events, restarts, another schedule), so nothing bounds it here and an
    admin approves it (medium at least)."""
    tier = raise_tier(RiskTier.MEDIUM, hint)
    reasons = [f"it fires {trigger.describe()}, however often that comes"]
    try:
        _check_limits(request, trigger, None, limits, active_count)
    except InvalidSchedule as exc:
        return RiskDecision(tier, 0.0, reasons, str(exc), exc.field)
    return RiskDecision(tier, 0.0, reasons)


def _check_limits(
    request: ProposalRequest,
    trigger: Trigger,
    closest: timedelta | None,
    limits: Limits,
    active_count: int,
) -> None:
    """InvalidSchedule when the request is beyond the chat's limits."""
    if active_count >= limits.max_schedules_per_chat:
        raise InvalidSchedule(
            f"This chat already has {limits.max_schedules_per_chat} schedules, the limit; "
            "archive one with /delete first."
        )
    minimum = timedelta(seconds=limits.min_interval_seconds)
    if isinstance(trigger, IntervalTrigger) and trigger.every_seconds < limits.min_interval_seconds:
        raise InvalidSchedule(
            f"The interval must be at least {describe_duration(minimum)}.",
            field="trigger.every_seconds",
        )
    if closest is not None and closest < minimum:
        raise InvalidSchedule(
            f"It would fire {describe_duration(closest)} apart at the closest; schedules here "
            f"must be at least {describe_duration(minimum)} apart.",
            field="trigger",
        )
    action = request.action
    field = "action.template" if action.template else "action.text"
    with about("action.template"):
        text = load_template(action.template) if action.template else action.text
    if len(text) > limits.max_prompt_chars:
        raise InvalidSchedule(
            f"The prompt is {len(text)} characters; the limit is {limits.max_prompt_chars}.",
            field=field,
        )


def _rate(runs_per_week: float, closest: timedelta | None) -> str:
    parts = [f"about {round(runs_per_week)} runs a week"]
    if closest is not None:
        parts.append(f"{describe_duration(closest)} apart at the closest")
    return " (" + ", ".join(parts) + ")"


def describe_duration(span: timedelta) -> str:
    """`30 minutes`, `1 hour`, `2 days`, `90 seconds`: the largest whole unit."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}" + ("s" if count != 1 else "")
    return f"{seconds} seconds"
