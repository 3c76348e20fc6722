"""Conversions between rows and domain models; the only place that knows column types."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter

from scheduler.models import (
    Action,
    Owner,
    Policies,
    RiskTier,
    Run,
    RunStatus,
    RunTrigger,
    Schedule,
)
from scheduler.proposals import Proposal, ProposalRequest, ProposalStatus
from scheduler.store import EngineInstance
from scheduler.triggers import Trigger

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_trigger_adapter: TypeAdapter[Trigger] = TypeAdapter(Trigger)


@lru_cache(maxsize=4096)
def to_db_time(instant: datetime) -> str:
    # Cached: a burst writes the same few instants (the fire, "now") thousands of
    # times, and strftime is the slowest step of writing a run.
    if instant.tzinfo is None:
        raise ValueError("naive datetime reached the store")
    return instant.astimezone(UTC).strftime(_TIME_FORMAT)


def opt_time(instant: datetime | None) -> str | None:
    return None if instant is None else to_db_time(instant)


def from_db_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    # fromisoformat is ~50x faster than strptime and reads the trailing Z (3.11+).
    return datetime.fromisoformat(text)


def req_time(text: str) -> datetime:
    value = from_db_time(text)
    assert value is not None
    return value


SCHEDULE_COLUMNS = (
    "id, chat_id, name, description, trigger_json, action_json, policies_json, owner_id, "
    "owner_name, enabled, paused_by, pause_reason, next_run_at, last_run_at, "
    "consecutive_failures, tripped, created_by, created_at, updated_at, archived_at"
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


def schedule_from_row(row: Any) -> Schedule:
    return Schedule(
        id=row["id"],
        chat_id=row["chat_id"],
        name=row["name"],
        description=row["description"],
        trigger=_trigger(row["trigger_json"]),
        action=_action(row["action_json"]),
        policies=_policies(row["policies_json"]),
        owner=_owner(row["owner_id"], row["owner_name"]),
        enabled=bool(row["enabled"]),
        paused_by=row["paused_by"],
        pause_reason=row["pause_reason"],
        next_run_at=from_db_time(row["next_run_at"]),
        last_run_at=from_db_time(row["last_run_at"]),
        consecutive_failures=row["consecutive_failures"],
        tripped=bool(row["tripped"]),
        created_by=row["created_by"],
        created_at=req_time(row["created_at"]),
        updated_at=req_time(row["updated_at"]),
        archived_at=from_db_time(row["archived_at"]),
    )


RUN_COLUMNS = (
    "id, schedule_id, chat_id, scheduled_for, trigger, status, attempt, next_attempt_at, "
    "started_at, finished_at, duration_ms, output, error, token_usage_json, owner, "
    "created_at, updated_at"
)


def run_params(r: Run) -> dict[str, Any]:
    return {
        "id": r.id,
        "schedule_id": r.schedule_id,
        "chat_id": r.chat_id,
        "scheduled_for": to_db_time(r.scheduled_for),
        "trigger": r.trigger.value,
        "status": r.status.value,
        "attempt": r.attempt,
        "next_attempt_at": opt_time(r.next_attempt_at),
        "started_at": opt_time(r.started_at),
        "finished_at": opt_time(r.finished_at),
        "duration_ms": r.duration_ms,
        "output": r.output,
        "error": r.error,
        "token_usage_json": None if r.token_usage is None else json.dumps(r.token_usage),
        "owner": r.owner,
        "created_at": to_db_time(r.created_at),
        "updated_at": to_db_time(r.updated_at),
    }


def run_from_row(row: Any) -> Run:
    usage = row["token_usage_json"]
    return Run(
        id=row["id"],
        schedule_id=row["schedule_id"],
        chat_id=row["chat_id"],
        scheduled_for=req_time(row["scheduled_for"]),
        trigger=RunTrigger(row["trigger"]),
        status=RunStatus(row["status"]),
        attempt=row["attempt"],
        next_attempt_at=from_db_time(row["next_attempt_at"]),
        started_at=from_db_time(row["started_at"]),
        finished_at=from_db_time(row["finished_at"]),
        duration_ms=row["duration_ms"],
        output=row["output"],
        error=row["error"],
        token_usage=None if usage is None else json.loads(usage),
        owner=row["owner"],
        created_at=req_time(row["created_at"]),
        updated_at=req_time(row["updated_at"]),
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
