"""A schedule's settings changed one at a time, from text: its policies and, for a task,
the proof it needs, whom it is for and its instructions.

    missed skip|catch_up_once|catch_up_all     catchup N (the catch_up_all cap)
    overlap skip|queue|allow                   attempts N       backoff 30s   backoff_cap 15m
    timeout 300s     on_timeout retry|ask      approval on|off
    budget_runs N|off       budget_tokens N|off    (per week: the last 7 days)
    proof link|file|none     assignee NAME|none     instructions TEXT|none   (tasks only)

The limits are the models' own (`Policies`, `RetryPolicy`): the ones the HTTP API and
schedules.yaml are held to. This module only reads the text and words the refusal: one
sentence that names what is allowed ("Overlap must be skip, queue or allow.").
`policies_from` is the same check for a whole mapping (schedules.yaml).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from annotated_types import Ge, Gt, Le
from pydantic import BaseModel, ValidationError

from scheduler.errors import InvalidSchedule
from scheduler.models import (
    Action,
    ActionKind,
    MissedRunPolicy,
    OverlapPolicy,
    Policies,
    RetryPolicy,
    TimeoutPolicy,
)

__all__ = [
    "ACTION_SETTINGS",
    "POLICY_SETTINGS",
    "SETTINGS",
    "Setting",
    "check_backoff",
    "check_task_details",
    "edit_action",
    "edit_policies",
    "format_seconds",
    "policies_from",
]

Kind = Literal["choice", "count", "limit", "seconds", "switch", "text"]


@dataclass(frozen=True)
class Setting:
    """One setting an operator may change by name (`/edit ID <name> <value>`)."""

    name: str
    label: str  # how the refusal names it: "Overlap must be ..."
    path: tuple[str, ...]  # where it lives in Policies (or the Action field)
    kind: Kind
    example: str
    choices: tuple[str, ...] = ()


def _values(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


POLICY_SETTINGS: tuple[Setting, ...] = (
    Setting("missed", "Missed runs", ("missed_run",), "choice", "skip", _values(MissedRunPolicy)),
    Setting("catchup", "The catch-up cap", ("catch_up_cap",), "count", "10"),
    Setting("overlap", "Overlap", ("overlap",), "choice", "queue", _values(OverlapPolicy)),
    Setting("attempts", "Attempts", ("retry", "max_attempts"), "count", "3"),
    Setting("backoff", "The backoff base", ("retry", "base_seconds"), "seconds", "30s"),
    Setting("backoff_cap", "The backoff cap", ("retry", "cap_seconds"), "seconds", "15m"),
    Setting("timeout", "The timeout", ("timeout_seconds",), "seconds", "5m"),
    Setting(
        "on_timeout", "On timeout", ("timeout_policy",), "choice", "ask", _values(TimeoutPolicy)
    ),
    Setting("approval", "Run approval", ("requires_run_approval",), "switch", "on", ("on", "off")),
    Setting("budget_runs", "The runs budget", ("budget_runs_per_week",), "limit", "10"),
    Setting("budget_tokens", "The tokens budget", ("budget_tokens_per_week",), "limit", "100000"),
)
ACTION_SETTINGS: tuple[Setting, ...] = (
    Setting("proof", "Proof", ("proof",), "choice", "link", ("link", "file", "none")),
    Setting("assignee", "The assignee", ("assignee",), "text", "Sam"),
    Setting("instructions", "The instructions", ("instructions",), "text", "Attach the receipt"),
)
SETTINGS: dict[str, Setting] = {s.name: s for s in (*POLICY_SETTINGS, *ACTION_SETTINGS)}

#: Words that clear an optional task detail.
_NONE = {"none", "-", "no", "nobody", "off"}
_SWITCH = {"on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?)?")
_UNIT = {"s": 1, "m": 60, "h": 3600}
MAX_ASSIGNEE = 80


def _bounds(model: type[BaseModel], field: str) -> tuple[float | None, bool, float | None]:
    """The field's lower bound (and whether it is strict) and upper bound, read from the
    model so that the sentence can never disagree with the check."""
    low: float | None = None
    strict = False
    high: float | None = None
    for rule in model.model_fields[field].metadata:
        if isinstance(rule, Ge):
            low = float(rule.ge)  # type: ignore[arg-type]
        elif isinstance(rule, Gt):
            low, strict = float(rule.gt), True  # type: ignore[arg-type]
        elif isinstance(rule, Le):
            high = float(rule.le)  # type: ignore[arg-type]
    return low, strict, high


def _owner(path: tuple[str, ...]) -> tuple[type[BaseModel], str]:
    return (RetryPolicy, path[1]) if path[0] == "retry" else (Policies, path[0])


def format_seconds(seconds: float) -> str:
    """`30s`, `15m`, `1h`, `90s`: the largest whole unit."""
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    for unit, size in (("h", 3600), ("m", 60)):
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def check_backoff(policies: Policies) -> Policies:
    """`policies`, or InvalidSchedule when the retry delay's cap is below its base (the
    model checks each alone; the pair is only known once both are set)."""
    retry = policies.retry
    if retry.cap_seconds < retry.base_seconds:
        raise InvalidSchedule(
            f"The backoff cap ({format_seconds(retry.cap_seconds)}) must be at least the "
            f"backoff base ({format_seconds(retry.base_seconds)}); change backoff_cap or "
            "backoff first.",
            field="policies.retry.cap_seconds",
        )
    return policies


def _refusal(setting: Setting) -> str:
    if setting.kind in ("choice", "switch"):
        *head, last = setting.choices
        return f"{setting.label} must be {', '.join(head)} or {last}."
    model, field = _owner(setting.path)
    low, strict, high = _bounds(model, field)
    if setting.kind == "count":
        return f"{setting.label} must be a whole number from {int(low or 0)} to {int(high or 0)}."
    if setting.kind == "limit":
        return (
            f"{setting.label} must be a whole number per week from {int(low or 0)} to "
            f"{int(high or 0):,}, or off."
        )
    lowest = "more than 0s" if strict or not low else f"at least {format_seconds(low)}"
    return (
        f"{setting.label} must be a duration {lowest} and at most "
        f"{format_seconds(high or 0)}, like {setting.example}."
    )


def _parse(setting: Setting, text: str) -> Any:
    value = text.strip()
    lowered = value.lower()
    if setting.kind == "choice":
        if lowered not in setting.choices:
            raise InvalidSchedule(_refusal(setting))
        return lowered
    if setting.kind == "switch":
        if lowered not in _SWITCH:
            raise InvalidSchedule(_refusal(setting))
        return _SWITCH[lowered]
    if setting.kind == "count":
        if not re.fullmatch(r"\d{1,9}", value):
            raise InvalidSchedule(_refusal(setting))
        return int(value)
    if setting.kind == "limit":
        if lowered in _NONE:
            return None
        digits = value.replace(",", "").replace("_", "")
        if not re.fullmatch(r"\d{1,12}", digits):
            raise InvalidSchedule(_refusal(setting))
        return int(digits)
    match = _DURATION.fullmatch(lowered)
    if match is None:
        raise InvalidSchedule(_refusal(setting))
    unit = (match.group(2) or "s")[0]
    return float(match.group(1)) * _UNIT[unit]


def _setting(name: str, group: tuple[Setting, ...]) -> Setting:
    setting = SETTINGS.get(name)
    if setting is None or setting not in group:
        raise KeyError(name)
    return setting


def edit_policies(policies: Policies, name: str, text: str) -> Policies:
    """`policies` with the setting `name` set from `text`; InvalidSchedule (one
    sentence) for a value outside what the model allows. KeyError for an unknown name."""
    setting = _setting(name, POLICY_SETTINGS)
    value = _parse(setting, text)
    data = policies.model_dump()
    target = data
    for part in setting.path[:-1]:
        target = target[part]
    target[setting.path[-1]] = value
    try:
        return Policies.model_validate(data)
    except ValidationError:
        raise InvalidSchedule(_refusal(setting)) from None


def edit_action(action: Action, name: str, text: str, *, max_instructions: int) -> Action:
    """A task's proof, assignee or instructions set from `text` ("none" clears it);
    InvalidSchedule (one sentence) for a bad value or an action that is not a task."""
    setting = _setting(name, ACTION_SETTINGS)
    if action.kind is not ActionKind.TASK:
        raise InvalidSchedule(
            f"{setting.label} belongs to a task; this schedule "
            f"{'asks the agent' if action.kind is ActionKind.AGENT else 'is a reminder'}."
        )
    value: str | None = " ".join(text.split()) if setting.name != "instructions" else text.strip()
    if not value or value.lower() in _NONE:
        value = None if setting.name != "instructions" else ""
    elif setting.name == "proof":
        value = _parse(setting, value)
    edited = action.model_copy(update={setting.path[0]: value})
    check_task_details(edited, max_instructions=max_instructions)
    return edited


def check_task_details(action: Action, *, max_instructions: int) -> None:
    """Refuse an assignee or instructions too long to show (InvalidSchedule)."""
    if action.assignee is not None and len(action.assignee) > MAX_ASSIGNEE:
        raise InvalidSchedule(
            f"The assignee is {len(action.assignee)} characters; the limit is {MAX_ASSIGNEE}.",
            field="action.assignee",
        )
    if len(action.instructions) > max_instructions:
        raise InvalidSchedule(
            f"The instructions are {len(action.instructions)} characters; the limit is "
            f"{max_instructions}.",
            field="action.instructions",
        )


def policies_from(data: Mapping[str, Any]) -> Policies:
    """Policies from a mapping (schedules.yaml's `policies:`), refused with the sentence
    the chat gives for the first bad setting."""
    try:
        return check_backoff(Policies.model_validate(dict(data)))
    except ValidationError as exc:
        location = tuple(str(part) for part in exc.errors()[0]["loc"])
        for setting in POLICY_SETTINGS:
            if setting.path == location:
                raise InvalidSchedule(_refusal(setting)) from None
        where = ".".join(location) or "policies"
        raise InvalidSchedule(f"Unknown or invalid policy '{where}'.") from None
