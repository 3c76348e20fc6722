"""Conversions between rows and domain models; the only place that knows column types."""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from scheduler.engine_store import EngineInstance
from scheduler.errors import InvalidSchedule, UnreadableSchedule
from scheduler.models import (
    Action,
    Owner,
    Policies,
    RiskTier,
    Run,
    RunStatus,
    RunTrigger,
    Schedule,
    SkipReason,
)
from scheduler.proposal_model import Proposal, ProposalRequest, ProposalStatus
from scheduler.triggers import Trigger, make_trigger

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_trigger_adapter: TypeAdapter[Trigger] = TypeAdapter(Trigger)


@lru_cache(maxsize=4096)
def to_db_time(instant: datetime) -> str:
    # Cached: a burst writes the same few instants (the fire, "now") thousands of
    # times, and strftime is the slowest step of writing a run.
    if instant.tzinfo is None:
        raise ValueError("naive datetime reached the store")
    utc = instant.astimezone(UTC)
    if utc.year < 1000:
        # isoformat pads the year to four digits, strftime does not: keep what is stored.
        return utc.strftime(_TIME_FORMAT)
    # The same text as strftime(_TIME_FORMAT), at a third of its cost: an attempt's
    # start and end instants are all different, so they miss the cache above.
    return utc.isoformat(timespec="microseconds")[:-6] + "Z"


def opt_time(instant: datetime | None) -> str | None:
    return None if instant is None else to_db_time(instant)


def from_db_time(text: str | None) -> datetime | None:
    return None if text is None else _parse_db_time(text)


@lru_cache(maxsize=4096)
def _parse_db_time(text: str) -> datetime:
    # fromisoformat reads the trailing Z (3.11+) and costs far less than strptime; cached
    # because a burst reads the same few instants (the fire, "now") thousands of times.
    return datetime.fromisoformat(text)


def req_time(text: str) -> datetime:
    value = from_db_time(text)
    assert value is not None
    return value


SCHEDULE_COLUMNS = (
    "id, chat_id, name, description, trigger_json, action_json, policies_json, owner_id, "
    "owner_name, enabled, paused_by, pause_reason, next_run_at, last_run_at, "
    "consecutive_failures, tripped, created_by, created_at, updated_at, archived_at, number, "
    "pause_kind"
)


def schedule_params(s: Schedule) -> dict[str, Any]:
    return {
        "id": s.id,
        "chat_id": s.chat_id,
        "name": s.name,
        "description": s.description,
        "trigger_json": s.trigger.model_dump_json(),
        "action_json": s.action.model_dump_json(),
        "policies_json": s.policies.model_dump_json(),
        "owner_id": s.owner.id,
        "owner_name": s.owner.first_name,
        "enabled": int(s.enabled),
        "paused_by": s.paused_by,
        "pause_reason": s.pause_reason,
        "next_run_at": opt_time(s.next_run_at),
        "last_run_at": opt_time(s.last_run_at),
        "consecutive_failures": s.consecutive_failures,
        "tripped": int(s.tripped),
        "created_by": s.created_by.value,
        "created_at": to_db_time(s.created_at),
        "updated_at": to_db_time(s.updated_at),
        "archived_at": opt_time(s.archived_at),
        "number": s.number,
        "pause_kind": s.pause_kind.value if s.pause_kind is not None else None,
    }


# The JSON columns repeat across schedules and across reads of one schedule (each claim
# and each acquisition reads it); the parsed models are frozen, so they can be shared.
@lru_cache(maxsize=8192)
def _trigger(text: str) -> Trigger:
    return _trigger_adapter.validate_json(text)


@lru_cache(maxsize=1024)
def _action(text: str) -> Action:
    return Action.model_validate_json(text)


@lru_cache(maxsize=1024)
def _policies(text: str) -> Policies:
    return Policies.model_validate_json(text)


@lru_cache(maxsize=1024)
def _owner(owner_id: int, first_name: str) -> Owner:
    return Owner(id=owner_id, first_name=first_name)


#: Schedules whose fires were just claimed, by the exact values their rows hold after
#: the claim (SCHEDULE_COLUMNS order). Starting a claimed run reads the schedule again;
#: the claim knows what that read will return (`remember_claimed`), so the second read
#: is a lookup (`started_schedule`) instead of parsing. Equal values make an equal (frozen)
#: model, so a hit is never stale; a row changed since (an edit) simply misses.
_CLAIMED: OrderedDict[tuple[Any, ...], Schedule] = OrderedDict()
#: Bounds the memory (~2 KB each); a larger backlog parses the rest again.
_CLAIMED_KEPT = 8192
_S_NEXT_RUN_AT = 12
_S_UPDATED_AT = 18
assert [c.strip() for c in SCHEDULE_COLUMNS.split(",")][_S_NEXT_RUN_AT] == "next_run_at"
assert [c.strip() for c in SCHEDULE_COLUMNS.split(",")][_S_UPDATED_AT] == "updated_at"


