"""The Telegram application. `bot.__main__` drives this order: `open_services` opens the
store and builds every service (`Services`, whole); `build_application` builds the PTB
application around them with every handler registered from one ordered list;
`start_services` starts the HTTP server, the engine and the sweeps, and asks for the
Telegram lease (bot/telegram_side.py: with PostgreSQL replicas, one polls and sends the
outbox), all before Telegram is reached (`connect_telegram`, retried while Telegram is
down); `poll_telegram` takes updates while this replica leads; `stop_telegram`,
`stop_services` stop them and `close_services` lets the lease go and closes the store.
Nothing is built at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import timedelta

# PTB 22 warns when code reads RetryAfter.retry_after as seconds; opting into its
# timedelta form keeps 429 handling (ours and the rate limiter's) warning-free.
os.environ.setdefault("PTB_TIMEDELTA", "1")

from typing import Any

from telegram import BotCommand, MenuButtonWebApp, Update, WebAppInfo
from telegram.error import BadRequest, InvalidToken, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    BaseHandler,
    ContextTypes,
    ExtBot,
    TypeHandler,
)
from telegram.request import HTTPXRequest

from adapters.process import tune_gc
from bot import access, redact
from bot.commands import COMMANDS
from bot.context import Bot, Context, Services, TicklerApp
from bot.followups import ping_followups_forever
from bot.handlers import (
    agents,
    backfill,
    budgets,
    bundles,
    chat,
    edit,
    export,
    forms,
    new,
    policies,
    proposals,
    runs,
    schedules,
    sinks,
    start,
    stats,
    template,
    today,
)
from bot.http_api import HttpServer
from bot.loop_watchdog import LoopWatchdog
from bot.metrics import Metrics
from bot.notifier import TelegramNotifier
from bot.outbox import network_backoff
from bot.proposal_expiry import expire_proposals_forever
from bot.retention import prune_history_forever
from bot.runtime import (
    apply_configured_schedules,
    build_clock,
    build_dispatcher,
    engine_config,
    open_database,
    wire_engine,
)
from bot.settings import Settings
from bot.sinks import SinkCourier, chat_link, deliver_to_sinks_forever, smtp_config
from bot.telegram_side import TelegramSide
from scheduler.clock import Clock
from scheduler.engine import EngineConfig
from scheduler.proposals import ProposalService
from storage.leadership import lease_for
from storage.locations import is_unavailable, shown

__all__ = [
    "TelegramStartError",
    "build_application",
    "build_bot",
    "close_services",
    "connect_telegram",
    "handlers",
    "open_services",
    "poll_telegram",
    "start_services",
    "stop_services",
    "stop_telegram",
]

log = logging.getLogger("tickler.bot")

#: The answer to a command that failed because the database cannot be written now.
DATABASE_DOWN = (
    "Tickler cannot write its database right now (the admins are told why), so nothing "
    "was changed; try again in a few minutes."
)


def build_bot(settings: Settings) -> Bot:
    """The Telegram client, not yet connected: the notifier (in `Services`) and the
    Application share it. The connection pools are PTB's builder defaults."""
    if settings.telegram_bot_token is None:
        raise ValueError("TELEGRAM_BOT_TOKEN is required to run the bot")
    # Before anything logs: the token is in every Bot API URL httpx logs.
    redact.install(redact.secrets_of(settings))
    root = (settings.telegram_api_base_url or "https://api.telegram.org").rstrip("/")
    return ExtBot(
        settings.telegram_bot_token.get_secret_value(),
        base_url=f"{root}/bot",
        base_file_url=f"{root}/file/bot",
        request=HTTPXRequest(connection_pool_size=256),
        get_updates_request=HTTPXRequest(connection_pool_size=1),
        rate_limiter=AIORateLimiter(max_retries=5),
    )


