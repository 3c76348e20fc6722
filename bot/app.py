"""The Telegram application: built by a factory; its services are opened by
`start_services` before Telegram is reached (`connect_telegram`, retried while Telegram
is down), stopped by `stop_services` and closed by `close_services`; `bot.__main__`
drives that order. Nothing is built at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import timedelta

# PTB 22 warns when code reads RetryAfter.retry_after as seconds; opting into its
# timedelta form keeps 429 handling (ours and the rate limiter's) warning-free.
os.environ.setdefault("PTB_TIMEDELTA", "1")

from telegram import BotCommand, Update
from telegram.error import InvalidToken, TelegramError
from telegram.ext import AIORateLimiter, Application, TypeHandler

from bot import access, redact
from bot.context import SERVICES_KEY, Services
from bot.followups import ping_followups_forever
from bot.handlers import (
    backfill,
    chat,
    edit,
    export,
    new,
    policies,
    proposals,
    runs,
    schedules,
    start,
    stats,
    today,
)
from bot.http_api import HttpServer
from bot.loop_watchdog import LoopWatchdog
from bot.metrics import Metrics
from bot.notifier import TelegramNotifier
from bot.outbox import deliver_pending_forever, network_backoff
from bot.proposal_expiry import expire_proposals_forever
from bot.retention import prune_history_forever
from bot.runtime import apply_configured_schedules, build_clock, build_dispatcher, engine_config
from bot.settings import Settings
from scheduler.clock import Clock
from scheduler.dispatch import HttpAgentDispatcher
from scheduler.engine import Engine, EngineConfig
from scheduler.proposals import ProposalService
from scheduler.service import ScheduleService
from scheduler.work_items import WorkItemService
from storage.database import is_unavailable
from storage.sqlite_store import SqliteStore

__all__ = [
    "COMMANDS",
    "SERVICES_KEY",
    "TelegramStartError",
    "build_application",
    "close_services",
    "connect_telegram",
    "start_services",
    "stop_services",
]

log = logging.getLogger("tickler.bot")

HTTP_KEY = "http_server"
NOTIFIER_KEY = "notifier"

#: The answer to a command that failed because the database cannot be written now.
DATABASE_DOWN = (
    "Tickler cannot write its database right now (the admins are told why), so nothing "
    "was changed; try again in a few minutes."
)

#: The command menu, in the order /help shows it.
COMMANDS: list[tuple[str, str]] = [
    ("start", "Welcome and a short tour"),
    ("help", "Every command, with what it does"),
    ("today", "What needs you now: due, overdue, follow-ups, approvals, failures"),
    ("done", "Mark a work item done: /done ITEM [link]"),
    ("wait", "Park a work item: /wait ITEM WHO DATE NOTE"),
    ("followup", "Follow-ups: /followup ITEM sent 3d | ITEM received | 3d WHAT"),
    ("new", "Create a schedule or a task for you (guided, with presets)"),
    ("schedules", "List this chat's schedules"),
    ("show", "One schedule's card: /show ID"),
    ("edit", "Change a schedule or a policy: /edit ID field value"),
    ("pause", "Pause a schedule: /pause ID [reason]"),
    ("resume", "Resume a paused or tripped schedule: /resume ID"),
    ("delete", "Archive a schedule (history is kept): /delete ID"),
    ("runnow", "Run a schedule right now: /runnow ID"),
    ("history", "Recent runs: /history [ID]"),
    ("run", "One run in detail: attempts, output, error, tokens: /run RUN_ID"),
    ("approve", "What waits for your approval: /approve [ID]"),
    ("deadletters", "Runs that failed for good"),
    ("stats", "How the schedules are doing: /stats [24h|7d|30d]"),
    ("retry", "Send a dead run again: /retry RUN_ID"),
    ("backfill", "Run past windows explicitly: /backfill ID FROM TO"),
    ("tz", "Show or set this chat's time zone: /tz Europe/Berlin"),
    ("export", "Download this chat's data as JSONL files"),
]


def build_application(
    settings: Settings,
    *,
    clock: Clock | None = None,
    dispatcher: HttpAgentDispatcher | None = None,
    engine: EngineConfig | None = None,
) -> Application:  # type: ignore[type-arg]
    """The bot, wired but not started. Tests inject a fake clock and an engine config."""
    if settings.telegram_bot_token is None:
        raise ValueError("TELEGRAM_BOT_TOKEN is required to run the bot")
    # Before anything logs: the token is in every Bot API URL httpx logs.
    redact.install(redact.secrets_of(settings))
    builder = (
        Application.builder()
        .token(settings.telegram_bot_token.get_secret_value())
        .rate_limiter(AIORateLimiter(max_retries=5))
    )
    if settings.telegram_api_base_url:
        root = settings.telegram_api_base_url.rstrip("/")
        builder = builder.base_url(f"{root}/bot").base_file_url(f"{root}/file/bot")
    app = builder.build()
    app.bot_data["settings"] = settings
    app.bot_data["clock"] = clock or build_clock(settings)
    app.bot_data["dispatcher"] = dispatcher
    app.bot_data["engine_config"] = engine or engine_config(settings)

    # Order matters: the allow-list gate runs first (group -1) and stops everything else.
    app.add_handler(TypeHandler(Update, access.gate), group=-1)
    for module in (
        start,
        new,
        edit,
        schedules,
        policies,
        runs,
        backfill,
        proposals,
        today,
        stats,
        export,
        chat,
    ):
        module.register(app)
    start.register_fallback(app)
    app.add_error_handler(_on_error)
    return app


async def start_services(app: Application) -> None:  # type: ignore[type-arg]
    """Open the store, apply SCHEDULES_FILE, start the HTTP server, the engine and the
    outbox. Nothing here needs Telegram: the engine fires while it is unreachable, and
    the outbox keeps the chats' messages until `connect_telegram` got through."""
    settings: Settings = app.bot_data["settings"]
    clock: Clock = app.bot_data["clock"]
    settings.database_path.parent.mkdir(parents=True, exist_ok=True)
    store = await SqliteStore.open(settings.database_path)
    dispatcher: HttpAgentDispatcher = app.bot_data["dispatcher"] or build_dispatcher(settings)
    notifier = app.bot_data[NOTIFIER_KEY] = TelegramNotifier(app.bot, store, clock)
    store.on_write_health = notifier.database_health_changed
    metrics = app.bot_data["metrics"] = Metrics()
    work_items = WorkItemService(store.work_items, clock)
    engine = Engine(
        store.engine,
        clock,
        dispatcher,
        config=app.bot_data["engine_config"],
        notifier=notifier,
        reminders=notifier,
        tasks=work_items,
        observer=metrics,
    )
    service = ScheduleService(
        store, clock, default_timezone=settings.default_timezone, on_change=engine.wake
    )
    await apply_configured_schedules(settings, service, clock)
    svc = Services(settings, clock, store, service, engine, dispatcher)
    proposal_service = ProposalService(service, store, clock, on_proposal=notifier.proposal_made)
    svc.proposals = proposal_service
    svc.work_items = work_items
    notifier.services = svc
    svc.notifier = notifier
    app.bot_data[SERVICES_KEY] = svc
    # Listen first: a port in use stops start-up before the engine claims anything.
    await _start_http(app, settings, metrics)
    svc.engine_task = asyncio.create_task(engine.run_forever(), name="engine")
    svc.proposal_task = asyncio.create_task(
        expire_proposals_forever(proposal_service, notifier, clock), name="proposal-expiry"
    )
    svc.followup_task = asyncio.create_task(
        ping_followups_forever(work_items, notifier, clock), name="follow-ups"
    )
    # Its first sweep sends what a previous process left in the outbox.
    svc.outbox_task = asyncio.create_task(
        deliver_pending_forever(notifier.outbox, clock), name="outbox"
    )
    if settings.retention_days:
        svc.retention_task = asyncio.create_task(
            prune_history_forever(
                store, clock, timedelta(days=settings.retention_days), metrics.history_pruned
            ),
            name="retention",
        )
    svc.watchdog = LoopWatchdog()
    svc.watchdog.start()


