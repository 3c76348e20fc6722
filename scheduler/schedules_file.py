"""Schedules as code: a YAML file of schedules with stable ids, applied idempotently.

    schedules:
      - id: daily-brief
        chat_id: 123456789
        name: Daily brief
        cron: "0 8 * * 1-5"          # or every: 2h / 30m / 1d / 3600, or at: ISO instant
        timezone: Europe/Berlin
        template: daily_brief        # or prompt: "..." (agent) or remind: "..." (reminder)
                                     # or bundle: {lead_days: 7, steps: [...]} (a template)
        policies: {missed_run: skip}

New ids are created (created_by=config), changed ones updated, config-created schedules
whose ids left the file are paused with REMOVED_REASON (never deleted), unchanged ones
are left alone; applying the same file twice changes nothing. A bad entry is reported
as "schedules.yaml line N: <sentence>" and the others are still applied.

The file is trusted no more than a chat: an entry for a chat outside the allow-list
(ADMIN_IDS, OPERATOR_IDS, API_CHAT_IDS) is refused, and so is an id another chat's
schedule already has (ids are unique across chats). A file that cannot be applied as a
whole (unreadable, not UTF-8, not YAML, not a `schedules:` list, the same id on two
entries) changes nothing and is `ApplyReport.unusable`: start-up stops on it with that
line, since which of two entries was meant is the operator's to say. An empty file
changes nothing either, with a warning: "no schedules" must be said with an explicit
`schedules: []`, so that a truncated file cannot pause them all.

This module is the pure half: it validates the file's entries (as parsed, each with its
line) and reconciles them with the stored schedules through the service. Reading the
file and parsing its YAML is the bot's (bot/schedules_file.py).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from scheduler.errors import InvalidSchedule, TicklerError
from scheduler.models import (
    Action,
    ActionKind,
    CreatedBy,
    Owner,
    PauseKind,
    Policies,
    Schedule,
    Step,
)
from scheduler.policy_edits import policies_from
from scheduler.service import ScheduleService, TriggerSpec, check_schedule_id
from scheduler.triggers import (
    AfterTrigger,
    CronTrigger,
    EventTrigger,
    IntervalTrigger,
    OnceTrigger,
    StartupTrigger,
)

__all__ = [
    "REMOVED_REASON",
    "ApplyReport",
    "Entry",
    "UnusableEntries",
    "apply_entries",
    "check_entries",
]

REMOVED_REASON = "removed from schedules.yaml"

_KEYS = {
    "id",
    "chat_id",
    "owner_id",
    "owner_name",
    "name",
    "description",
    "cron",
    "every",
    "at",
    "trigger",
    "timezone",
    "prompt",
    "template",
    "remind",
    "action",
    "bundle",
    "policies",
}
#: The keys of a workflow template's `bundle:` mapping, and of each of its steps.
_BUNDLE_KEYS = {"heading", "lead_days", "steps"}
_STEP_KEYS = {"kind", "title", "prompt", "instructions", "assignee", "proof", "offset_days"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Why the file as a whole could not be applied (also the last of `errors`).
    unusable: str | None = None

    def refuse(self, why: str) -> ApplyReport:
        self.errors.append(why)
        self.unusable = why
        return self

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.disabled)} disabled, {len(self.unchanged)} unchanged, "
            f"{len(self.errors)} errors"
        )


class UnusableEntries(InvalidSchedule):
    """The entries cannot be applied as a whole (the same id twice); the message is its
    one line."""


@dataclass(frozen=True)
class Entry:
    """One validated entry of the file."""

    line: int
    id: str
    chat_id: int
    owner: Owner
    name: str
    description: str
    trigger: TriggerSpec
    action: Action
    policies: Policies


class _EntryError(Exception):
    def __init__(self, line: int, sentence: str) -> None:
        super().__init__(f"schedules.yaml line {line}: {sentence}")


def _seconds(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", str(value))
    if match is None:
        raise InvalidSchedule(f"'every: {value}' is not a length like 30m, 2h or 1d.")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _instant(value: object) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            raise InvalidSchedule(f"'at: {value}' is not an ISO instant.") from None
    if moment.tzinfo is None:
        raise InvalidSchedule(f"'at: {value}' needs a UTC offset, like +01:00 or Z.")
    return moment


_SHAPES = {
    "event": ({"kind", "name"}, set()),
    "startup": ({"kind"}, set()),
    "after": ({"kind", "schedule"}, {"on"}),
}


def _event_spec(ident: str, data: object, zone: str) -> TriggerSpec:
    """`trigger: {kind: event, name: deploy}`, `{kind: startup}` or `{kind: after,
    schedule: <id>, on: success|failure|any}`: the kinds without a calendar, written as
    a mapping (the calendar kinds have their own keys, cron, every and at)."""
    if isinstance(data, dict):
        # YAML 1.1 reads a bare `on` key as true.
        data = {"on" if key is True else key: value for key, value in data.items()}
    shape = _SHAPES.get(str(data.get("kind"))) if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or shape is None
        or not shape[0] <= set(data) <= shape[0] | shape[1]
        or not all(isinstance(v, str) for v in data.values())
    ):
        raise InvalidSchedule(
            f"'{ident}' trigger must be {{kind: event, name: <event>}}, {{kind: startup}} "
            "or {kind: after, schedule: <id>, on: success|failure|any}."
        )
    try:
        return TriggerSpec.model_validate({**data, "timezone": zone})
    except ValidationError:
        raise InvalidSchedule(
            f"'{ident}' trigger's 'on' must be success, failure or any."
        ) from None


def _action(ident: str, data: object) -> Action:
    """`action: {kind: plan, text: <heading>, steps: [{title, text, continue_on_failure,
    requires_approval}, ...]}`: an action written whole, as the HTTP API takes it. The
    service checks what its steps hold when the entry is applied."""
    if not isinstance(data, dict) or not isinstance(data.get("steps", []), list):
        raise InvalidSchedule(
            f"'{ident}' action must be a mapping, like {{kind: plan, steps: [{{text: ...}}]}}."
        )
    try:
        return Action.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidSchedule(f"'{ident}' action.{where}: {first['msg']}.") from None


def _bundle(ident: str, data: object) -> Action:
    """`bundle: {lead_days: 7, steps: [...]}`: a workflow template (scheduler/bundles.py).
    A step is a task unless `kind: agent`; an agent step's prompt is `prompt`."""
    if not isinstance(data, dict) or not set(data) <= _BUNDLE_KEYS:
        raise InvalidSchedule(
            f"'{ident}' bundle must be a mapping of heading, lead_days and steps."
        )
    steps = data.get("steps")
    if not isinstance(steps, list):
        raise InvalidSchedule(f"'{ident}' bundle needs a list of steps.")
    made: list[Step] = []
    for number, step in enumerate(steps, start=1):
        if not isinstance(step, dict):
            raise InvalidSchedule(f"'{ident}' step {number} must be a mapping with a title.")
        unknown = sorted(str(k) for k in step if k not in _STEP_KEYS)
        if unknown:
            raise InvalidSchedule(f"'{ident}' step {number} has an unknown key '{unknown[0]}'.")
        fields = {k: v for k, v in step.items() if k != "prompt"}
        fields.setdefault("kind", "task")
        if "prompt" in step:
            fields["text"] = step["prompt"]
        made.append(Step.model_validate(fields))
    return Action(
        kind=ActionKind.BUNDLE,
        text=str(data.get("heading") or ""),
        lead_days=data.get("lead_days", 0),
        steps=tuple(made),
    )