async def open_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    engine: EngineConfig | None = None,
) -> Services:
    """Open the store and build every service, then apply SCHEDULES_FILE: all before the
    Application exists, and nothing here reaches Telegram. Tests inject a fake clock and
    an engine config. `close_services` closes what this opened."""
    bot = build_bot(settings)
    clock = clock or build_clock(settings)
    async with contextlib.AsyncExitStack() as opened:
        store = await open_database(settings)
        opened.push_async_callback(store.close)
        dispatcher = build_dispatcher(settings, store)
        opened.push_async_callback(dispatcher.aclose)
        notifier = TelegramNotifier(bot, store, clock, settings)
        store.on_write_health = notifier.database_health_changed
        metrics = Metrics()
        side = wire_engine(
            settings,
            store,
            clock,
            dispatcher,
            config=engine or engine_config(settings),
            notifier=notifier,
            reminders=notifier,
            observer=metrics,
            on_notice=notifier.outbox.kick,
            on_approval_asked=notifier.runs_asked,
        )
        service, chat_agents = side.service, side.agents
        proposals = ProposalService(
            service,
            store,
            clock,
            on_proposal=notifier.proposal_made,
            admins=settings.admin_ids,
        )
        await apply_configured_schedules(settings, service, clock, chat_agents)
        # Opened whole: from here `close_services` closes the store and the dispatcher.
        opened.pop_all()
    return Services(
        settings=settings,
        clock=clock,
        store=store,
        service=service,
        proposals=proposals,
        work_items=side.work_items,
        bundles=side.bundles,
        engine=side.engine,
        dispatcher=dispatcher,
        agents=chat_agents,
        notifier=notifier,
        metrics=metrics,
    )


def handlers() -> list[BaseHandler[Any, Context, Any]]:
    """Every handler of group 0, in the order PTB tries them (the first that matches an
    update handles it). The order matters where two could match:
    - the guided forms (/new, /template: one conversation, so one open form per chat)
      come before chat's catch-all that sends any plain text to the agent, so while a
      form is open its typed answers reach the form; the forms take no command but
      /new, /template and /cancel, so any other command in the middle of a form falls
      through to its own handler below and the form stays open;
    - within runs, `r:show:` comes before the other `r:` buttons;
    - last, the answers for a command or a button nothing above knows."""
    return [
        *start.handlers(),
        *forms.handlers(new.form(), template.form()),
        *edit.handlers(),
        *schedules.handlers(),
        *policies.handlers(),
        *runs.handlers(),
        *backfill.handlers(),
        *proposals.handlers(),
        *today.handlers(),
        *bundles.handlers(),
        *stats.handlers(),
        *budgets.handlers(),
        *agents.handlers(),
        *sinks.handlers(),
        *export.handlers(),
        *chat.handlers(),
        *start.fallbacks(),
    ]


def build_application(services: Services) -> TicklerApp:
    """The bot around `services`, wired but not started."""
    app = (
        Application.builder()
        .bot(services.notifier.bot)
        .application_class(TicklerApp, {"services": services})
        .context_types(ContextTypes(context=Context))
        .build()
    )
    assert isinstance(app, TicklerApp)
    # The allow-list gate runs first (group -1) and stops everything else for strangers.
    app.add_handler(TypeHandler(Update, access.gate), group=-1)
    app.add_handlers(handlers())
    app.add_error_handler(_on_error)
    return app


def _bot_username(app: TicklerApp) -> str | None:
    """The bot's @name once connected to Telegram (None before: PTB raises until then)."""
    try:
        return app.bot.username
    except RuntimeError:
        return None


async def start_services(app: TicklerApp) -> None:
    """Start the HTTP server, the engine, the sweeps and the outbox (if this replica
    holds the Telegram lease). Nothing here needs Telegram: the engine fires while it is
    unreachable, and the outbox keeps the chats' messages until `connect_telegram` got
    through."""
    svc, started = app.services, app.started
    settings, clock, notifier = svc.settings, svc.clock, svc.notifier
    # Listen first: a port in use stops start-up before the engine claims anything.
    if settings.http_port != 0:
        http = HttpServer(app, settings, svc.metrics)
        await http.start()
        started.http = http
    tune_gc()
    # Before the engine: a replica that does not lead must not send what its engine queues.
    side = TelegramSide(
        lease_for(settings.database, "telegram"),
        notifier.outbox,
        clock,
        app.updater,
        check_every=settings.leader_retry_seconds,
        database=shown(settings.database),
    )
    started.telegram = side
    await side.start()
    started.engine = asyncio.create_task(svc.engine.run_forever(), name="engine")
    sweeps = [
        asyncio.create_task(
            expire_proposals_forever(svc.proposals, notifier, clock), name="proposal-expiry"
        ),
        asyncio.create_task(
            ping_followups_forever(svc.work_items, notifier, clock), name="follow-ups"
        ),
    ]
    courier = SinkCourier(
        svc.store,
        clock,
        tell_chat=lambda chat_id, text: notifier.notify(chat_id, text, kind="notice"),
        smtp=smtp_config(settings),
        may_send=lambda: notifier.outbox.sending,
        link=lambda d: chat_link(d.chat_id, _bot_username(app)),
    )
    notifier.outbox.written = courier.wake.set
    sweeps.append(asyncio.create_task(deliver_to_sinks_forever(courier), name="sinks"))
    if settings.retention_days:
        retention = prune_history_forever(
            svc.store, clock, timedelta(days=settings.retention_days), svc.metrics.history_pruned
        )
        sweeps.append(asyncio.create_task(retention, name="retention"))
    started.sweeps = {task.get_name(): task for task in sweeps}
    started.watchdog = LoopWatchdog()
    started.watchdog.start()