def schedule_from_row(row: Any) -> Schedule:
    """The schedule of a row holding SCHEDULE_COLUMNS in order (or those values)."""
    return _schedule_from_values(tuple(row))


def started_schedule(values: tuple[Any, ...]) -> Schedule:
    """`schedule_from_row` for the engine starting a run, which reads a schedule once
    per claimed fire: taken from what the claim noted, when the row is unchanged."""
    schedule = _CLAIMED.pop(values, None)
    return _schedule_from_values(values) if schedule is None else schedule


def claimed_schedule(schedule: Schedule, next_run_at: datetime | None, now: datetime) -> Schedule:
    """`schedule` as a claim that moved its `next_run_at` leaves its row
    (schedules.advance_many): what reading the row again would return."""
    return schedule.model_copy(
        update={
            "next_run_at": from_db_time(opt_time(next_run_at)),
            "updated_at": from_db_time(to_db_time(now)),
        }
    )


def remember_claimed(
    values: tuple[Any, ...], schedule: Schedule, next_run_at: datetime | None, now: datetime
) -> None:
    """Note the row of `schedule` (read as `values`) as a claim that moved its
    `next_run_at` left it (schedules.advance_many), for `started_schedule`."""
    after = list(values)
    after[_S_NEXT_RUN_AT] = opt_time(next_run_at)
    after[_S_UPDATED_AT] = to_db_time(now)
    key = tuple(after)
    if len(_CLAIMED) >= _CLAIMED_KEPT:
        # The oldest claim first. (A plain dict would do, but finding its first key
        # after many deletions walks every deleted slot.)
        _CLAIMED.popitem(last=False)
    _CLAIMED[key] = claimed_schedule(schedule, next_run_at, now)


def _schedule_from_values(v: tuple[Any, ...]) -> Schedule:
    try:
        return _decode_schedule(v)
    except (ValueError, TypeError, KeyError) as exc:
        raise UnreadableSchedule(
            str(v[0]), int(v[1]), str(v[2]), _unreadable_because(v, exc)
        ) from exc


def _unreadable_because(v: tuple[Any, ...], exc: Exception) -> str:
    """Which part of a schedule row cannot be decoded, as a sentence."""
    try:
        make_trigger(json.loads(v[4]))
    except InvalidSchedule as bad:
        return f"its trigger is invalid. {bad}"
    except (ValueError, TypeError, AttributeError):
        return "its trigger is not valid JSON."
    for part, decode, text in (("action", _action, v[5]), ("policies", _policies, v[6])):
        try:
            decode(text)
        except ValidationError as bad:
            first = bad.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or part
            return f"its {part} is invalid ({where}: {first['msg']})."
        except (ValueError, TypeError):
            return f"its {part} is invalid."
    return f"a column is invalid ({str(exc)[:200]})."


def _decode_schedule(v: tuple[Any, ...]) -> Schedule:
    return Schedule(
        id=v[0],
        chat_id=v[1],
        name=v[2],
        description=v[3],
        trigger=_trigger(v[4]),
        action=_action(v[5]),
        policies=_policies(v[6]),
        owner=_owner(v[7], v[8]),
        enabled=bool(v[9]),
        paused_by=v[10],
        pause_reason=v[11],
        next_run_at=from_db_time(v[12]),
        last_run_at=from_db_time(v[13]),
        consecutive_failures=v[14],
        tripped=bool(v[15]),
        created_by=v[16],
        created_at=req_time(v[17]),
        updated_at=req_time(v[18]),
        archived_at=from_db_time(v[19]),
        number=v[20],
        pause_kind=v[21],
    )


RUN_COLUMNS = (
    "id, schedule_id, chat_id, scheduled_for, trigger, status, attempt, next_attempt_at, "
    "started_at, finished_at, duration_ms, output, error, token_usage_json, owner, "
    "created_at, updated_at, skip_reason, summary, outputs_url, log_excerpt, plan_run_id, step"
)


