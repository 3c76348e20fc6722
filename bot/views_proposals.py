"""Text and keyboards for the agent's proposals and for runs that wait for approval.

Pure functions of domain objects (no I/O), so tests can call them directly. HTML parse
mode; every piece of agent text goes through `esc`.

Callback data they emit (see bot/callbacks.py; ids are looked up in the pressing chat):

    p:<approve|reject|undo>:<proposal_id>   an admin's answer to a proposal
    r:<approve|skip>:<run_id>               a run waiting for approval
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot import callbacks
from bot.render import esc, local, step_of
from scheduler.errors import InvalidSchedule
from scheduler.models import ActionKind, RiskTier, Run, Schedule
from scheduler.proposals import Proposal, ProposalStatus
from scheduler.risk import RiskDecision
from scheduler.service import first_fire, trigger_from_spec
from scheduler.triggers import OnceTrigger

__all__ = [
    "ProposalFacts",
    "expired_line",
    "expired_note",
    "proposal_facts",
    "proposal_fallback",
    "proposal_keyboard",
    "proposal_message",
    "proposal_zone",
    "run_approval",
    "settled_line",
]

#: How much of the agent's prompt and reason a proposal message quotes.
QUOTE_CHARS = 300
_TIER_ICONS = {RiskTier.LOW: "🟢", RiskTier.MEDIUM: "🟡", RiskTier.HIGH: "🔴"}


#: Characters of each plan step's prompt a proposal's message quotes.
_STEP_CHARS = 100


def _quote(text: str) -> str:
    """The start of `text` in quotes, on one line (plain)."""
    text = " ".join(text.split())
    if len(text) > QUOTE_CHARS:
        text = text[: QUOTE_CHARS - 1] + "…"
    return f"“{text}”"


def proposal_zone(proposal: Proposal) -> str:
    """The zone its times are shown in: the cron's, else the chat's (filled in when it
    was proposed)."""
    return proposal.request.trigger.timezone or "UTC"


def _fires(proposal: Proposal, now: datetime, count: int = 3) -> list[datetime]:
    try:
        trigger = trigger_from_spec(proposal.request.trigger, now, proposal_zone(proposal))
    except InvalidSchedule:
        return []  # a one-time proposal whose moment has passed
    first = first_fire(trigger, now)
    if first is None or count < 1:
        return []
    return [first, *itertools.islice(trigger.fires(first), count - 1)]


def _describe(proposal: Proposal, now: datetime) -> str:
    try:
        trigger = trigger_from_spec(proposal.request.trigger, now, proposal_zone(proposal))
    except InvalidSchedule:
        return "once (its moment has passed)"
    return trigger.describe()


def _runs_per_week(decision: RiskDecision, once: bool) -> str:
    if once:
        return "Runs: once"
    rate = decision.runs_per_week
    if rate == int(rate):
        shown = str(int(rate))
    elif rate < 10:
        shown = f"about {rate:.1f}"
    else:
        shown = f"about {round(rate)}"
    return f"Runs per week: {shown}"


def _tokens(per_run: int, runs_per_week: float, once: bool) -> str:
    """The agent's estimate: "Tokens (agent's estimate): 2,000 a run, about 14,000 a week"."""
    line = f"Tokens (agent's estimate): {per_run:,} a run"
    if once:
        return line
    return line + f", about {round(per_run * runs_per_week):,} a week"


def _header(proposal: Proposal, zone: str) -> str:
    if proposal.tier is RiskTier.HIGH:
        until = f" by {local(proposal.expires_at, zone)}" if proposal.expires_at is not None else ""
        return (
            "⚠️ <b>Your agent proposes a schedule that needs an admin's approval.</b> "
            f"Nothing is created unless it is approved{until}."
        )
    if proposal.status is ProposalStatus.PENDING:
        return (
            "🤖 <b>Your agent proposes a schedule.</b> It was added paused; it starts "
            "when an admin approves it."
        )
    return "🤖 <b>Your agent added a schedule.</b> It is active now; Undo removes it."


@dataclass(frozen=True)
class ProposalFacts:
    """What a proposal's card says, plain (the chat escapes it; the Mini App's
    templates do): each line as the message shows it."""

    name: str
    #: "When: ...", then the header of the fires ("Next fires:" or "Fires:") if any.
    when: str
    fires_title: str
    fires: list[str]
    #: "Does: ...", then a plan's steps ("1. “...”").
    does: str
    steps: list[str]
    runs: str
    tokens: str | None
    risk: str
    why: str | None


