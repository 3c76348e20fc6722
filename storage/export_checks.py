"""The checks of one exported row, before `validate-export` passes it or `import` writes
it: every value has its column's type and fits it, what the schema requires is there,
ids are ids, statuses and kinds are ones Tickler knows, and a schedule's trigger, action
and policies (and a proposal's request) are ones Tickler would have made.

Each problem is one sentence that names the file and line (`schedules.jsonl:3: ...`),
so a hand-edited export is refused with what to fix, never with a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError

from scheduler.bundle_model import BundleSnapshot, BundleStatus
from scheduler.errors import InvalidSchedule
from scheduler.models import (
    Action,
    CreatedBy,
    PauseKind,
    Policies,
    RiskTier,
    RunStatus,
    RunTrigger,
    SkipReason,
)
from scheduler.proposal_model import ProposalRequest, ProposalStatus
from scheduler.repositories import NotificationStatus
from scheduler.triggers import make_trigger
from scheduler.work_item_model import Proof, WorkItemStatus
from storage.database import schema_columns

__all__ = ["MAX_ID_CHARS", "bundle_problems", "row_problems", "valid_time"]

#: Ids Tickler makes are 26-character ULIDs (schedules-as-code ids are shorter).
MAX_ID_CHARS = 30
_INT64 = (-(2**63), 2**63 - 1)
_TIME_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z$")

#: (file, key): the values Tickler writes there.
_KNOWN: dict[tuple[str, str], type[StrEnum]] = {
    ("schedules", "created_by"): CreatedBy,
    ("schedules", "pause_kind"): PauseKind,
    ("runs", "status"): RunStatus,
    ("runs", "trigger"): RunTrigger,
    ("runs", "skip_reason"): SkipReason,
    ("run_attempts", "status"): RunStatus,
    ("proposals", "status"): ProposalStatus,
    ("proposals", "tier"): RiskTier,
    ("work_items", "status"): WorkItemStatus,
    ("work_items", "proof"): Proof,
    ("notifications", "status"): NotificationStatus,
    ("bundles", "status"): BundleStatus,
}


def _model(model: type[BaseModel]) -> Callable[[dict[str, Any]], str | None]:
    def check(value: dict[str, Any]) -> str | None:
        try:
            model.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ").rstrip(".")
            return f"{where}: {message}" if where else message
        return None

    return check


def _trigger(value: dict[str, Any]) -> str | None:
    try:
        make_trigger(value)
    except InvalidSchedule as exc:
        return str(exc).rstrip(".")
    return None


#: (file, key): the domain check of a JSON value; None when sound, else why not.
_DOMAIN: dict[tuple[str, str], Callable[[dict[str, Any]], str | None]] = {
    ("schedules", "trigger"): _trigger,
    ("schedules", "action"): _model(Action),
    ("schedules", "policies"): _model(Policies),
    ("proposals", "request"): _model(ProposalRequest),
    ("bundles", "snapshot"): _model(BundleSnapshot),
}


def row_problems(
    file: str, fields: list[tuple[str, str, str]], item: Mapping[str, Any], where: str
) -> list[str]:
    """The problems of one row of `file` (`runs`, ...), each a sentence starting with
    `where`; `fields` are the file's (column, key, kind) triples."""
    columns = schema_columns()[file]
    problems: list[str] = []
    for column, key, kind in fields:
        value = item.get(key)
        declared, required = columns[column]
        if value is None:
            if required and kind != "count":
                problems.append(f"{where}: no {key}.")
            continue
        problem = _type_problem(key, kind, declared, value)
        is_id = key == "id" or key.endswith("_id")
        if problem is None and is_id and isinstance(value, str) and len(value) > MAX_ID_CHARS:
            problem = f"{key} is longer than {MAX_ID_CHARS} characters"
        if problem is None and (file, key) in _KNOWN:
            known = _KNOWN[file, key]
            if value not in {member.value for member in known}:
                names = ", ".join(member.value for member in known)
                problem = f"unknown {key} {value!r} (known: {names})"
        if problem is None and (file, key) in _DOMAIN and isinstance(value, dict):
            why = _DOMAIN[file, key](value)
            if why is not None:
                problem = f"invalid {key}: {why}"
        if problem is not None:
            problems.append(f"{where}: {problem}.")
    return problems


