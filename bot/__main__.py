"""`python -m bot`: run Tickler (the Telegram console and the scheduler) in the
foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from bot.boot import install_core_sources
from bot.logs import configure_logging_from_settings
from bot.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from bot.context import TicklerApp

log = logging.getLogger("tickler")


#: SIGTERM or SIGINT before the event loop took them over (during imports and settings):
#: the loop's handlers find it set and stop at once, cleanly, instead of the default
#: action killing the process halfway through opening the database.
_STOP_BEFORE_LOOP: list[int] = []


def _remember_stop(signum: int, frame: object) -> None:
    _STOP_BEFORE_LOOP.append(signum)


def _install_stop_handlers(stop: Callable[[], None]) -> None:
    """The loop's SIGTERM/SIGINT handlers call `stop`; a signal already received does now."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    if _STOP_BEFORE_LOOP:
        stop()


def serve(*, headless: bool = False) -> int:
    install_core_sources()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _remember_stop)
    try:
        settings = load_settings()
        if not headless and settings.telegram_bot_token is None:
            raise ConfigError(
                "Configuration error: TELEGRAM_BOT_TOKEN is required but not set (create a bot "
                "with @BotFather and put its token there)."
            )
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging_from_settings(settings)
    from bot import event_loop
    from bot.app import TelegramStartError
    from bot.http_api import HttpStartError
    from bot.schedules_file import UnusableFile
    from storage.database import DatabaseUnavailable, SchemaTooNew

    log.debug("event loop: %s", event_loop.install())

    try:
        if headless:
            from bot.runtime import run_engine

            asyncio.run(run_engine(settings, _install_stop_handlers))
        else:
            asyncio.run(_serve_bot(settings))
    except (
        DatabaseUnavailable,
        SchemaTooNew,
        HttpStartError,
        TelegramStartError,
        UnusableFile,
    ) as exc:
        # A read-only, full or locked file, a port in use, a revoked token, a
        # schedules.yaml that cannot be applied: one line naming it and the fix.
        print(exc, file=sys.stderr)
        return 2
    except Exception as exc:
        # Anything else must end the process too: a half-started one serves nothing
        # and, its loop's signal handlers still installed, ignores SIGTERM. One line
        # (the traceback folded into it) for the log, status 1 for the supervisor.
        log.critical("Tickler stopped: %s", _one_line(exc), exc_info=exc)
        return 1
    return 0


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


async def _serve_bot(settings: Settings) -> None:
    """The bot: services first (the store, SCHEDULES_FILE; then the application around
    them; the HTTP server, the engine, the outbox), then Telegram, retried with a backoff
    while it cannot be reached, then updates by long polling or (WEBHOOK_URL) pushed to
    our own HTTP server. Stops in PTB's order: updates, then the engine drains
    (stop_services), then the database closes."""
    from telegram import Update

    from bot.app import (
        build_application,
        close_services,
        connect_telegram,
        open_services,
        poll_telegram,
        start_services,
        stop_services,
        stop_telegram,
    )
    from bot.runtime import log_started, warn_if_nobody_served

    stop = asyncio.Event()
    _install_stop_handlers(stop.set)
    # Closes what it opened itself if it fails (a SCHEDULES_FILE that cannot be applied).
    app = build_application(await open_services(settings))
    try:
        await start_services(app)
        await log_started(
            settings,
            app.services.store,
            "webhook" if settings.webhook_url else "polling",
        )
        warn_if_nobody_served(settings)
        if stop.is_set() or not await connect_telegram(app, stop):
            return
        await app.start()
        if settings.webhook_url:
            await _set_webhook(app, settings)
        else:
            # Only while this replica holds the Telegram lease (always, on SQLite).
            await poll_telegram(app, allowed_updates=Update.ALL_TYPES)
        await stop.wait()
    finally:
        await stop_telegram(app)
        if app.running:
            await app.stop()
        await stop_services(app)
        await app.shutdown()
        # Not initialized when Telegram never answered: its HTTP client is open anyway.
        await app.bot.shutdown()
        await close_services(app)


async def _set_webhook(app: TicklerApp, settings: Settings) -> None:
    """Webhook mode: Telegram pushes updates to our own HTTP server (`bot.http_api`, on
    HTTP_HOST:HTTP_PORT, route = WEBHOOK_URL's path), which puts them on the update
    queue; no updater, no second server."""
    from telegram import Update

    assert settings.webhook_url is not None and settings.webhook_secret is not None
    await app.bot.set_webhook(
        settings.webhook_url,
        secret_token=settings.webhook_secret.get_secret_value(),
        allowed_updates=Update.ALL_TYPES,
    )
    log.info("webhook set; serving updates on %s:%d", settings.http_host, settings.http_port)


def main() -> int:
    return serve()


def end_process(code: int) -> NoReturn:
    """End the process with `code` once serving is over, skipping the interpreter's
    finalization. The dispatcher's HTTP runs on pyreqwest's runtime thread, and a Rust
    runtime thread that touches Python while the interpreter tears itself down aborts
    the process ("Fatal Python error: PyGILState_Release ... finalizing": seen once
    here at the exit of a script, a known hazard of Tokio under PyO3, e.g.
    PyO3/pyo3-async-runtimes#40). By now everything that matters is closed (the
    database, the HTTP server, the dispatcher's clients); logs and the standard
    streams are flushed first, so a stop still exits 0 with every line written."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    end_process(main())