def proposal_facts(proposal: Proposal, decision: RiskDecision, *, now: datetime) -> ProposalFacts:
    """What will happen: the schedule in words, its next three fires in the chat's zone,
    what it does, how often, the tier and why, and the agent's reason."""
    zone = proposal_zone(proposal)
    request = proposal.request
    once = request.trigger.kind == "once"
    fires = _fires(proposal, now)
    action = request.action
    what = action.text if not action.template else f"the {action.template} template"
    steps: list[str] = []
    if action.kind is ActionKind.REMINDER:
        does = f"Does: sends you the reminder {_quote(what)}"
    elif action.kind is ActionKind.TASK:
        # No agent is involved: each fire is a to-do for the operator.
        proof = f"; marking it done needs a {action.proof}" if action.proof else ""
        does = f"Does: puts a task for you on /today, due at each fire: {_quote(what)}{proof}"
    elif action.kind is ActionKind.PLAN:
        # Each step is a prompt of its own: the operator approves all of them.
        does = f"Does: asks your agent, step by step ({len(action.steps)} steps):"
        steps = [
            # Cut short: twenty steps must still fit one message.
            f"{n}. {_quote(step.text[:_STEP_CHARS])}"
            + (" (asks you first)" if step.requires_approval else "")
            for n, step in enumerate(action.steps, 1)
        ]
    else:
        does = f"Does: asks your agent {_quote(what)}"
    tokens = None
    if request.expected_tokens_per_run is not None:
        tokens = _tokens(request.expected_tokens_per_run, decision.runs_per_week, once)
    reasons = "; ".join(decision.reasons)
    icon = _TIER_ICONS[proposal.tier]
    return ProposalFacts(
        name=request.name,
        when=f"When: {_describe(proposal, now)}",
        fires_title=("Next fires:" if not once else "Fires:") if fires else "",
        fires=[local(t, zone) for t in fires],
        does=does,
        steps=steps,
        runs=_runs_per_week(decision, once),
        tokens=tokens,
        risk=f"Risk: {icon} {proposal.tier.value}" + (f" — {reasons}" if reasons else ""),
        why=f"Why: {_quote(request.reason)}" if request.reason.strip() else None,
    )


def proposal_message(proposal: Proposal, decision: RiskDecision, *, now: datetime) -> str:
    """The proposal's card in the chat: what will happen (`proposal_facts`) under a
    header that says what the tier did."""
    facts = proposal_facts(proposal, decision, now=now)
    lines = [_header(proposal, proposal_zone(proposal)), "", f"<b>{esc(facts.name)}</b>"]
    lines.append(esc(facts.when))
    if facts.fires:
        lines.append(facts.fires_title)
        lines += [f"  • {t}" for t in facts.fires]
    lines.append(esc(facts.does))
    lines += [f"  {esc(step)}" for step in facts.steps]
    lines.append(facts.runs)
    if facts.tokens is not None:
        lines.append(facts.tokens)
    lines.append(esc(facts.risk))
    if facts.why is not None:
        lines.append(esc(facts.why))
    return "\n".join(lines)


def proposal_fallback(proposal: Proposal) -> str:
    """A proposal's message without its times, for when those cannot be worked out:
    what it is, its tier and what happens next."""
    icon = _TIER_ICONS[proposal.tier]
    return (
        f"{_header(proposal, 'UTC')}\n\n<b>{esc(proposal.name)}</b>\n"
        f"Risk: {icon} {proposal.tier.value}\n"
        "(Its times could not be shown here; /approve and /schedules list it.)"
    )


def proposal_keyboard(proposal: Proposal) -> InlineKeyboardMarkup | None:
    """[Approve] [Reject] while pending, [Undo] while a low-tier one is active."""
    if proposal.status is ProposalStatus.PENDING:
        row = [
            ("Approve", callbacks.make("p", "approve", proposal.id)),
            ("Reject", callbacks.make("p", "reject", proposal.id)),
        ]
    elif proposal.status is ProposalStatus.ACTIVE:
        row = [("Undo", callbacks.make("p", "undo", proposal.id))]
    else:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(t, callback_data=d) for t, d in row]])


def settled_line(action: str, who: str, proposal: Proposal) -> str:
    """The line appended to a proposal's message once an admin answered (`who` is
    already escaped)."""
    name = f"<b>{esc(proposal.name)}</b>"
    if action == "approve":
        return f"✅ Approved by {who}; {name} is active."
    if action == "reject":
        return f"❌ Rejected by {who}; nothing will run."
    return f"↩️ Undone by {who}; {name} is archived (its history is kept)."


def _hours(proposal: Proposal) -> int:
    if proposal.expires_at is None:
        return 0
    return round((proposal.expires_at - proposal.created_at).total_seconds() / 3600)


def expired_line(proposal: Proposal) -> str:
    return f"⌛ Expired: no admin answered within {_hours(proposal)} hours; nothing was created."


def expired_note(proposal: Proposal) -> str:
    """A message of its own, when the proposal's message cannot be edited."""
    return (
        f"⌛ Your agent's proposal <b>{esc(proposal.name)}</b> expired: no admin answered "
        f"within {_hours(proposal)} hours, so nothing was created."
    )


def run_approval(schedule: Schedule, run: Run, zone: str) -> tuple[str, InlineKeyboardMarkup]:
    """The question "<name> wants to run for <time>: approve?", [Approve] [Skip]."""
    when = local(run.scheduled_for, zone)
    step = step_of(run, schedule)
    what = f" {step} of its plan" if step else ""
    text = f"✋ <b>{esc(schedule.name)}</b> wants to run{what} for {when}: approve?"
    deadline = run.next_attempt_at
    if deadline is not None:
        text += f"\nUnanswered, it is skipped at {local(deadline, zone)}."
    if isinstance(schedule.trigger, OnceTrigger):
        text += "\nIt fires only this once."
    markup = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    "Approve", callback_data=callbacks.make("r", "approve", run.id)
                ),
                InlineKeyboardButton("Skip", callback_data=callbacks.make("r", "skip", run.id)),
            ]
        ]
    )
    return text, markup