async def connect_telegram(
    app: Application,  # type: ignore[type-arg]
    stop: asyncio.Event | None = None,
) -> bool:
    """Reach Telegram (getMe) and publish the command menu, retrying with a backoff for
    as long as Telegram cannot be reached: the services are running meanwhile. False if
    `stop` was set first. A token Telegram rejects raises `TelegramStartError`: no retry
    can fix it."""
    stopping = stop or asyncio.Event()
    attempt = 0
    while True:
        attempt += 1
        try:
            await app.initialize()
            await app.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])
            break
        except InvalidToken:
            raise TelegramStartError(
                "Telegram rejected TELEGRAM_BOT_TOKEN (getMe answered Unauthorized): copy the "
                "token again from @BotFather."
            ) from None
        except TelegramError as exc:
            delay = network_backoff(attempt)
            log.warning(
                "Telegram is not reachable yet (%s); the engine runs meanwhile and chat "
                "messages wait in the outbox; trying again in %g s",
                _first_line(exc),
                delay,
                extra={"attempt": attempt},
            )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stopping.wait()
        if stopping.is_set():
            return False
    svc: Services | None = app.bot_data.get(SERVICES_KEY)
    if svc is not None:
        svc.telegram_connected = True
    notifier: TelegramNotifier | None = app.bot_data.get(NOTIFIER_KEY)
    if notifier is not None:
        # What waited for Telegram goes out now, not at the end of its backoff.
        notifier.outbox.retry_now()
    log.info("connected to Telegram as @%s", app.bot.username, extra={"attempt": attempt})
    return True


