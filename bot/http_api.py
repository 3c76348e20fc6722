"""The HTTP side, on one port (HTTP_HOST:HTTP_PORT):

    GET  /healthz                     loop alive, last tick age, iterations work, database
    GET  /metrics                     Prometheus text format
    /api/v1/...                       the JSON API (bearer token; see `ROUTES` below)
    POST {path of WEBHOOK_URL}        Telegram's pushed updates, in webhook mode

aiohttp, because it is already the stack of the agent transport and of the test
servers: no second web framework, no extra server process, and it runs on the bot's
own event loop next to the engine.

Security: the API is off (404) without API_TOKEN; the token is compared in constant
time and never logged or echoed; each token (and each unauthenticated client address)
has a token bucket; bodies are capped at 64 KiB; only allow-listed chats can be
addressed, and anything outside them is 404, indistinguishable from absent.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any, Literal, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import models_json_schema
from telegram import Update

from bot import redact
from bot.context import Services, TicklerApp
from bot.metrics import Metrics
from bot.settings import Settings, webhook_path
from bot.stats_chart import HEIGHT_PX, WIDTH_PX, render_png_async
from bot.webapp.server import MiniApp
from scheduler.budgets import PERIODS, BudgetUse
from scheduler.bundle_model import Bundle
from scheduler.bundles import BundleCard, BundleNotFound
from scheduler.chat_agents import ChatAgent, InvalidAgent
from scheduler.errors import (
    InvalidSchedule,
    InvalidState,
    ProposalNotFound,
    RunNotFound,
    ScheduleNotFound,
    TicklerError,
    shown,
)
from scheduler.models import EmittedEvent, PauseKind, Run, Schedule
from scheduler.proposals import Proposal, ProposalRequest
from scheduler.results import LOG_EXCERPT_LIMIT, OUTPUTS_URL_LIMIT, SUMMARY_LIMIT
from scheduler.sinks import Sink
from scheduler.stats import chat_stats, parse_window
from scheduler.triggers import EVENT_NAME_PATTERN
from scheduler.work_items import WorkItemNotFound

__all__ = [
    "API_PREFIX",
    "BODY_TIMEOUT_S",
    "MAX_BODY_BYTES",
    "HttpServer",
    "HttpStartError",
    "TokenBucket",
]

log = logging.getLogger("tickler.http")

API_PREFIX = "/api/v1"
#: The largest API request body accepted (413 beyond it).
MAX_BODY_BYTES = 64 * 1024
#: The largest body at all: Telegram's updates may be longer than an API request.
_MAX_ANY_BODY = 1024 * 1024
#: /healthz: the loop counts as stuck when its last tick is older than
#: 3 × max_sleep + this margin (seconds).
TICK_MARGIN_S = 10.0
#: /healthz: how long `SELECT 1` may take before the database counts as not answering.
DB_TIMEOUT_S = 5.0
#: Requests still running at shutdown get this long to finish.
_SHUTDOWN_TIMEOUT_S = 2.0
#: Rate-limit buckets kept at most (unauthenticated clients get one per address).
_MAX_BUCKETS = 10_000
#: How long a request body may take to arrive in full (408 after): a client that
#: stalls mid-send would otherwise hold a connection and a handler forever.
BODY_TIMEOUT_S = 10.0

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- request and response bodies -------------------------------------------------------
class ErrorResponse(BaseModel):
    error: str
    #: The request field at fault, dotted (`trigger.cron`), when one is.
    field: str | None = None


class Health(BaseModel):
    status: Literal["ok", "unhealthy"]
    loop_alive: bool
    #: Seconds since the engine loop last began an iteration, by the engine's clock.
    last_tick_age_s: float | None
    #: The database answers a read and its last write went through.
    db_ok: bool
    #: Why not, in one sentence (a lock held too long, a full disk, a read-only file).
    db_error: str | None = None
    #: Telegram answered at start-up. Until it does, the engine runs anyway and chat
    #: messages wait in the outbox, so this alone does not make the status unhealthy.
    telegram_connected: bool = False
    #: This replica polls Telegram and sends the outbox: with PostgreSQL replicas the one
    #: holding the Telegram lease (the others report false and are healthy), on SQLite
    #: always.
    telegram_leader: bool = False
    #: The engine's iterations complete (the loop may tick on while each one fails).
    engine_ok: bool = True
    #: Why not, in one sentence: how many failed in a row, and the last error.
    engine_error: str | None = None


class ScheduleList(BaseModel):
    schedules: list[Schedule]


class RunList(BaseModel):
    runs: list[Run]


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=200)


class Resumed(BaseModel):
    schedule: Schedule
    #: Fire instants that passed while paused, recorded as skipped.
    skipped_while_paused: int


class RunsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schedule_id: str | None = None
    limit: int = Field(default=20, ge=1, le=100)


class BundleBackfillRequest(BaseModel):
    """A window of days (the template's zone, TO included, today at the latest)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: date = Field(alias="from")
    end: date = Field(alias="to")


class BundleBackfillResult(BaseModel):
    #: Bundles made by this call, and the days whose bundle existed already.
    created: int
    skipped: int
    #: The anchor date of each fire day in the window, oldest first.
    anchors: list[date]


class BundleStepView(BaseModel):
    number: int
    kind: Literal["task", "agent"]
    title: str
    due_at: datetime
    #: A task's work-item status (todo, waiting, done, archived); a prompt's run status,
    #: or `scheduled` before it fired.
    status: str
    proof: Literal["link", "file", "note"] | None = None
    proof_missing: bool = False
    overdue: bool = False
    follow_up_due: bool = False
    #: The work item of a task step; the one-time schedule of a prompt step.
    item_id: str | None = None
    schedule_id: str | None = None


class BundleView(BaseModel):
    """A bundle and its risk (the /bundle card)."""

    bundle: Bundle
    overdue: int
    waiting: int
    follow_ups_due: int
    missing_proof: int
    #: The number of the open step due first.
    next_due_step: int | None
    steps: list[BundleStepView]


class BundleList(BaseModel):
    bundles: list[BundleView]


class BudgetUseView(BaseModel):
    #: Runs started and the tokens their finished runs reported.
    runs: int
    tokens: int


class BudgetLimitsView(BaseModel):
    #: Per week (the last 7 days); null: no limit.
    runs_per_week: int | None
    tokens_per_week: int | None


class ScheduleBudgetView(BaseModel):
    schedule_id: str
    number: int | None
    name: str
    paused_at_budget: bool
    limits: BudgetLimitsView
    #: "day", "week", "month": the last 1, 7 and 30 days.
    use: dict[str, BudgetUseView]


class ChatAgentView(BaseModel):
    """A chat's own agent (docs/chat.md#per-chat-agents); `default`: it has none, its
    runs go to AGENT_URL's. The secret is never shown: only whether one is set."""

    chat_id: int
    default: bool
    url: str | None = None
    mode: str | None = None
    secret_set: bool = False
    model: str | None = None


class ChatAgentRequest(BaseModel):
    """The chat's agent as a whole (a field left out or null: the default agent's)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    mode: str | None = None
    #: Telegram mode: the X-Telegram-Bot-Api-Secret-Token; openai mode: the bearer token.
    secret: str | None = None
    model: str | None = None


class BudgetView(BaseModel):
    """A chat's budget and its use (docs/chat.md#budgets)."""

    limits: BudgetLimitsView
    use: dict[str, BudgetUseView]
    schedules: list[ScheduleBudgetView]


class SinkRequest(BaseModel):
    """A new notification sink (docs/notification-sinks.md)."""

    model_config = ConfigDict(extra="forbid")

    #: webhook, slack or email.
    kind: str
    #: The webhook's or Slack's URL, or the e-mail address.
    target: str
    #: The events it takes (approval, failed, tripped, proposal, automation, result);
    #: absent: all but result.
    events: list[str] | None = None
    #: A webhook's signing secret (16+ characters); absent: Tickler makes one.
    secret: str | None = None


class SinkView(BaseModel):
    id: str
    kind: str
    #: A Slack URL shows only its host: its path is the credential.
    target: str
    events: list[str]
    #: active or dead (failed for 6 hours; it gets no more notices).
    status: str
    #: Why the last attempt failed (an HTTP status or the kind of error), while failing.
    last_error: str | None
    created_at: datetime


class SinkList(BaseModel):
    sinks: list[SinkView]


class SinkCreated(SinkView):
    #: The signing secret Tickler made, this once; null when it was given (or not a webhook).
    secret: str | None


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}


