"""Tools the agent may call in `openai` mode (SPEC "Agent endpoint"): propose a schedule,
list the chat's schedules, pause one, report the result of a run it answered with a
202, emit an event to the chat's event schedules.

`TOOLS` is the `tools` list of a chat-completions request; `AgentTools.call` runs one
of the answer's tool calls for one chat and returns the JSON text of the `tool`
message. A proposal goes through the same policy and approvals as one made over the
HTTP API (scheduler/proposals.py). Errors are results, not exceptions: the agent reads
the sentence and can tell the operator or try again.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from scheduler.errors import InvalidSchedule, TicklerError
from scheduler.models import Action, ActionKind, RiskTier, Schedule
from scheduler.proposals import ProposalRequest, ProposalService, ProposalStatus
from scheduler.results import LOG_EXCERPT_LIMIT, SUMMARY_LIMIT
from scheduler.service import ScheduleService, TriggerSpec
from scheduler.timeutil import format_utc, parse_utc

__all__ = ["TOOLS", "AgentTools"]

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "propose_schedule",
            "description": (
                "Propose a schedule for this chat: a prompt sent to you (or a reminder "
                "sent to the operator) on a cron, every N minutes, or once. Give exactly "
                "one of cron, every_minutes, at. Low-risk schedules start at once (the "
                "operator can undo them); others wait for an admin's approval."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "A short name."},
                    "cron": {
                        "type": "string",
                        "description": "Five-field cron, e.g. '0 9 * * 1-5'.",
                    },
                    "every_minutes": {"type": "integer", "minimum": 1},
                    "at": {
                        "type": "string",
                        "description": "One-time: ISO-8601 instant with offset.",
                    },
                    "timezone": {
                        "type": "string",
                        "description": "IANA zone of the schedule (a cron fires in it; its times "
                        "are shown in it); default: the chat's.",
                    },
                    "prompt": {
                        "type": "string",
                        "description": "What you will be asked at each fire (or the reminder).",
                    },
                    "kind": {"type": "string", "enum": ["agent", "reminder"]},
                    "reason": {
                        "type": "string",
                        "description": "Why, in one sentence for the operator.",
                    },
                    "risk": {"type": "string", "enum": ["low", "medium", "high"]},
                    "expected_tokens_per_run": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Your estimate of the tokens one run uses; the "
                        "operator sees it, and the week's, on the proposal.",
                    },
                },
                "required": ["name", "prompt", "reason"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "list_schedules",
            "description": "List this chat's schedules and the proposals awaiting approval.",
            "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "pause_schedule",
            "description": "Pause one of this chat's schedules; the operator can resume it.",
            "parameters": {
                "type": "object",
                "properties": {
                    "schedule_id": {"type": "string"},
                    "reason": {"type": "string"},
                },
                "required": ["schedule_id"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "report_result",
            "description": (
                "Report the result of a scheduled run you accepted with HTTP 202 (its id "
                "came in the X-Tickler-Run-Id header). Once per run; the operator's chat "
                "gets the summary and the link."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "run_id": {"type": "string"},
                    "status": {"type": "string", "enum": ["succeeded", "failed"]},
                    "summary": {
                        "type": "string",
                        "maxLength": SUMMARY_LIMIT,
                        "description": "What happened, in a line or two.",
                    },
                    "outputs_url": {
                        "type": "string",
                        "description": "An http(s) link to what you produced (a PR, an artifact).",
                    },
                    "log_excerpt": {"type": "string", "maxLength": LOG_EXCERPT_LIMIT},
                },
                "required": ["run_id", "status"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "emit_event",
            "description": (
                "Emit an event in this chat: each active schedule of the chat listening to "
                "that event name runs once, with the payload as its prompt's {event}. Give "
                "an idempotency_key to make a repeat of the call fire nothing new."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "name": {
                        "type": "string",
                        "description": "The event's name, e.g. 'deploy' (lower case).",
                    },
                    "payload": {"type": "object", "description": "Optional JSON object."},
                    "idempotency_key": {"type": "string"},
                },
                "required": ["name"],
                "additionalProperties": False,
            },
        },
    },
]

_Args = dict[str, Any]
_Result = dict[str, Any]


class AgentTools:
    def __init__(
        self,
        schedules: ScheduleService,
        proposals: ProposalService,
        *,
        proposed_by: str = "agent:chat",
    ) -> None:
        self.schedules = schedules
        self.proposals = proposals
        self.proposed_by = proposed_by
        self._tools: dict[str, Callable[[int, _Args], Awaitable[_Result]]] = {
            "propose_schedule": self._propose,
            "list_schedules": self._list,
            "pause_schedule": self._pause,
            "report_result": self._report_result,
            "emit_event": self._emit,
        }

    async def call(self, chat_id: int, tool_call: dict[str, Any]) -> str:
        """Run one tool call of an answer for `chat_id`; the `tool` message's content."""
        function = tool_call.get("function")
        if not isinstance(function, dict):
            return _error("The tool call names no function.")
        name = function.get("name")
        run = self._tools.get(name) if isinstance(name, str) else None
        if run is None:
            known = ", ".join(self._tools)
            return _error(f"There is no tool {name!r}; the tools are {known}.")
        raw = function.get("arguments") or "{}"
        try:
            args = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            return _error("The arguments are not valid JSON.")
        if not isinstance(args, dict):
            return _error("The arguments must be a JSON object.")
        try:
            result = await run(chat_id, args)
        except TicklerError as exc:
            return _error(str(exc))
        except ValidationError as exc:
            detail = exc.errors()[0]
            where = ".".join(str(p) for p in detail["loc"]) or "arguments"
            return _error(f"Invalid {where}: {detail['msg']}.")
        except ValueError as exc:  # an unknown kind or risk
            return _error(f"Invalid arguments: {exc}.")
        return json.dumps({"ok": True, **result}, ensure_ascii=False)

    async def _propose(self, chat_id: int, args: _Args) -> _Result:
        unknown = set(args) - set(TOOLS[0]["function"]["parameters"]["properties"])
        if unknown:
            raise InvalidSchedule(f"Unknown arguments: {', '.join(sorted(unknown))}.")
        request = ProposalRequest(
            name=_text(args, "name"),
            trigger=_trigger(args),
            action=Action(
                kind=ActionKind(args.get("kind") or "agent"),
                text=_text(args, "prompt"),
            ),
            reason=str(args.get("reason") or ""),
            risk_hint=RiskTier(args["risk"]) if args.get("risk") else None,
            expected_tokens_per_run=args.get("expected_tokens_per_run"),
        )
        proposal = await self.proposals.propose(chat_id, request, proposed_by=self.proposed_by)
        notes = {
            ProposalStatus.ACTIVE: "It is active now; the operator can undo it.",
            ProposalStatus.PENDING: (
                "It was created paused and starts when an admin approves it."
                if proposal.schedule_id
                else "Nothing runs until an admin approves it"
                + (
                    f" (by {format_utc(proposal.expires_at)})."
                    if proposal.expires_at is not None
                    else "."
                )
            ),
        }
        return {
            "proposal_id": proposal.id,
            "status": proposal.status.value,
            "tier": proposal.tier.value,
            "schedule_id": proposal.schedule_id,
            "note": notes.get(proposal.status, ""),
        }

    async def _list(self, chat_id: int, args: _Args) -> _Result:
        schedules = await self.schedules.list_schedules(chat_id)
        pending = await self.proposals.list_for_chat(chat_id, statuses=[ProposalStatus.PENDING])
        return {
            "schedules": [_schedule_json(s) for s in schedules],
            "pending_proposals": [
                {"proposal_id": p.id, "name": p.name, "tier": p.tier.value} for p in pending
            ],
        }

    async def _pause(self, chat_id: int, args: _Args) -> _Result:
        reason = str(args.get("reason") or "").strip() or "asked by the agent"
        schedule = await self.schedules.pause(
            chat_id, _text(args, "schedule_id"), by=None, reason=reason
        )
        return {"schedule_id": schedule.id, "name": schedule.name, "status": "paused"}

    async def _report_result(self, chat_id: int, args: _Args) -> _Result:
        report = {k: v for k, v in args.items() if k != "run_id"}
        run = await self.schedules.report_result(chat_id, _text(args, "run_id"), report)
        return {"run_id": run.id, "status": run.status.value}

    async def _emit(self, chat_id: int, args: _Args) -> _Result:
        key = args.get("idempotency_key")
        if key is not None and not isinstance(key, str):
            raise InvalidSchedule("'idempotency_key' must be text.")
        # Scoped to the calling chat: its agent reaches its own schedules only, and its
        # keys cannot collide with the API's or another chat's.
        emitted = await self.schedules.emit_event(
            [chat_id],
            _text(args, "name"),
            args.get("payload"),
            caller=f"chat:{chat_id}",
            idempotency_key=key,
        )
        return {
            "event_id": emitted.event.id,
            "repeated": emitted.repeated,
            "runs": [{"run_id": r.id, "schedule_id": r.schedule_id} for r in emitted.runs],
        }