class TelegramStartError(RuntimeError):
    """Telegram refuses the bot for good (a revoked or wrong token); `str()` is the line."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


async def stop_services(app: Application) -> None:  # type: ignore[type-arg]
    """After the updates stop: stop claiming, let in-flight runs finish (or put them back)."""
    http: HttpServer | None = app.bot_data.pop(HTTP_KEY, None)
    if http is not None:
        await http.stop()
    svc: Services | None = app.bot_data.get(SERVICES_KEY)
    if svc is not None:
        sweeps = (svc.proposal_task, svc.followup_task, svc.outbox_task, svc.retention_task)
        for sweep in sweeps:
            if sweep is not None:
                sweep.cancel()
                await asyncio.wait({sweep})
        svc.proposal_task = svc.followup_task = svc.outbox_task = svc.retention_task = None
    if svc is None or svc.engine_task is None:
        return
    svc.engine.request_stop()
    await svc.engine_task
    svc.engine_task = None
    if svc.pending:
        _, waiting = await asyncio.wait(svc.pending, timeout=5)
        if waiting:
            # Only the "database cannot be written" alert is sent outside the outbox.
            log.warning(
                "alerts still waiting for Telegram are dropped at shutdown",
                extra={"messages": len(waiting)},
            )
    notifier: TelegramNotifier | None = app.bot_data.pop(NOTIFIER_KEY, None)
    if notifier is not None:
        # The outbox is in the database: what Telegram did not take yet goes out at the
        # next start.
        chats = await notifier.outbox.close(grace=5)
        if chats:
            log.warning(
                "chat messages wait in the outbox for Telegram; they are sent after the next start",
                extra={"chats": chats},
            )


async def close_services(app: Application) -> None:  # type: ignore[type-arg]
    """Last: close the agent client and the database."""
    svc: Services | None = app.bot_data.pop(SERVICES_KEY, None)
    if svc is None:
        return
    if svc.watchdog is not None:
        svc.watchdog.stop()
    if app.bot_data["dispatcher"] is None:
        await svc.dispatcher.aclose()
    await svc.store.close()


async def _start_http(
    app: Application,  # type: ignore[type-arg]
    settings: Settings,
    metrics: Metrics,
) -> None:
    """The one HTTP port (/healthz, /metrics, /api/v1, the webhook); HTTP_PORT=0: none."""
    if settings.http_port == 0:
        return
    http = HttpServer(app, settings, metrics)
    await http.start()
    app.bot_data[HTTP_KEY] = http


async def _on_error(update: object, context: object) -> None:
    chat = update.effective_chat if isinstance(update, Update) else None
    error = getattr(context, "error", None)
    message = update.effective_message if isinstance(update, Update) else None
    if error is not None and is_unavailable(error) and message is not None:
        # A locked, full or read-only database: the change was rolled back, so say so
        # instead of leaving the operator without an answer.
        log.warning(
            "an update could not be handled: the database cannot be written (%s)",
            error,
            extra={"chat_id": chat.id if chat is not None else None},
        )
        with contextlib.suppress(TelegramError):
            await message.reply_text(DATABASE_DOWN)
        return
    log.error(
        "error while handling an update",
        exc_info=error,
        extra={"chat_id": chat.id if chat is not None else None},
    )
