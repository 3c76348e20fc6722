"""The Mini App's schedules pages: the chat's schedules, one schedule (its trigger, zone,
action, policies, next fires and recent runs), its history a page at a time with each
run's attempts, output and error, and the actions /pause, /resume, /runnow and /edit
take, through the same service calls and role rules as those commands.

The facts come from the chat's own views as plain data (bot/views_schedules.py,
bot/views_policies.py, bot/views_runs.py); the templates escape them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from bot.handlers.schedules import to_agent
from bot.render import local, status_word, zone_of
from bot.schedule_edits import EXAMPLES, admin_only, edit_schedule
from bot.views_policies import policy_facts, setting_fact
from bot.views_runs import run_now_toast
from bot.views_schedules import HISTORY_PAGE, status_parts, upcoming
from bot.webapp.pages import Done, Page, PageRequest, Route
from scheduler.errors import RunNotFound
from scheduler.models import ActionKind, Attempt, PauseKind, Run, Schedule

__all__ = ["ROUTES"]

#: Characters of a run's output a history page shows; the run's own page shows it all
#: (up to OUTPUT_MAX).
OUTPUT_SHOWN = 1500
OUTPUT_MAX = 100_000
#: Runs of the schedule's own page (its history pages show HISTORY_PAGE).
RECENT_RUNS = 5


@dataclass(frozen=True)
class ScheduleRow:
    id: str
    ref: str
    name: str
    state: str
    detail: str
    when: str
    zone: str
    #: The next fire in the schedule's zone, or why there is none.
    next_fire: str


@dataclass(frozen=True)
class AttemptRow:
    number: int
    status: str
    finished: str
    duration: str
    error: str


@dataclass(frozen=True)
class RunRow:
    id: str
    status: str
    scheduled: str
    trigger: str
    started: str
    finished: str
    duration: str
    attempts: list[AttemptRow]
    error: str
    output: str
    #: Characters of the output not shown here.
    output_more: int
    summary: str
    outputs_url: str
    log_excerpt: str
    tokens: str


def _row(schedule: Schedule, now: datetime, names: dict[int, str]) -> ScheduleRow:
    state, detail = status_parts(schedule, names)
    zone = zone_of(schedule)
    fires, why_none = upcoming(schedule, now, 1)
    return ScheduleRow(
        id=schedule.id,
        ref=schedule.ref,
        name=schedule.name,
        state=state,
        detail=detail,
        when=schedule.trigger.describe(),
        zone=zone,
        next_fire=f"{local(fires[0], zone)}, {zone}" if fires else why_none,
    )


def _seconds(ms: float) -> str:
    return f"{ms / 1000:g} s"


def _attempt(attempt: Attempt, zone: str) -> AttemptRow:
    took = ""
    if attempt.started_at is not None and attempt.finished_at is not None:
        took = _seconds((attempt.finished_at - attempt.started_at).total_seconds() * 1000)
    return AttemptRow(
        number=attempt.attempt,
        status=attempt.status.value,
        finished=local(attempt.finished_at, zone) if attempt.finished_at else "not finished",
        duration=took,
        error=attempt.error or "",
    )


def _run(run: Run, attempts: list[Attempt], zone: str, shown: int) -> RunRow:
    output = run.output or ""
    usage = run.token_usage or {}
    return RunRow(
        id=run.id,
        status=run.status.value,
        scheduled=local(run.scheduled_for, zone),
        trigger=run.trigger.value,
        started=local(run.started_at, zone) if run.started_at else "",
        finished=local(run.finished_at, zone) if run.finished_at else "",
        duration=_seconds(run.duration_ms) if run.duration_ms is not None else "",
        attempts=[_attempt(a, zone) for a in attempts],
        error=run.error or "",
        output=output[:shown],
        output_more=max(len(output) - shown, 0),
        summary=run.summary or "",
        outputs_url=run.outputs_url or "",
        log_excerpt=run.log_excerpt or "",
        tokens=", ".join(f"{k.removesuffix('_tokens')} {v}" for k, v in usage.items()),
    )


async def _runs(request: PageRequest, schedule: Schedule, runs: list[Run]) -> list[RunRow]:
    service = request.svc.service
    zone = zone_of(schedule)
    rows = []
    for run in runs:
        detail = await service.run_detail(request.viewer.chat_id, run.id)
        rows.append(_run(detail.run, detail.attempts, zone, OUTPUT_SHOWN))
    return rows


def _names(request: PageRequest) -> dict[int, str]:
    return {request.viewer.user_id: request.viewer.first_name}


# --- pages --------------------------------------------------------------------------------
async def list_page(request: PageRequest) -> Page:
    """Every schedule of the chat, archived ones left out (as /schedules does)."""
    svc = request.svc
    now = svc.clock.now()
    schedules = await svc.service.list_schedules(request.viewer.chat_id)
    rows = [_row(s, now, _names(request)) for s in schedules]
    return Page("schedules.html", {"schedules": rows})


async def detail_page(request: PageRequest) -> Page:
    svc = request.svc
    chat = request.viewer.chat_id
    schedule = await svc.service.get_schedule(chat, request.params["schedule_id"])
    now = svc.clock.now()
    zone = zone_of(schedule)
    fires, why_none = upcoming(schedule, now)
    runs = await svc.service.history(chat, schedule.id, limit=RECENT_RUNS + 1)
    action = schedule.action
    steps = [step.title or step.text for step in action.steps]
    fields = [f for f in EXAMPLES if request.viewer.admin or not admin_only(f)]
    return Page(
        "schedule.html",
        {
            "s": _row(schedule, now, _names(request)),
            "description": schedule.description,
            "fires": [local(t, zone) for t in fires],
            "why_none": why_none,
            "kind": action.kind.value,
            "text": action.text,
            "template": action.template or "",
            "steps": steps,
            "policies": policy_facts(schedule),
            "failures": schedule.consecutive_failures,
            "created_by": f"{schedule.created_by.value} ({schedule.owner.first_name})",
            "paused": status_word(schedule) != "active",
            "awaiting": schedule.pause_kind is PauseKind.AWAITING_APPROVAL,
            "runs": await _runs(request, schedule, runs[:RECENT_RUNS]),
            "more_runs": len(runs) > RECENT_RUNS,
            "fields": fields,
            "admin": request.viewer.admin,
            "examples": {f: EXAMPLES[f].split(" ", 1)[1] for f in fields},
            "is_plan": action.kind in (ActionKind.PLAN, ActionKind.BUNDLE),
        },
    )


def _page_number(request: PageRequest) -> int:
    raw = request.params.get("page", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= 100_000:
        raise web.HTTPNotFound()
    return int(raw)


async def history_page(request: PageRequest) -> Page:
    """The schedule's runs, newest first, HISTORY_PAGE a page (1-based in the path)."""
    svc = request.svc
    chat = request.viewer.chat_id
    schedule = await svc.service.get_schedule(chat, request.params["schedule_id"])
    page = _page_number(request)
    runs = await svc.service.history(
        chat, schedule.id, limit=HISTORY_PAGE + 1, offset=(page - 1) * HISTORY_PAGE
    )
    return Page(
        "schedule_history.html",
        {
            "s": _row(schedule, svc.clock.now(), _names(request)),
            "page": page,
            "runs": await _runs(request, schedule, runs[:HISTORY_PAGE]),
            "has_more": len(runs) > HISTORY_PAGE,
        },
    )


