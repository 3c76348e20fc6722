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
    "PERIODS",
    "WINDOW",
    "BudgetKind",
    "BudgetUse",
    "BudgetVerdict",
    "UseReport",
    "UseRow",
    "amount",
    "has_budget",
    "raised",
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

    #: Runs started (sent to the agent, or done), whatever their outcome; skipped and
    #: cancelled runs never started, so they do not count.
    runs: int = 0
    #: The sum of the `total_tokens` its finished runs reported (openai mode).
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class BudgetVerdict:
    """The fire goes on, spending an allowance (`spend`), or the schedule pauses."""

    pause: bool
    kind: BudgetKind | None = None
    limit: int | None = None
    #: The fire goes on by an operator's "Run once more": one allowance is spent.
    spend: bool = False

    @property
    def reason(self) -> str:
        assert self.kind is not None and self.limit is not None
        return reason_text(self.kind, self.limit)


#: The verdict for a fire within its budget.
GO_ON = BudgetVerdict(pause=False)


def has_budget(policies: Policies) -> bool:
    return policies.budget_runs_per_week is not None or policies.budget_tokens_per_week is not None


def window_start(now: datetime) -> datetime:
    """Where the budget's week begins for a fire claimed at `now`."""
    return now - WINDOW


def reason_text(kind: BudgetKind, limit: int) -> str:
    """The pause reason people read: "budget: 10 runs this week reached"."""
    return f"budget: {amount(kind, limit)} this week reached"


def amount(kind: BudgetKind, value: int) -> str:
    """ "10 runs", "1 run", "120,000 tokens"."""
    if kind is BudgetKind.RUNS:
        return f"{value:,} run{'s' if value != 1 else ''}"
    return f"{value:,} token{'s' if value != 1 else ''}"


def verdict(policies: Policies, use: BudgetUse, allowance: int) -> BudgetVerdict:
    """What the next fire of a schedule with these policies becomes, given its use in
    the window and the extra runs an operator allowed (`allowance`).

    Within every budget it runs. At or past one (use >= budget: the 11th fire of a
    10-runs budget) it runs only by spending an allowance; otherwise the schedule
    pauses. Runs are checked before tokens, so the reason names the runs budget when
    both are reached."""
    reached: tuple[BudgetKind, int] | None = None
    if policies.budget_runs_per_week is not None and use.runs >= policies.budget_runs_per_week:
        reached = (BudgetKind.RUNS, policies.budget_runs_per_week)
    elif (
        policies.budget_tokens_per_week is not None
        and use.tokens >= policies.budget_tokens_per_week
    ):
        reached = (BudgetKind.TOKENS, policies.budget_tokens_per_week)
    if reached is None:
        return GO_ON
    if allowance > 0:
        return BudgetVerdict(pause=False, kind=reached[0], limit=reached[1], spend=True)
    return BudgetVerdict(pause=True, kind=reached[0], limit=reached[1])


def raised(policies: Policies, kind: BudgetKind) -> Policies:
    """The policies with the `kind` budget doubled (the notice's [Raise to N])."""
    if kind is BudgetKind.RUNS:
        current = policies.budget_runs_per_week
        assert current is not None
        return policies.model_copy(update={"budget_runs_per_week": current * 2})
    tokens = policies.budget_tokens_per_week
    assert tokens is not None
    return policies.model_copy(update={"budget_tokens_per_week": tokens * 2})


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