def _entry(data: object, line: int, default_timezone: str) -> Entry:
    if not isinstance(data, dict):
        raise InvalidSchedule("Each entry must be a mapping with id, chat_id, name, ...")
    unknown = sorted(str(k) for k in data if k not in _KEYS)
    if unknown:
        raise InvalidSchedule(f"Unknown key '{unknown[0]}'.")
    ident = data.get("id")
    if not isinstance(ident, str):
        raise InvalidSchedule("Give the entry an id of up to 30 letters, digits, '-', '_' or '.'.")
    check_schedule_id(ident)
    chat_id = data.get("chat_id")
    if not isinstance(chat_id, int) or isinstance(chat_id, bool):
        raise InvalidSchedule(f"'{ident}' needs a numeric chat_id.")
    name = data.get("name")
    if not isinstance(name, str):
        raise InvalidSchedule(f"'{ident}' needs a name.")
    when = [k for k in ("cron", "every", "at", "trigger") if k in data]
    if len(when) != 1:
        raise InvalidSchedule(f"'{ident}' needs exactly one of cron, every, at or trigger.")
    zone = str(data.get("timezone") or default_timezone)
    if when[0] == "trigger":
        spec = _event_spec(ident, data["trigger"], zone)
    elif when[0] == "cron":
        spec = TriggerSpec(kind="cron", cron=str(data["cron"]), timezone=zone)
    elif when[0] == "every":
        spec = TriggerSpec(kind="interval", every_seconds=_seconds(data["every"]), timezone=zone)
    else:
        spec = TriggerSpec(kind="once", at=_instant(data["at"]), timezone=zone)
    what = [k for k in ("prompt", "template", "remind", "action", "bundle") if k in data]
    if len(what) != 1:
        raise InvalidSchedule(
            f"'{ident}' needs exactly one of prompt, template, remind, action or bundle."
        )
    if what[0] == "action":
        action = _action(ident, data["action"])
    elif what[0] == "bundle":
        action = _bundle(ident, data["bundle"])
    elif what[0] == "prompt":
        action = Action(kind=ActionKind.AGENT, text=str(data["prompt"]))
    elif what[0] == "template":
        action = Action(kind=ActionKind.AGENT, template=str(data["template"]))
    else:
        action = Action(kind=ActionKind.REMINDER, text=str(data["remind"]))
    raw_policies = data.get("policies") or {}
    if not isinstance(raw_policies, dict):
        raise InvalidSchedule(f"'{ident}' policies must be a mapping, like {{overlap: queue}}.")
    try:
        policies = policies_from(raw_policies)
    except InvalidSchedule as exc:
        # The sentence the chat gives for the same value (scheduler/policy_edits.py).
        raise InvalidSchedule(f"'{ident}': {exc}") from None
    owner_id = data.get("owner_id", chat_id)
    if not isinstance(owner_id, int) or isinstance(owner_id, bool):
        raise InvalidSchedule(f"'{ident}' owner_id must be a number.")
    owner = Owner(id=owner_id, first_name=str(data.get("owner_name") or "Operator"))
    return Entry(
        line,
        ident,
        chat_id,
        owner,
        name,
        str(data.get("description") or ""),
        spec,
        action,
        policies,
    )


