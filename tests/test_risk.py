"""The proposal policy (scheduler/risk.py): a table of requests and the tier, rate and
refusal each gets. Pure: no clock, no store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler.models import Action, ActionKind, Policies, RiskTier
from scheduler.proposals import ProposalRequest
from scheduler.risk import RiskDecision, classify, describe_duration
from scheduler.service import Limits, TriggerSpec

#: Monday 23 November 2026, 07:00 UTC.
NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
LOW, MEDIUM, HIGH = RiskTier.LOW, RiskTier.MEDIUM, RiskTier.HIGH
AGENT, REMINDER = ActionKind.AGENT, ActionKind.REMINDER


def cron(expr: str, zone: str = "Europe/Berlin") -> TriggerSpec:
    return TriggerSpec(kind="cron", cron=expr, timezone=zone)


def every(seconds: int) -> TriggerSpec:
    return TriggerSpec(kind="interval", every_seconds=seconds, start_at=NOW)


def once(after: timedelta) -> TriggerSpec:
    return TriggerSpec(kind="once", at=NOW + after)


def request(
    trigger: TriggerSpec,
    kind: ActionKind = AGENT,
    *,
    hint: RiskTier | None = None,
    text: str = "Prepare the brief.",
    policies: Policies | None = None,
) -> ProposalRequest:
    return ProposalRequest(
        name="Proposed",
        trigger=trigger,
        action=Action(kind=kind, text=text),
        policies=policies,
        reason="You asked for it.",
        risk_hint=hint,
    )


def decide(req: ProposalRequest, *, limits: Limits | None = None, active: int = 0) -> RiskDecision:
    return classify(req, now=NOW, limits=limits or Limits(), active_count=active)


# (what, request, tier, runs per week)
TABLE: list[tuple[str, ProposalRequest, RiskTier, float]] = [
    # Reminders are low unless they fire more often than hourly.
    ("daily reminder", request(cron("0 9 * * *"), REMINDER), LOW, 7),
    ("hourly reminder", request(cron("0 * * * *"), REMINDER), LOW, 168),
    ("half-hourly reminder", request(cron("*/30 * * * *"), REMINDER), HIGH, 336),
    # Agent actions: at most once a day is low; more is medium; more than hourly, high.
    ("daily agent run", request(cron("0 9 * * *")), LOW, 7),
    ("weekday agent run", request(cron("0 9 * * 1-5")), LOW, 5),
    ("weekly agent run", request(cron("0 9 * * 1")), LOW, 1),
    ("one-time agent run", request(once(timedelta(days=3))), LOW, 1),
    ("daily interval", request(every(86400)), LOW, 7),
    ("every other day", request(every(2 * 86400)), LOW, 3.5),
    ("twice a day", request(cron("0 9,17 * * *")), MEDIUM, 14),
    # Few runs a week, but two an hour apart on Mondays: more than once a day.
    ("two on Mondays", request(cron("0 9,10 * * 1")), MEDIUM, 2),
    ("hourly cron (exactly hourly is not more often)", request(cron("0 * * * *")), MEDIUM, 168),
    ("hourly interval", request(every(3600)), MEDIUM, 168),
    ("every 30 minutes", request(cron("*/30 * * * *")), HIGH, 336),
    ("interval of 30 minutes", request(every(1800)), HIGH, 336),
    # Only 14 a week, but 30 minutes apart.
    ("two close fires a day", request(cron("0,30 9 * * *")), HIGH, 14),
    ("every minute (extrapolated)", request(cron("* * * * *")), HIGH, 10080),
    # The hint raises the tier...
    ("daily, hinted high", request(cron("0 9 * * *"), hint=HIGH), HIGH, 7),
    ("daily, hinted medium", request(cron("0 9 * * *"), hint=MEDIUM), MEDIUM, 7),
    ("reminder, hinted medium", request(cron("0 9 * * *"), REMINDER, hint=MEDIUM), MEDIUM, 7),
    (
        "daily, policies say high",
        request(cron("0 9 * * *"), policies=Policies(risk_tier=HIGH)),
        HIGH,
        7,
    ),
    # ...but never lowers it.
    ("twice a day, hinted low", request(cron("0 9,17 * * *"), hint=LOW), MEDIUM, 14),
    ("every 30 minutes, hinted low", request(cron("*/30 * * * *"), hint=LOW), HIGH, 336),
]


@pytest.mark.parametrize(
    ("req", "tier", "runs_per_week"), [row[1:] for row in TABLE], ids=[row[0] for row in TABLE]
)
def test_the_tier_and_rate_of_a_proposal(
    req: ProposalRequest, tier: RiskTier, runs_per_week: float
) -> None:
    decision = decide(req)
    assert decision.refusal is None
    assert decision.tier is tier
    assert decision.runs_per_week == pytest.approx(runs_per_week, rel=0.01)
    assert decision.reasons


def test_a_monthly_run_averages_under_once_a_week() -> None:
    decision = decide(request(cron("0 9 1 * *")))
    assert decision.tier is LOW
    assert 0.2 < decision.runs_per_week < 0.26


def test_a_daily_run_stays_low_across_spring_forward() -> None:
    # Europe/Berlin springs forward on Sunday 28 March 2027: that day's 09:00 comes
    # 23 hours after Saturday's.
    saturday = datetime(2027, 3, 26, 12, 0, tzinfo=UTC)
    decision = classify(request(cron("0 9 * * *")), now=saturday, limits=Limits(), active_count=0)
    assert (decision.tier, decision.runs_per_week) == (LOW, 7)


def test_an_hourly_job_in_the_week_clocks_fall_back_is_not_more_than_hourly() -> None:
    # Europe/Berlin falls back on Sunday 31 October 2027: that week has 169 hours, and
    # a wildcard job fires in both passes of the repeated hour (cronie's rule).
    friday = datetime(2027, 10, 29, 12, 0, tzinfo=UTC)
    decision = classify(request(cron("0 * * * *")), now=friday, limits=Limits(), active_count=0)
    assert (decision.tier, decision.runs_per_week) == (MEDIUM, 169)


def test_the_reasons_say_why() -> None:
    assert decide(request(cron("*/30 * * * *"))).reasons == [
        "it fires more often than hourly (about 336 runs a week, 30 minutes apart at the closest)"
    ]
    assert decide(request(cron("0 9 * * *"), hint=HIGH)).reasons == [
        "it fires at most once a day",
        "your agent rated it high",
    ]
    assert decide(request(once(timedelta(hours=1)))).reasons == ["it fires only once"]


# (what, request, limits, active schedules, the refusal)
REFUSALS: list[tuple[str, ProposalRequest, Limits, int, str]] = [
    (
        "too many schedules",
        request(cron("0 9 * * *"), REMINDER),
        Limits(max_schedules_per_chat=3),
        3,
        "This chat already has 3 schedules, the limit; archive one with /delete first.",
    ),
    (
        "interval below the chat's minimum",
        request(every(120)),
        Limits(min_interval_seconds=300),
        0,
        "The interval must be at least 5 minutes.",
    ),
    (
        "cron closer than the chat's minimum",
        request(cron("*/2 * * * *")),
        Limits(min_interval_seconds=300),
        0,
        "It would fire 2 minutes apart at the closest; schedules here must be at least "
        "5 minutes apart.",
    ),
    (
        "prompt too long",
        request(cron("0 9 * * *"), text="x" * 51),
        Limits(max_prompt_chars=50),
        0,
        "The prompt is 51 characters; the limit is 50.",
    ),
    (
        "not a cron",
        request(cron("0 9 * * * *")),
        Limits(),
        0,
        "",  # the cron parser's own sentence
    ),
    (
        "a moment in the past",
        request(once(-timedelta(hours=1))),
        Limits(),
        0,
        "That time is in the past",
    ),
]


@pytest.mark.parametrize(
    ("req", "limits", "active", "refusal"),
    [row[1:] for row in REFUSALS],
    ids=[row[0] for row in REFUSALS],
)
def test_beyond_the_limits_is_refused_whatever_the_tier(
    req: ProposalRequest, limits: Limits, active: int, refusal: str
) -> None:
    decision = decide(req, limits=limits, active=active)
    assert decision.refusal is not None
    assert decision.refusal.startswith(refusal)


def test_a_low_tier_proposal_is_refused_at_the_limit_too() -> None:
    decision = decide(request(cron("0 9 * * *"), REMINDER), active=Limits().max_schedules_per_chat)
    assert decision.tier is LOW and decision.refusal is not None


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (30, "30 seconds"),
        (60, "1 minute"),
        (5400, "90 minutes"),
        (3600, "1 hour"),
        (82800, "23 hours"),
        (172800, "2 days"),
    ],
)
def test_durations_in_words(seconds: int, words: str) -> None:
    assert describe_duration(timedelta(seconds=seconds)) == words