#: The chat menu button's label when WEBAPP_URL is set.
MINI_APP_BUTTON = "Tickler"


async def _publish_mini_app(app: TicklerApp) -> None:
    """With WEBAPP_URL, the menu button of every private chat opens the Mini App.

    The default button, not one per allow-listed chat: Telegram refuses a chat's own
    button until that user has opened the bot ("chat not found"), so an operator added
    later would go without it until a restart after their /start; and the app checks
    the allow-list on every request anyway, so a stranger's button opens only "This bot
    is private". (The command menu is everyone's too.) Without WEBAPP_URL the button is
    left alone: it may be one set with @BotFather.
    """
    url = app.services.settings.webapp_url
    if not url:
        return
    try:
        await app.bot.set_chat_menu_button(
            menu_button=MenuButtonWebApp(MINI_APP_BUTTON, WebAppInfo(url))
        )
    except BadRequest as exc:
        # A refusal is no reason to keep the bot from its chats; a retry cannot fix it.
        log.warning(
            "Telegram refused WEBAPP_URL for the chat menu button (%s); the chat works "
            "without it: check WEBAPP_URL (docs/mini-app.md)",
            _first_line(exc),
        )


async def connect_telegram(app: TicklerApp, stop: asyncio.Event | None = None) -> bool:
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
            await _publish_mini_app(app)
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
    app.started.telegram_connected = True
    # What waited for Telegram goes out now, not at the end of its backoff.
    app.services.notifier.outbox.retry_now()
    log.info("connected to Telegram as @%s", app.bot.username, extra={"attempt": attempt})
    return True


async def poll_telegram(app: TicklerApp, **options: Any) -> None:
    """Long polling (the Updater's `options`) whenever this replica holds the Telegram
    lease: now if it does, else when it takes over. Call after `app.start()`."""
    side = app.started.telegram
    assert side is not None, "start_services first"
    await side.poll(**options)


async def stop_telegram(app: TicklerApp) -> None:
    """First at a stop: no more polling (nor taking the lease over), no delivery sweep;
    the couriers finish in `stop_services`. Idempotent."""
    side = app.started.telegram
    if side is not None:
        await side.stop()
    if app.updater is not None and app.updater.running:
        await app.updater.stop()


class TelegramStartError(RuntimeError):
    """Telegram refuses the bot for good (a revoked or wrong token); `str()` is the line."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


async def stop_services(app: TicklerApp) -> None:
    """After the updates stop: stop claiming, let in-flight runs finish (or put them back)."""
    svc, started = app.services, app.started
    await stop_telegram(app)
    http, started.http = started.http, None
    if http is not None:
        await http.stop()
    sweeps, started.sweeps = started.sweeps, {}
    for sweep in sweeps.values():
        sweep.cancel()
        await asyncio.wait({sweep})
    engine, started.engine = started.engine, None
    if engine is None:
        return
    svc.engine.request_stop()
    await engine
    waiting = await svc.notifier.drain(timeout=5)
    if waiting:
        # Only the "database cannot be written" alert is sent outside the outbox.
        log.warning(
            "alerts still waiting for Telegram are dropped at shutdown",
            extra={"messages": waiting},
        )
    # The outbox is in the database: what Telegram did not take yet goes out at the next
    # start.
    chats = await svc.notifier.outbox.close(grace=5)
    if chats and svc.notifier.outbox.sending:  # a replica that does not send has no say
        log.warning(
            "chat messages wait in the outbox for Telegram; they are sent after the next start",
            extra={"chats": chats},
        )


async def close_services(app: TicklerApp) -> None:
    """Last: stop the loop watchdog, let the Telegram lease go (the outbox is closed: the
    next replica may send), close the agent client and the database."""
    watchdog, app.started.watchdog = app.started.watchdog, None
    if watchdog is not None:
        watchdog.stop()
    side, app.started.telegram = app.started.telegram, None
    if side is not None:
        await side.release()
    await app.services.dispatcher.aclose()
    await app.services.store.close()


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