def run_row(r: Run) -> tuple[Any, ...]:
    """The values of a run's row, in RUN_COLUMNS order (bound by position: a burst
    inserts thousands, and binding by name looks each one up)."""
    usage = r.token_usage
    return (
        r.id,
        r.schedule_id,
        r.chat_id,
        to_db_time(r.scheduled_for),
        r.trigger.value,
        r.status.value,
        r.attempt,
        opt_time(r.next_attempt_at),
        opt_time(r.started_at),
        opt_time(r.finished_at),
        r.duration_ms,
        r.output,
        r.error,
        None if usage is None else json.dumps(usage),
        r.owner,
        to_db_time(r.created_at),
        to_db_time(r.updated_at),
        None if r.skip_reason is None else r.skip_reason.value,
        r.summary,
        r.outputs_url,
        r.log_excerpt,
        r.plan_run_id,
        r.step,
    )


def run_from_row(row: Any) -> Run:
    """The run of a row holding RUN_COLUMNS in order (by position: faster than by name)."""
    usage = row[13]
    return Run(
        id=row[0],
        schedule_id=row[1],
        chat_id=row[2],
        scheduled_for=req_time(row[3]),
        trigger=RunTrigger(row[4]),
        status=RunStatus(row[5]),
        attempt=row[6],
        next_attempt_at=from_db_time(row[7]),
        started_at=from_db_time(row[8]),
        finished_at=from_db_time(row[9]),
        duration_ms=row[10],
        output=row[11],
        error=row[12],
        token_usage=None if usage is None else json.loads(usage),
        # A succeeded run's owner stands for its derived first attempt (storage/runs.py,
        # DERIVED_ATTEMPT); the run itself, finished, has no owner.
        owner=None if row[5] == "succeeded" else row[14],
        created_at=req_time(row[15]),
        updated_at=req_time(row[16]),
        skip_reason=None if row[17] is None else SkipReason(row[17]),
        summary=row[18],
        outputs_url=row[19],
        log_excerpt=row[20],
        plan_run_id=row[21],
        step=row[22],
    )


def started_run_from_row(row: Any, owner: str, now: datetime) -> Run:
    """The run of a ready row as `runs.mark_running` leaves it: one model, not a model
    and a copy of it."""
    usage = row[13]
    return Run(
        id=row[0],
        schedule_id=row[1],
        chat_id=row[2],
        scheduled_for=req_time(row[3]),
        trigger=RunTrigger(row[4]),
        status=RunStatus.RUNNING,
        attempt=row[6] + 1,
        next_attempt_at=from_db_time(row[7]),
        started_at=now,
        finished_at=from_db_time(row[9]),
        duration_ms=row[10],
        output=row[11],
        error=None,
        token_usage=None if usage is None else json.loads(usage),
        owner=owner,
        created_at=req_time(row[15]),
        updated_at=now,
        plan_run_id=row[21],
        step=row[22],
    )


def instance_from_row(row: Any) -> EngineInstance:
    return EngineInstance(
        id=row["id"],
        host=row["host"],
        pid=row["pid"],
        started_at=req_time(row["started_at"]),
        heartbeat_at=req_time(row["heartbeat_at"]),
        stopped_at=from_db_time(row["stopped_at"]),
    )


PROPOSAL_COLUMNS = (
    "id, chat_id, request_json, tier, status, schedule_id, proposed_by, decided_by, "
    "decided_at, expires_at, refusal, created_at"
)


def proposal_params(p: Proposal) -> dict[str, Any]:
    return {
        "id": p.id,
        "chat_id": p.chat_id,
        "request_json": p.request.model_dump_json(),
        "tier": p.tier.value,
        "status": p.status.value,
        "schedule_id": p.schedule_id,
        "proposed_by": p.proposed_by,
        "decided_by": p.decided_by,
        "decided_at": opt_time(p.decided_at),
        "expires_at": opt_time(p.expires_at),
        "refusal": p.refusal,
        "created_at": to_db_time(p.created_at),
    }


def proposal_from_row(row: Any) -> Proposal:
    return Proposal(
        id=row["id"],
        chat_id=row["chat_id"],
        request=ProposalRequest.model_validate_json(row["request_json"]),
        tier=RiskTier(row["tier"]),
        status=ProposalStatus(row["status"]),
        schedule_id=row["schedule_id"],
        proposed_by=row["proposed_by"],
        decided_by=row["decided_by"],
        decided_at=from_db_time(row["decided_at"]),
        expires_at=from_db_time(row["expires_at"]),
        refusal=row["refusal"],
        created_at=req_time(row["created_at"]),
    )