def _error(sentence: str) -> str:
    return json.dumps({"ok": False, "error": sentence}, ensure_ascii=False)


def _text(args: _Args, key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidSchedule(f"'{key}' is required and must be text.")
    return value


def _trigger(args: _Args) -> TriggerSpec:
    given = [k for k in ("cron", "every_minutes", "at") if args.get(k) not in (None, "")]
    if len(given) != 1:
        raise InvalidSchedule("Give exactly one of cron, every_minutes or at.")
    zone = args.get("timezone") or None
    if zone is not None and not isinstance(zone, str):
        raise InvalidSchedule("'timezone' must be an IANA zone name, like Europe/Berlin.")
    if given == ["cron"]:
        return TriggerSpec(kind="cron", cron=str(args["cron"]), timezone=zone)
    if given == ["every_minutes"]:
        minutes = args["every_minutes"]
        if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes < 1:
            raise InvalidSchedule("'every_minutes' must be a whole number of minutes.")
        return TriggerSpec(kind="interval", every_seconds=minutes * 60, timezone=zone)
    return TriggerSpec(kind="once", at=parse_utc(str(args["at"])), timezone=zone)


def _schedule_json(schedule: Schedule) -> dict[str, Any]:
    if schedule.tripped:
        state = "tripped"
    elif not schedule.enabled:
        state = "paused"
    else:
        state = "active"
    return {
        "id": schedule.id,
        "name": schedule.name,
        "when": schedule.trigger.describe(),
        "kind": schedule.action.kind.value,
        "status": state,
        "pause_reason": schedule.pause_reason,
        # Why it is paused, as a value the agent can branch on (the reason is free text).
        "pause_kind": None if schedule.pause_kind is None else schedule.pause_kind.value,
        "next_run_at": format_utc(schedule.next_run_at) if schedule.next_run_at else None,
        "created_by": schedule.created_by.value,
    }