def check_entries(
    items: Sequence[tuple[int, object]], default_timezone: str = "UTC"
) -> tuple[list[Entry], list[str]]:
    """The valid entries of `items` (each parsed entry with its line in the file) and
    one error line per bad one; UnusableEntries when they cannot be applied as a whole."""
    entries: list[Entry] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for line, item in items:
        try:
            entry = _entry(item, line, default_timezone)
        except (InvalidSchedule, ValidationError) as exc:
            errors.append(f"schedules.yaml line {line}: {_sentence(exc)}")
            continue
        if entry.id in seen:
            # Ids are unique across chats: the same id twice is a copy-paste slip, and
            # applying either entry would guess which one the operator meant.
            raise UnusableEntries(
                f"schedules.yaml line {line}: the id '{entry.id}' is already used on line "
                f"{seen[entry.id]}; give each entry an id of its own (nothing was applied)."
            )
        seen[entry.id] = line
        entries.append(entry)
    return entries, errors


def _sentence(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{first['msg']}."
    return str(exc)


def _same_fires(current: Schedule, spec: TriggerSpec) -> bool:
    """Whether `spec` fires as the schedule does (a cron's zone is part of that; an
    interval's or a one-time trigger's is not)."""
    trigger = current.trigger
    if isinstance(trigger, CronTrigger):
        return spec.kind == "cron" and (spec.cron, spec.timezone) == (
            trigger.expr,
            trigger.timezone,
        )
    if isinstance(trigger, IntervalTrigger):
        return spec.kind == "interval" and spec.every_seconds == trigger.every_seconds
    if isinstance(trigger, EventTrigger):
        return spec.kind == "event" and spec.name == trigger.name
    if isinstance(trigger, StartupTrigger):
        return spec.kind == "startup"
    if isinstance(trigger, AfterTrigger):
        return (
            spec.kind == "after"
            and spec.schedule == trigger.schedule
            and (spec.on or "any") == trigger.on
        )
    assert isinstance(trigger, OnceTrigger)
    return spec.kind == "once" and spec.at == trigger.at


async def _apply_entry(service: ScheduleService, entry: Entry, report: ApplyReport) -> None:
    current = await service.store.schedules.get(entry.chat_id, entry.id)
    if current is None:
        await service.create_schedule(
            entry.chat_id,
            entry.owner,
            name=entry.name,
            description=entry.description,
            trigger=entry.trigger,
            action=entry.action,
            policies=entry.policies,
            created_by=CreatedBy.CONFIG,
            schedule_id=entry.id,
        )
        report.created.append(entry.id)
        return
    if current.created_by is not CreatedBy.CONFIG:
        raise InvalidSchedule(f"the id '{entry.id}' belongs to a schedule made in the chat.")
    if current.archived_at is not None:
        raise InvalidSchedule(f"'{entry.id}' was archived; give the entry a new id.")
    same_trigger = _same_fires(current, entry.trigger)
    # A zone change alone only moves where the times are shown: the interval keeps its
    # anchor and a one-time schedule that already fired is not refused as "past".
    zone = entry.trigger.timezone if entry.trigger.timezone != current.timezone else None
    name = " ".join(entry.name.split())
    changed = (
        not same_trigger
        or zone is not None
        or current.name != name
        or current.description != entry.description
        or current.action != entry.action
        or current.policies != entry.policies
    )
    if changed:
        await service.update_schedule(
            entry.chat_id,
            entry.id,
            name=name,
            description=entry.description,
            trigger=None if same_trigger else entry.trigger,
            action=entry.action,
            policies=entry.policies,
            timezone=zone if same_trigger else None,
        )
    revived = not current.enabled and current.pause_kind is PauseKind.REMOVED_FROM_FILE
    if revived:
        await service.resume(entry.chat_id, entry.id)
    (report.updated if changed or revived else report.unchanged).append(entry.id)


async def apply_entries(
    parsed: Sequence[Entry],
    service: ScheduleService,
    report: ApplyReport,
    *,
    chats: Collection[int],
    text: str,
) -> ApplyReport:
    """Apply the file's valid entries (`parsed`; `report.errors` already has its bad
    ones) for the allow-listed `chats` (ADMIN_IDS, OPERATOR_IDS, API_CHAT_IDS): entries
    for other chats are refused. Config-created schedules of those chats whose ids are
    no longer in the file are paused with REMOVED_REASON, unless the file's `text` still
    names them on a line that failed."""
    entries = []
    for entry in parsed:
        if entry.chat_id in chats:
            entries.append(entry)
        else:
            report.errors.append(
                f"schedules.yaml line {entry.line}: chat {entry.chat_id} is not in ADMIN_IDS, "
                "OPERATOR_IDS or API_CHAT_IDS; add it there or correct chat_id."
            )
    if report.errors and not entries:
        # Nothing in the file could be read: disabling "removed" ones would disable all.
        return report
    # A chain's followers last: an `after` entry may name a schedule further down the
    # file, which must exist before the follower is checked against it.
    for entry in sorted(entries, key=lambda e: e.trigger.kind == "after"):
        try:
            await _apply_entry(service, entry, report)
        except TicklerError as exc:
            report.errors.append(f"schedules.yaml line {entry.line}: {exc}")
    declared = {(e.chat_id, e.id) for e in entries}
    # An entry that failed to parse still names its id: never disable it for a typo.
    failed_lines = bool(report.errors)
    for chat_id in sorted(chats):
        for schedule in await service.store.schedules.list_for_chat(chat_id):
            if (
                schedule.created_by is not CreatedBy.CONFIG
                or (chat_id, schedule.id) in declared
                or not schedule.enabled
                or (failed_lines and schedule.id in text)
            ):
                continue
            await service.pause(
                chat_id,
                schedule.id,
                by=None,
                reason=REMOVED_REASON,
                kind=PauseKind.REMOVED_FROM_FILE,
            )
            report.disabled.append(schedule.id)
    return report