# --- rate limiting ---------------------------------------------------------------------
class TokenBucket:
    """`rate` requests per second on average, bursts of up to `burst`."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> float:
        """0 if a request may go now (and count it), else seconds until one may."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate

    @property
    def full(self) -> bool:
        now = self._clock()
        return self._tokens + (now - self._at) * self.rate >= self.burst


# --- the server ------------------------------------------------------------------------
class HttpStartError(RuntimeError):
    """The HTTP port could not be opened; the message is the one line to print."""


class HttpServer:
    """The aiohttp application and its listening socket; `start` and `stop` it."""

    def __init__(self, ptb: TicklerApp, settings: Settings, metrics: Metrics) -> None:
        self.ptb = ptb
        self.settings = settings
        self.metrics = metrics
        self._token = settings.api_token.get_secret_value().encode() if settings.api_token else None
        self._buckets: dict[str, TokenBucket] = {}
        self.body_timeout_s = BODY_TIMEOUT_S
        self._openapi: dict[str, Any] | None = None
        self._runner: web.AppRunner | None = None
        #: Before the loop's first tick, /healthz measures from here (engine clock).
        self._started_at: datetime | None = None
        self.web = web.Application(
            client_max_size=_MAX_ANY_BODY, middlewares=[self._errors, self._api_gate]
        )
        self.web.router.add_get("/healthz", self._healthz)
        self.web.router.add_get("/metrics", self._metrics)
        chat = API_PREFIX + r"/chats/{chat_id:-?\d{1,20}}"
        schedule = chat + "/schedules/{schedule_id}"
        self.web.router.add_get(API_PREFIX + "/openapi.json", self._openapi_doc)
        self.web.router.add_post(chat + "/proposals", self._propose)
        self.web.router.add_get(chat + "/schedules", self._list_schedules)
        self.web.router.add_post(schedule + "/pause", self._pause)
        self.web.router.add_post(schedule + "/resume", self._resume)
        self.web.router.add_post(schedule + "/archive", self._archive)
        self.web.router.add_post(schedule + "/run", self._run_now)
        self.web.router.add_get(chat + "/runs", self._runs)
        self.web.router.add_get(chat + "/stats.png", self._stats_png)
        self.web.router.add_get(chat + "/bundles", self._bundles)
        self.web.router.add_get(chat + "/budget", self._budget)
        self.web.router.add_get(chat + "/agent", self._get_agent)
        self.web.router.add_put(chat + "/agent", self._put_agent)
        self.web.router.add_delete(chat + "/agent", self._delete_agent)
        self.web.router.add_get(chat + "/sinks", self._sinks)
        self.web.router.add_post(chat + "/sinks", self._add_sink)
        self.web.router.add_delete(chat + "/sinks/{sink_id}", self._remove_sink)
        self.web.router.add_get(chat + "/bundles/{bundle_id}", self._bundle)
        self.web.router.add_post(schedule + "/bundles/backfill", self._backfill_bundles)
        self.web.router.add_patch(chat + "/runs/{run_id}", self._report_result)
        # The same without the chat (an agent knows the run id from X-Tickler-Run-Id):
        # the run is looked up in the chats the API may address, and only there.
        self.web.router.add_patch(API_PREFIX + "/runs/{run_id}", self._report_result_by_id)
        self.web.router.add_post(API_PREFIX + "/events/{name}", self._event)
        if settings.webhook_url:
            self.web.router.add_post(webhook_path(settings.webhook_url), self._telegram)
        if settings.telegram_bot_token is not None:
            MiniApp(
                self._services,
                settings.telegram_bot_token.get_secret_value(),
                timedelta(seconds=settings.webapp_auth_max_age),
                self._bucket,
            ).register(self.web.router)

    @property
    def address(self) -> tuple[str, int]:
        return self.settings.http_host, self.settings.http_port

    async def start(self) -> None:
        self._started_at = self._services().engine.clock.now()
        runner = web.AppRunner(self.web, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        host, port = self.address
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise HttpStartError(
                f"Cannot listen on {host}:{port} ({_why(exc)}); set HTTP_HOST/HTTP_PORT, "
                "or HTTP_PORT=0 to run without the HTTP server."
            ) from None
        self._runner = runner
        log.info("HTTP server listening on %s:%d", host, port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # --- middlewares ------------------------------------------------------------------
    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every API failure as JSON {"error", "field"}; domain errors to their status."""
        try:
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, exc.message, field=exc.field, headers=exc.headers)
        except ScheduleNotFound as exc:
            return _error(404, str(exc))
        except (RunNotFound, ProposalNotFound, BundleNotFound, WorkItemNotFound) as exc:
            return _error(404, str(exc))
        except InvalidState as exc:
            return _error(409, str(exc))
        except InvalidSchedule as exc:
            return _error(422, str(exc))
        except TicklerError as exc:
            return _error(400, str(exc))
        except web.HTTPException as exc:
            if exc.status < 400 or not _is_api(request):
                raise
            return _error(exc.status, f"{exc.reason}.", headers=_retry_after(exc))
        except Exception:
            # A bug, not the caller's fault: one JSON sentence instead of aiohttp's plain
            # text, and a log line naming the request (never its headers or body, which
            # carry the token and the caller's data).
            log.exception("unexpected error answering %s %s", request.method, request.path)
            return _error(500, "Something went wrong on our side; try again later.")

    @web.middleware
    async def _api_gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """/api: off without API_TOKEN; bearer token; rate limit per token."""
        if not _is_api(request):
            return await handler(request)
        if self._token is None:
            raise ApiError(404, "Not found.")
        if request.path == API_PREFIX + "/openapi.json":
            return await handler(request)
        authorized = self._authorized(request)
        wait = self._bucket("token" if authorized else f"anon:{request.remote}").take()
        if wait > 0:
            raise ApiError(
                429,
                "Too many requests; slow down.",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        if not authorized:
            raise ApiError(
                401,
                "Missing or wrong API token; send the header 'Authorization: Bearer <API_TOKEN>'.",
                headers={"WWW-Authenticate": 'Bearer realm="tickler"'},
            )
        return await handler(request)

    def _authorized(self, request: web.Request) -> bool:
        assert self._token is not None
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # aiohttp keeps undecodable header bytes as surrogates; surrogateescape gives the
        # bytes back, so a non-ASCII token is a plain mismatch (401), not a crash.
        given = presented.strip().encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, self._token)

    def _bucket(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                # Forget the clients that are back to a full bucket: same as new ones.
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full}
            bucket = TokenBucket(self.settings.api_rate_per_second, self.settings.api_rate_burst)
            self._buckets[key] = bucket
        return bucket

    # --- helpers ----------------------------------------------------------------------
    def _services(self) -> Services:
        return self.ptb.services

    def _chat(self, request: web.Request) -> tuple[Services, int]:
        """The services and the chat the request addresses, if it may address it."""
        svc = self._services()
        chat_id = int(request.match_info["chat_id"])
        s = self.settings
        if chat_id not in {*s.admin_ids, *s.operator_ids, *s.api_chat_ids}:
            raise ApiError(404, f"There is no chat {chat_id} here.")
        return svc, chat_id

    # --- operations ----------------------------------------------------------------------
    async def _healthz(self, request: web.Request) -> web.Response:
        svc = self._services()
        engine = svc.engine
        loop = self.ptb.started.engine
        side = self.ptb.started.telegram
        alive = loop is not None and not loop.done()
        since = engine.last_tick_at or self._started_at
        age = None if since is None else max(0.0, (engine.clock.now() - since).total_seconds())
        limit = 3 * engine.config.max_sleep.total_seconds() + TICK_MARGIN_S
        # A read alone would pass on a full disk or a read-only file, so a failed last
        # write counts too: the engine writes at least every heartbeat.
        db_error = svc.store.write_failure
        try:
            async with asyncio.timeout(DB_TIMEOUT_S):
                await svc.store.operations.ping()
        except TimeoutError:
            db_error = db_error or f"The database did not answer within {DB_TIMEOUT_S:g} s."
        except Exception as exc:
            db_error = db_error or f"The database cannot be read ({exc})."
        db_ok = db_error is None
        engine_error = engine.failing
        healthy = alive and age is not None and age <= limit and db_ok and engine_error is None
        health = Health(
            status="ok" if healthy else "unhealthy",
            loop_alive=alive,
            last_tick_age_s=None if engine.last_tick_at is None or age is None else round(age, 3),
            db_ok=db_ok,
            db_error=db_error,
            telegram_connected=self.ptb.started.telegram_connected,
            telegram_leader=side is not None and side.leading,
            engine_ok=engine_error is None,
            engine_error=engine_error,
        )
        return _json(health, 200 if healthy else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        svc = self._services()
        body = await self.metrics.render(svc.store.operations, svc.engine)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # --- the Telegram webhook ----------------------------------------------------------
    async def _telegram(self, request: web.Request) -> web.Response:
        secret = self.settings.webhook_secret
        assert secret is not None  # settings require it in webhook mode
        presented = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        given = presented.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, secret.get_secret_value().encode()):
            return web.Response(status=403)
        raw = await _read_body(request, self.body_timeout_s)
        try:
            update = Update.de_json(json.loads(raw), self.ptb.bot)
        except Exception:
            log.warning("webhook: an update that could not be read was refused")
            return web.Response(status=400)
        await self.ptb.update_queue.put(update)
        return web.Response()

    # --- the API ---------------------------------------------------------------------------
    async def _openapi_doc(self, request: web.Request) -> web.Response:
        if self._openapi is None:
            self._openapi = openapi_document()
        return web.json_response(self._openapi)

    async def _propose(self, request: web.Request) -> web.Response:
        svc, chat_id = self._chat(request)
        proposal_request = await _body(request, ProposalRequest, self.body_timeout_s)
        if svc.proposals is None:
            raise ApiError(503, "Proposals are not available yet; try again shortly.")
        try:
            proposal = await svc.proposals.propose(chat_id, proposal_request, proposed_by="api")
        except InvalidSchedule as exc:
            message = f"Invalid {exc.field}: {exc}" if exc.field else str(exc)
            raise ApiError(422, message, field=exc.field) from None
        return _json(proposal, 201)

    async def _list_schedules(self, request: web.Request) -> web.Response:
        svc, chat_id = self._chat(request)
        return _json(ScheduleList(schedules=await svc.service.list_schedules(chat_id)))

    async def _pause(self, request: web.Request) -> web.Response:
        svc, chat_id = self._chat(request)
        body = await _body(request, PauseRequest, self.body_timeout_s, optional=True)
        schedule_id = request.match_info["schedule_id"]
        return _json(await svc.service.pause(chat_id, schedule_id, by=None, reason=body.reason))

    async def _resume(self, request: web.Request) -> web.Response:
        svc, chat_id = self._chat(request)
        resumed = await svc.service.resume(chat_id, request.match_info["schedule_id"])
        return _json(
            Resumed(schedule=resumed.schedule, skipped_while_paused=resumed.skipped_while_paused)
        )

    async def _archive(self, request: web.Request) -> web.Response:
        svc, chat_id = self._chat(request)
        return _json(await svc.service.archive(chat_id, request.match_info["schedule_id"]))

    async def _run_now(self, request: web.Request) -> web.Response:
        svc, chat_id = self._chat(request)
        return _json(await svc.service.run_now(chat_id, request.match_info["schedule_id"]), 202)

    async def _runs(self, request: web.Request) -> web.Response:
        svc, chat_id = self._chat(request)
        query = _validate(RunsQuery, dict(request.query))
        runs = await svc.service.history(chat_id, query.schedule_id, limit=query.limit)
        return _json(RunList(runs=runs))

    async def _stats_png(self, request: web.Request) -> web.Response:
        """The /stats chart of the chat; `window` as /stats takes it (24h, 7d, 30d)."""
        svc, chat_id = self._chat(request)
        window = request.query.get("window")
        try:
            parse_window(window)
        except InvalidState as exc:
            raise ApiError(422, str(exc), field="window") from exc
        zone = await svc.service.chat_timezone(chat_id)
        store = svc.store
        figures = await chat_stats(store.runs, store.schedules, svc.clock, chat_id, window, zone)
        png = await render_png_async(figures)
        # Figures change with every run: a client re-asks rather than reuse a stale chart.
        return web.Response(
            body=png, content_type="image/png", headers={"Cache-Control": "no-store"}
        )

    async def _bundles(self, request: web.Request) -> web.Response:
        svc, chat_id = self._chat(request)
        cards = await svc.bundles.active(chat_id)
        return _json(BundleList(bundles=[_bundle_view(c) for c in cards]))

    async def _get_agent(self, request: web.Request) -> web.Response:
        svc, chat_id = self._chat(request)
        return _json(_agent_view(chat_id, await svc.agents.get(chat_id)))

    async def _put_agent(self, request: web.Request) -> web.Response:
        svc, chat_id = self._chat(request)
        given = await _body(request, ChatAgentRequest, self.body_timeout_s)
        try:
            agent = await svc.agents.update(
                chat_id, url=given.url, mode=given.mode, secret=given.secret, model=given.model
            )
        except InvalidAgent as exc:
            raise ApiError(422, str(exc)) from None
        return _json(_agent_view(chat_id, agent))

    async def _delete_agent(self, request: web.Request) -> web.Response:
        svc, chat_id = self._chat(request)
        await svc.agents.reset(chat_id)
        return _json(_agent_view(chat_id, None))

    async def _budget(self, request: web.Request) -> web.Response:
        """The chat's weekly limits and its use, the chat's and each schedule's."""
        svc, chat_id = self._chat(request)
        prefs, report, schedules = await svc.service.budget_use(chat_id)

        def use(per: dict[str, BudgetUse]) -> dict[str, BudgetUseView]:
            return {
                period: BudgetUseView(runs=u.runs, tokens=u.tokens)
                for period, _ in PERIODS
                for u in [per.get(period, BudgetUse())]
            }

        return _json(
            BudgetView(
                limits=BudgetLimitsView(
                    runs_per_week=prefs.budget_runs_per_week,
                    tokens_per_week=prefs.budget_tokens_per_week,
                ),
                use=use(report.chat),
                schedules=[
                    ScheduleBudgetView(
                        schedule_id=s.id,
                        number=s.number,
                        name=s.name,
                        paused_at_budget=not s.enabled and s.pause_kind is PauseKind.BUDGET,
                        limits=BudgetLimitsView(
                            runs_per_week=s.policies.budget_runs_per_week,
                            tokens_per_week=s.policies.budget_tokens_per_week,
                        ),
                        use=use(report.by_schedule.get(s.id, {})),
                    )
                    for s in schedules
                ],
            )
        )

    async def _sinks(self, request: web.Request) -> web.Response:
        svc, chat_id = self._chat(request)
        return _json(SinkList(sinks=[_sink_view(s) for s in await svc.sinks.list(chat_id)]))

    async def _add_sink(self, request: web.Request) -> web.Response:
        svc, chat_id = self._chat(request)
        body = await _body(request, SinkRequest, self.body_timeout_s)
        added = await svc.sinks.add(
            chat_id, body.kind, body.target, events=body.events, secret=body.secret
        )
        redact.remember([added.sink.secret])
        view = _sink_view(added.sink)
        return _json(SinkCreated(**view.model_dump(), secret=added.new_secret), status=201)

    async def _remove_sink(self, request: web.Request) -> web.Response:
        svc, chat_id = self._chat(request)
        await svc.sinks.remove(chat_id, request.match_info["sink_id"])
        return web.Response(status=204)

    async def _bundle(self, request: web.Request) -> web.Response:
        svc, chat_id = self._chat(request)
        card = await svc.bundles.card(chat_id, request.match_info["bundle_id"])
        return _json(_bundle_view(card))

    async def _backfill_bundles(self, request: web.Request) -> web.Response:
        """A workflow template's bundles for a window of past days: one per fire day,
        those that exist skipped (a repeat creates nothing)."""
        svc, chat_id = self._chat(request)
        body = await _body(request, BundleBackfillRequest, self.body_timeout_s)
        template = await svc.service.get_schedule(chat_id, request.match_info["schedule_id"])
        done = await svc.bundles.backfill(template, body.start, body.end)
        return _json(
            BundleBackfillResult(created=done.created, skipped=done.skipped, anchors=done.anchors)
        )

    async def _report_result(self, request: web.Request) -> web.Response:
        """An agent's asynchronous result for a run it answered 202 (the service
        checks the body: docs/agent-protocol.md)."""
        svc, chat_id = self._chat(request)
        data = await _json_body(request, self.body_timeout_s)
        run = await svc.service.report_result(chat_id, request.match_info["run_id"], data)
        return _json(run)

    async def _report_result_by_id(self, request: web.Request) -> web.Response:
        svc = self._services()
        run_id = request.match_info["run_id"]
        data = await _json_body(request, self.body_timeout_s)
        s = self.settings
        for chat_id in sorted({*s.admin_ids, *s.operator_ids, *s.api_chat_ids}):
            if await svc.store.runs.get(chat_id, run_id) is not None:
                return _json(await svc.service.report_result(chat_id, run_id, data))
        raise RunNotFound(f"There is no run '{shown(run_id)}' here.")

    async def _event(self, request: web.Request) -> web.Response:
        """An event for every chat this token may address: each of their active
        schedules listening to it runs once (once per Idempotency-Key)."""
        svc = self._services()
        s = self.settings
        payload = await _json_body(request, self.body_timeout_s)
        try:
            emitted = await svc.service.emit_event(
                {*s.admin_ids, *s.operator_ids, *s.api_chat_ids},
                request.match_info["name"],
                payload,
                caller="api",
                idempotency_key=request.headers.get("Idempotency-Key"),
            )
        except InvalidSchedule as exc:
            raise ApiError(422, str(exc), field=exc.field) from None
        return _json(emitted, 200 if emitted.repeated else 201)


# --- helpers -------------------------------------------------------------------------------
def _bundle_view(card: BundleCard) -> BundleView:
    steps = []
    for state in card.steps:
        item = state.item
        if item is not None:
            status = item.status.value
        elif state.run is not None:
            status = state.run.status.value
        else:
            status = "scheduled" if not state.is_task else "not made"
        steps.append(
            BundleStepView(
                number=state.number,
                kind="task" if state.is_task else "agent",
                title=state.step.title,
                due_at=state.due_at,
                status=status,
                proof=state.step.proof,
                proof_missing=state.missing_proof is not None,
                overdue=state.overdue(card.now),
                follow_up_due=state.follow_up_due(card.now),
                item_id=item.id if item is not None else None,
                schedule_id=state.schedule_id,
            )
        )
    upcoming = card.next_due
    return BundleView(
        bundle=card.bundle,
        overdue=len(card.overdue),
        waiting=len(card.waiting),
        follow_ups_due=len(card.follow_ups_due),
        missing_proof=len(card.missing_proof),
        next_due_step=upcoming.number if upcoming is not None else None,
        steps=steps,
    )


def _why(exc: OSError) -> str:
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


def _is_api(request: web.Request) -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def _agent_view(chat_id: int, agent: ChatAgent | None) -> ChatAgentView:
    if agent is None:
        return ChatAgentView(chat_id=chat_id, default=True)
    return ChatAgentView(
        chat_id=chat_id,
        default=False,
        url=agent.url,
        mode=agent.mode,
        secret_set=agent.secret is not None,
        model=agent.model,
    )


def _sink_view(sink: Sink) -> SinkView:
    return SinkView(
        id=sink.id,
        kind=sink.kind.value,
        target=sink.target,
        events=list(sink.events),
        status=sink.status.value,
        last_error=sink.last_error,
        created_at=sink.created_at,
    )


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )


def _error(
    status: int, message: str, *, field: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    response = _json(ErrorResponse(error=message, field=field), status)
    response.headers.update(headers or {})
    return response


def _retry_after(exc: web.HTTPException) -> dict[str, str]:
    value = exc.headers.get("Retry-After")
    return {"Retry-After": value} if value else {}


async def _body(
    request: web.Request, model: type[M], timeout_s: float, *, optional: bool = False
) -> M:
    """The request's JSON body as `model`: 413 when too large, 408 when it does not
    arrive within `timeout_s`, 422 when malformed, nested too deep or invalid (naming
    the field)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, f"The body is larger than {MAX_BODY_BYTES // 1024} KiB.")
    raw = await _read_body(request, timeout_s)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"The body is larger than {MAX_BODY_BYTES // 1024} KiB.")
    if optional and not raw.strip():
        return model()
    return _validate(model, _decode_json(raw))


async def _json_body(request: web.Request, timeout_s: float) -> Any:
    """The request's JSON body decoded (None when empty), for a service that checks it
    itself; 413, 408 and 422 as `_body`."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, f"The body is larger than {MAX_BODY_BYTES // 1024} KiB.")
    raw = await _read_body(request, timeout_s)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"The body is larger than {MAX_BODY_BYTES // 1024} KiB.")
    if not raw.strip():
        return None
    return _decode_json(raw)


def _decode_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        raise ApiError(422, "Malformed JSON: nested too deep.") from None
    except ValueError as exc:  # includes UnicodeDecodeError
        raise ApiError(422, f"Malformed JSON: {exc}.") from None


async def _read_body(request: web.Request, timeout_s: float) -> bytes:
    """The whole body, under a deadline; a client gone mid-body is its own business
    (one INFO line), not a server error."""
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise ApiError(
            408, f"The request body did not arrive within {timeout_s:g} s; send it whole."
        ) from None
    except ConnectionError:
        log.info("client went away before sending the whole body of %s", request.path)
        raise ApiError(400, "The request body was cut off; send it whole.") from None


def _validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except RecursionError:
        raise ApiError(422, "Invalid body: nested too deep.") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        message = str(first["msg"]).removeprefix("Value error, ").rstrip(".")
        what = field or "body"
        raise ApiError(422, f"Invalid {what}: {message}.", field=field) from None


# --- the OpenAPI document ---------------------------------------------------------------
#: The body of PATCH .../runs/{run_id}, as `scheduler.results.check_report` checks it.
RESULT_REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["status"],
    "properties": {
        "status": {"enum": ["succeeded", "failed"]},
        "summary": {"type": ["string", "null"], "maxLength": SUMMARY_LIMIT},
        "outputs_url": {
            "type": ["string", "null"],
            "maxLength": OUTPUTS_URL_LIMIT,
            "description": "An absolute http:// or https:// link (a PR, an artifact)",
        },
        "log_excerpt": {"type": ["string", "null"], "maxLength": LOG_EXCERPT_LIMIT},
    },
}

_ERRORS = {
    "401": "Missing or wrong token",
    "408": "The body did not arrive in time",
    "404": "No such chat, schedule or run (or the API is off)",
    "409": (
        "Not possible in the current state, a repeat of a schedule or waiting proposal, "
        "or an Idempotency-Key used for another event"
    ),
    "413": "Body over 64 KiB",
    "422": "Malformed JSON or an invalid field (named in `field`)",
    "429": "Rate limit; see Retry-After",
}


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1, assembled from the pydantic models' JSON schemas."""
    refs, schemas = models_json_schema(
        [
            (ProposalRequest, "validation"),
            (PauseRequest, "validation"),
            (Proposal, "serialization"),
            (Schedule, "serialization"),
            (ScheduleList, "serialization"),
            (Resumed, "serialization"),
            (Run, "serialization"),
            (RunList, "serialization"),
            (EmittedEvent, "serialization"),
            (BundleBackfillRequest, "validation"),
            (BundleBackfillResult, "serialization"),
            (BundleView, "serialization"),
            (BundleList, "serialization"),
            (BudgetView, "serialization"),
            (ChatAgentView, "serialization"),
            (ChatAgentRequest, "validation"),
            (SinkRequest, "validation"),
            (SinkList, "serialization"),
            (SinkCreated, "serialization"),
            (Health, "serialization"),
            (ErrorResponse, "serialization"),
        ],
        ref_template="#/components/schemas/{model}",
    )

    def ref(model: type[BaseModel], mode: str = "serialization") -> dict[str, Any]:
        return dict(refs[(model, mode)])  # type: ignore[index]

    def body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
        return {
            "required": required,
            "content": {"application/json": {"schema": ref(model, "validation")}},
        }

    errors = {
        code: {
            "description": why,
            "content": {"application/json": {"schema": ref(ErrorResponse)}},
        }
        for code, why in _ERRORS.items()
    }

    def answer(status: int, model: type[BaseModel], text: str) -> dict[str, Any]:
        ok = {"description": text, "content": {"application/json": {"schema": ref(model)}}}
        return {str(status): ok, **errors}

    chat_param = {"name": "chat_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    schedule_param = {
        "name": "schedule_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }

    def action(summary: str, model: type[BaseModel], status: int = 200, **extra: Any) -> Any:
        return {
            "post": {
                "summary": summary,
                "parameters": [chat_param, schedule_param],
                "responses": answer(status, model, summary),
                **extra,
            }
        }

    chat = API_PREFIX + "/chats/{chat_id}"
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {
                "summary": "Liveness: engine loop, last tick age, engine iterations, database",
                "security": [],
                "responses": {
                    "200": {
                        "description": "healthy",
                        "content": {"application/json": {"schema": ref(Health)}},
                    },
                    "503": {
                        "description": "unhealthy",
                        "content": {"application/json": {"schema": ref(Health)}},
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format)",
                "security": [],
                "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}},
            }
        },
        chat + "/proposals": {
            "post": {
                "summary": "Propose a schedule; the risk policy activates it or asks for approval",
                "parameters": [chat_param],
                "requestBody": body(ProposalRequest),
                "responses": answer(201, Proposal, "The proposal as recorded"),
            }
        },
        chat + "/schedules": {
            "get": {
                "summary": "The chat's schedules (archived ones excluded)",
                "parameters": [chat_param],
                "responses": answer(200, ScheduleList, "The schedules"),
            }
        },
        chat + "/schedules/{schedule_id}/pause": action(
            "Pause a schedule", Schedule, requestBody=body(PauseRequest, required=False)
        ),
        chat + "/schedules/{schedule_id}/resume": action("Resume a schedule", Resumed),
        chat + "/schedules/{schedule_id}/archive": action("Archive a schedule", Schedule),
        chat + "/schedules/{schedule_id}/run": action("Run a schedule now", Run, 202),
        chat + "/runs": {
            "get": {
                "summary": "Recent runs, newest first",
                "parameters": [
                    chat_param,
                    {"name": "schedule_id", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                    },
                ],
                "responses": answer(200, RunList, "The runs"),
            }
        },
        chat + "/stats.png": {
            "get": {
                "summary": (
                    f"The /stats chart as a PNG ({WIDTH_PX}x{HEIGHT_PX}): runs per day "
                    "stacked by outcome, the day's fire lag p95 and tokens per day, by day "
                    "in the chat's time zone"
                ),
                "parameters": [
                    chat_param,
                    {
                        "name": "window",
                        "in": "query",
                        "description": "24h, 7d, 30d (up to 90d)",
                        "schema": {
                            "type": "string",
                            "pattern": "^[0-9]{1,3}[hdHD]$",
                            "default": "7d",
                        },
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The chart",
                        "content": {
                            "image/png": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    **errors,
                },
            }
        },
        chat + "/budget": {
            "get": {
                "summary": "The chat's weekly limits and its use (day, week, month), the "
                "chat's and each schedule's",
                "parameters": [chat_param],
                "responses": answer(200, BudgetView, "The budget and its use"),
            }
        },
        chat + "/agent": {
            "get": {
                "summary": "The chat's own agent (its secret never shown)",
                "parameters": [chat_param],
                "responses": answer(200, ChatAgentView, "The chat's agent"),
            },
            "put": {
                "summary": "Set the chat's own agent as a whole (fields left out: the default's)",
                "parameters": [chat_param],
                "requestBody": body(ChatAgentRequest),
                "responses": answer(200, ChatAgentView, "The chat's agent"),
            },
            "delete": {
                "summary": "Back to the default agent (AGENT_URL)",
                "parameters": [chat_param],
                "responses": answer(200, ChatAgentView, "The chat's agent: the default"),
            },
        },
        chat + "/sinks": {
            "get": {
                "summary": "The chat's notification sinks (never their secrets)",
                "parameters": [chat_param],
                "responses": answer(200, SinkList, "The sinks"),
            },
            "post": {
                "summary": "Add a webhook, Slack or e-mail sink (docs/notification-sinks.md)",
                "parameters": [chat_param],
                "requestBody": body(SinkRequest),
                "responses": answer(
                    201, SinkCreated, "The sink, with the signing secret Tickler made (once)"
                ),
            },
        },
        chat + "/sinks/{sink_id}": {
            "delete": {
                "summary": "Remove a sink and its undelivered notices",
                "parameters": [
                    chat_param,
                    {
                        "name": "sink_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {"204": {"description": "Removed"}, **errors},
            }
        },
        chat + "/bundles": {
            "get": {
                "summary": "The chat's active bundles, each with its risk and steps",
                "parameters": [chat_param],
                "responses": answer(200, BundleList, "The active bundles"),
            }
        },
        chat + "/bundles/{bundle_id}": {
            "get": {
                "summary": "One bundle (any status) with its risk and each step's state",
                "parameters": [
                    chat_param,
                    {
                        "name": "bundle_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": answer(200, BundleView, "The bundle"),
            }
        },
        chat + "/schedules/{schedule_id}/bundles/backfill": action(
            "Make a workflow template's bundles for a window of past days (one per fire "
            "day; existing ones are skipped, so a repeat creates nothing)",
            BundleBackfillResult,
            requestBody=body(BundleBackfillRequest),
        ),
        API_PREFIX + "/runs/{run_id}": {
            "patch": {
                "summary": "The same as PATCH /api/v1/chats/{chat_id}/runs/{run_id}, "
                "for a run of any chat the API may address",
                "parameters": [
                    {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": RESULT_REPORT_SCHEMA}},
                },
                "responses": answer(200, Run, "The run as the result left it"),
            }
        },
        chat + "/runs/{run_id}": {
            "patch": {
                "summary": "Report the result of a run the agent accepted with a 202",
                "parameters": [
                    chat_param,
                    {
                        "name": "run_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": RESULT_REPORT_SCHEMA}},
                },
                "responses": answer(200, Run, "The run as the result left it"),
            }
        },
        API_PREFIX + "/events/{name}": {
            "post": {
                "summary": (
                    "Post an event: every active schedule of the token's chats listening to "
                    "it runs once, its prompt's {event} the body (a JSON object, optional). "
                    "A repeat of an Idempotency-Key answers 200 with the first post's runs."
                ),
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": f"^{EVENT_NAME_PATTERN}$"},
                    },
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "schema": {"type": "string", "maxLength": 200},
                    },
                ],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": {
                        "description": "A repeat of the Idempotency-Key: the first post's runs",
                        "content": {"application/json": {"schema": ref(EmittedEvent)}},
                    },
                    **answer(201, EmittedEvent, "The event and the runs it fired"),
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tickler", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
