"""Spend and volume control: the pure rule of a schedule's budget.

A schedule may have a budget (`Policies.budget_runs_per_week`,
`Policies.budget_tokens_per_week`). The week is the last 7 days, rolling (the same
for every zone, and no Monday-morning burst after a busy Sunday). When a fire of a
budgeted schedule is claimed, the store reads the schedule's use in that window (runs
started, tokens of its finished runs) and asks `verdict` what the fire becomes: it runs,
or the schedule pauses (PauseKind.BUDGET) and the fire is recorded skipped with the
reason, never silently. An operator's "Run once more" leaves an allowance of extra runs
that a fire past the budget spends instead of pausing.

Schedules without a budget are never counted: the store asks `has_budget` first, so
they cost no query on the engine's path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from scheduler.models import Policies

__all__ = [
    "GO_ON",
    "LONGEST",
    "NO_LIMITS",
    "PERIODS",
    "WINDOW",
    "BudgetKind",
    "BudgetLimits",
    "BudgetScope",
    "BudgetUse",
    "BudgetVerdict",
    "UseReport",
    "UseRow",
    "amount",
    "doubled",
    "has_budget",
    "limits_of",
    "reason_text",
    "total_tokens",
    "use_report",
    "verdict",
    "window_start",
]

#: The budget's week: the last 7 days, rolling.
WINDOW = timedelta(days=7)


class BudgetKind(StrEnum):
    RUNS = "runs"
    TOKENS = "tokens"


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """What a schedule (or a chat) used in a window."""

    #: Runs started (sent to the agent, or done), whatever their outcome, and runs
    #: written to start (waiting for a slot or an approval); skipped and cancelled runs
    #: never started, so they do not count.
    runs: int = 0
    #: The sum of the `total_tokens` its finished runs reported (openai mode).
    tokens: int = 0


class BudgetScope(StrEnum):
    SCHEDULE = "schedule"  # the schedule's own policies
    CHAT = "chat"  # the chat's budget (/budget), over all its schedules


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """A budget: runs and tokens per week, None for no limit."""

    runs: int | None = None
    tokens: int | None = None

    @property
    def any(self) -> bool:
        return self.runs is not None or self.tokens is not None


NO_LIMITS = BudgetLimits()


def limits_of(policies: Policies) -> BudgetLimits:
    return BudgetLimits(policies.budget_runs_per_week, policies.budget_tokens_per_week)


@dataclass(frozen=True, slots=True)
class BudgetVerdict:
    """The fire goes on, spending an allowance (`spend`), or the schedule pauses."""

    pause: bool
    kind: BudgetKind | None = None
    limit: int | None = None
    #: The fire goes on by an operator's "Run once more": one allowance is spent.
    spend: bool = False
    scope: BudgetScope = BudgetScope.SCHEDULE

    @property
    def reason(self) -> str:
        assert self.kind is not None and self.limit is not None
        return reason_text(self.kind, self.limit, self.scope)


#: The verdict for a fire within its budget.
GO_ON = BudgetVerdict(pause=False)


def has_budget(policies: Policies) -> bool:
    return policies.budget_runs_per_week is not None or policies.budget_tokens_per_week is not None


def window_start(now: datetime) -> datetime:
    """Where the budget's week begins for a fire claimed at `now`."""
    return now - WINDOW


def reason_text(kind: BudgetKind, limit: int, scope: BudgetScope = BudgetScope.SCHEDULE) -> str:
    """The pause reason people read: "budget: 10 runs this week reached" (the chat's:
    "chat budget: 50 runs this week reached")."""
    prefix = "chat budget" if scope is BudgetScope.CHAT else "budget"
    return f"{prefix}: {amount(kind, limit)} this week reached"


def amount(kind: BudgetKind, value: int) -> str:
    """ "10 runs", "1 run", "120,000 tokens"."""
    if kind is BudgetKind.RUNS:
        return f"{value:,} run{'s' if value != 1 else ''}"
    return f"{value:,} token{'s' if value != 1 else ''}"


def _reached(limits: BudgetLimits, use: BudgetUse) -> tuple[BudgetKind, int] | None:
    if limits.runs is not None and use.runs >= limits.runs:
        return BudgetKind.RUNS, limits.runs
    if limits.tokens is not None and use.tokens >= limits.tokens:
        return BudgetKind.TOKENS, limits.tokens
    return None


def verdict(
    policies: Policies,
    use: BudgetUse,
    allowance: int,
    *,
    chat: BudgetLimits = NO_LIMITS,
    chat_use: BudgetUse | None = None,
) -> BudgetVerdict:
    """What the next fire of a schedule with these policies becomes, given its use in
    the window, the extra runs an operator allowed (`allowance`), and its chat's budget
    and use.

    Within every budget it runs. At or past one (use >= budget: the 11th fire of a
    10-runs budget) it runs only by spending an allowance; otherwise the schedule
    pauses. The schedule's own budget is checked before its chat's, and runs before
    tokens, so the reason names the first reached in that order."""
    reached = _reached(limits_of(policies), use)
    scope = BudgetScope.SCHEDULE
    if reached is None and chat.any and chat_use is not None:
        reached, scope = _reached(chat, chat_use), BudgetScope.CHAT
    if reached is None:
        return GO_ON
    kind, limit = reached
    if allowance > 0:
        return BudgetVerdict(pause=False, kind=kind, limit=limit, spend=True, scope=scope)
    return BudgetVerdict(pause=True, kind=kind, limit=limit, scope=scope)


def doubled(limits: BudgetLimits, kind: BudgetKind) -> BudgetLimits | None:
    """`limits` with the `kind` budget doubled (the notice's [Raise to N]); None when
    there is no such budget (removed since the notice)."""
    if kind is BudgetKind.RUNS:
        return None if limits.runs is None else BudgetLimits(limits.runs * 2, limits.tokens)
    return None if limits.tokens is None else BudgetLimits(limits.runs, limits.tokens * 2)


def total_tokens(usage: dict[str, int] | None) -> int:
    """A run's tokens: `total_tokens`, or prompt plus completion when that is missing."""
    if not usage:
        return 0
    if "total_tokens" in usage:
        return int(usage["total_tokens"])
    return int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))


@dataclass(frozen=True, slots=True)
class UseRow:
    """One started run, as much of it as the use figures need."""

    schedule_id: str
    started_at: datetime
    tokens: int


#: The periods /budget shows, each the last so many days (rolling, like the budget).
PERIODS: tuple[tuple[str, timedelta], ...] = (
    ("day", timedelta(days=1)),
    ("week", WINDOW),
    ("month", timedelta(days=30)),
)
#: How far back the use figures read: the longest period.
LONGEST = max(span for _, span in PERIODS)


@dataclass(frozen=True, slots=True)
class UseReport:
    """A chat's use per period: the whole chat's, and each schedule's."""

    chat: dict[str, BudgetUse]
    by_schedule: dict[str, dict[str, BudgetUse]]


def use_report(rows: list[UseRow], now: datetime) -> UseReport:
    """Sum `rows` (read from `now - LONGEST`) per period, for the chat and per schedule."""
    chat: dict[str, BudgetUse] = {}
    by_schedule: dict[str, dict[str, BudgetUse]] = {}
    for period, span in PERIODS:
        since = now - span
        inside = [r for r in rows if r.started_at >= since]
        chat[period] = BudgetUse(len(inside), sum(r.tokens for r in inside))
        for row in inside:
            per = by_schedule.setdefault(row.schedule_id, {})
            was = per.get(period, BudgetUse())
            per[period] = BudgetUse(was.runs + 1, was.tokens + row.tokens)
    return UseReport(chat, by_schedule)