def _type_problem(key: str, kind: str, declared: str, value: Any) -> str | None:
    if kind == "bool":
        return None if isinstance(value, bool) else f"{key} must be true or false"
    if kind == "count":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT64[1]:
            return f"{key} must be a whole number, 0 or more"
        return None
    if kind == "json":
        return None if isinstance(value, dict) else f"{key} must be a JSON object"
    if kind == "time":
        if isinstance(value, str) and valid_time(value):
            return None
        return f"{key} {value!r} is not an ISO-8601 UTC time"
    if declared == "TEXT":
        return None if isinstance(value, str) else f"{key} must be a string"
    if declared == "INTEGER":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{key} must be a whole number"
        if not _INT64[0] <= value <= _INT64[1]:
            return f"{key} is beyond the 64-bit integer range"
    return None


def valid_time(value: str) -> bool:
    """An export's time: UTC ISO-8601 with `Z`, microseconds or none."""
    if not _TIME_TEXT.match(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def bundle_problems(data: Mapping[str, list[tuple[int, dict[str, Any]]]]) -> list[str]:
    """The template → bundle → step relationships of an export's rows (each reference
    resolving is checked with the others): a bundle's template is a workflow template of
    the same chat, and a work item of a bundle is one of its task steps, once."""
    problems: list[str] = []
    templates = {
        item.get("id"): item for _, item in data.get("schedules", []) if isinstance(item, dict)
    }
    bundles: dict[Any, dict[str, Any]] = {}
    for number, bundle in data.get("bundles", []):
        where = f"bundles.jsonl:{number}"
        bundles[bundle.get("id")] = bundle
        template = templates.get(bundle.get("template_id"))
        if template is None:
            continue  # the reference check said so
        action = template.get("action")
        kind = action.get("kind") if isinstance(action, dict) else None
        if kind != "bundle":
            problems.append(
                f"{where}: its template {template.get('id')!r} is not a workflow template "
                f"(its action kind is {kind or 'agent'}, not bundle)."
            )
        elif template.get("chat_id") != bundle.get("chat_id"):
            problems.append(
                f"{where}: its chat_id is not its template {template.get('id')!r}'s chat."
            )
    for number, schedule in data.get("schedules", []):
        # A prompt step's one-time schedule is `<bundle id>.<step>`.
        prefix, dot, step_text = str(schedule.get("id") or "").rpartition(".")
        owner = bundles.get(prefix) if dot and step_text.isdigit() else None
        snapshot = owner.get("snapshot") if owner is not None else None
        steps = snapshot.get("steps") if isinstance(snapshot, dict) else None
        if owner is None or not isinstance(steps, list):
            continue
        index = int(step_text)
        if not 1 <= index <= len(steps) or _is_task(steps[index - 1]):
            problems.append(
                f"schedules.jsonl:{number}: {schedule.get('id')!r} names step {index} of "
                f"bundle {prefix!r}, which is not one of its agent steps."
            )
    for number, item in data.get("work_items", []):
        where = f"work_items.jsonl:{number}"
        bundle_id, step = item.get("bundle_id"), item.get("bundle_step")
        if (bundle_id is None) != (step is None):
            problems.append(f"{where}: bundle_id and bundle_step go together; give both or none.")
            continue
        owner = bundles.get(bundle_id)
        if owner is None:
            continue  # not a bundle's step, or the reference check said so
        snapshot = owner.get("snapshot")
        steps = snapshot.get("steps") if isinstance(snapshot, dict) else None
        if not isinstance(steps, list) or not isinstance(step, int):
            continue  # the row checks said so
        if not 1 <= step <= len(steps) or not _is_task(steps[step - 1]):
            problems.append(
                f"{where}: bundle_step {step} is not a task step of bundle {bundle_id!r} "
                f"(it has {len(steps)} steps)."
            )
        elif item.get("chat_id") != owner.get("chat_id"):
            problems.append(f"{where}: its chat_id is not its bundle {bundle_id!r}'s chat.")
    return problems


def _is_task(step: object) -> bool:
    return isinstance(step, dict) and step.get("kind") == "task"