async def run_page(request: PageRequest) -> Page:
    """One run of the schedule with all its output."""
    svc = request.svc
    chat = request.viewer.chat_id
    schedule = await svc.service.get_schedule(chat, request.params["schedule_id"])
    run_id = request.params["run_id"]
    detail = await svc.service.run_detail(chat, run_id)
    if detail.run.schedule_id != schedule.id:
        raise RunNotFound(f"There is no run '{run_id}' of '{schedule.name}' here.")
    row = _run(detail.run, detail.attempts, zone_of(schedule), OUTPUT_MAX)
    return Page("schedule_run.html", {"s": _row(schedule, svc.clock.now(), {}), "run": row})


# --- actions ------------------------------------------------------------------------------
async def pause(request: PageRequest) -> Done:
    """As /pause ID [reason]."""
    reason = request.form.get("reason", "").strip() or None
    schedule = await request.svc.service.pause(
        request.viewer.chat_id,
        request.params["schedule_id"],
        by=request.viewer.user_id,
        reason=reason,
    )
    return Done(f"Paused '{schedule.name}'; its history is kept.", f"/schedules/{schedule.id}")


async def resume(request: PageRequest) -> Done:
    """As /resume ID: fires again from now on; passed windows are recorded as skipped."""
    resumed = await request.svc.service.resume(
        request.viewer.chat_id, request.params["schedule_id"]
    )
    schedule, skipped = resumed.schedule, resumed.skipped_while_paused
    message = f"Resumed '{schedule.name}'."
    if skipped:
        windows = "window" if skipped == 1 else "windows"
        message += f" {skipped} passed {windows} recorded as skipped, not run."
    return Done(message, f"/schedules/{schedule.id}")


async def run_now(request: PageRequest) -> Done:
    """As /runnow ID: one extra run, now."""
    svc = request.svc
    requested = await svc.service.request_run(request.viewer.chat_id, request.params["schedule_id"])
    toast = run_now_toast(requested.behind, to_agent=to_agent(svc, requested.schedule))
    return Done(toast, f"/schedules/{requested.schedule.id}")


async def edit(request: PageRequest) -> Done:
    """As /edit ID FIELD VALUE, with the field and value from the form."""
    edited = await edit_schedule(
        request.svc,
        request.viewer.chat_id,
        request.params["schedule_id"],
        request.form.get("field", ""),
        request.form.get("value", ""),
        user_id=request.viewer.user_id,
    )
    schedule = edited.schedule
    if edited.setting:
        message = f"Updated '{schedule.name}': {setting_fact(schedule, edited.field)}."
    else:
        when = local(schedule.next_run_at, schedule.timezone) if schedule.next_run_at else "never"
        message = f"Updated '{schedule.name}'. Next run: {when}."
    return Done(message, f"/schedules/{schedule.id}")


ROUTES: tuple[Route, ...] = (
    Route("GET", "/schedules", list_page),
    Route("GET", "/schedules/{schedule_id}", detail_page),
    Route("GET", "/schedules/{schedule_id}/history", history_page),
    Route("GET", "/schedules/{schedule_id}/history/{page}", history_page),
    Route("GET", "/schedules/{schedule_id}/runs/{run_id}", run_page),
    Route("POST", "/schedules/{schedule_id}/pause", pause),
    Route("POST", "/schedules/{schedule_id}/resume", resume),
    Route("POST", "/schedules/{schedule_id}/run", run_now),
    Route("POST", "/schedules/{schedule_id}/edit", edit),
)
