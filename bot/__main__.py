"""`python -m bot`: run Tickler (the Telegram console and the scheduler) in the
foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, NoReturn

from bot.logs import configure_logging_from_settings
from bot.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from telegram.ext import Application

log = logging.getLogger("tickler")


def serve(*, headless: bool = False) -> int:
    try:
        settings = load_settings()
        if not headless and settings.telegram_bot_token is None:
            raise ConfigError("Configuration error: TELEGRAM_BOT_TOKEN is required but not set.")
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging_from_settings(settings)
    from bot import event_loop
    from storage.database import DatabaseUnavailable

    log.debug("event loop: %s", event_loop.install())

    try:
        if headless:
            from bot.runtime import run_engine

            asyncio.run(run_engine(settings))
        else:
            from bot.http_api import HttpStartError

            try:
                _run_bot(settings)
            except HttpStartError as exc:
                print(exc, file=sys.stderr)
                return 2
    except DatabaseUnavailable as exc:
        # A read-only, full or locked file: one line naming it and the fix, no traceback.
        print(exc, file=sys.stderr)
        return 2
    return 0


def _run_bot(settings: Settings) -> None:
    from telegram import Update

    from bot.app import build_application

    app = build_application(settings)
    # PTB stops the updater, then calls post_stop (the engine drains its in-flight
    # runs within the grace period), then post_shutdown (the database closes).
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    if settings.webhook_url:
        asyncio.run(_serve_webhook(app, settings))
    else:
        app.run_polling(
            allowed_updates=Update.ALL_TYPES, stop_signals=stop_signals, close_loop=False
        )


async def _serve_webhook(app: Application, settings: Settings) -> None:  # type: ignore[type-arg]
    """Webhook mode: Telegram pushes updates to our own HTTP server (`bot.http_api`, on
    HTTP_HOST:HTTP_PORT, route = WEBHOOK_URL's path), which puts them on the update
    queue; no updater, no second server. Stops in run_polling's order: update
    processing, then the engine drains (stop_services), then the database closes."""
    from telegram import Update

    from bot.app import close_services, start_services, stop_services

    assert settings.webhook_url is not None and settings.webhook_secret is not None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await app.initialize()
    try:
        await start_services(app)
        await app.start()
        await app.bot.set_webhook(
            settings.webhook_url,
            secret_token=settings.webhook_secret.get_secret_value(),
            allowed_updates=Update.ALL_TYPES,
        )
        log.info("webhook set; serving updates on %s:%d", settings.http_host, settings.http_port)
        await stop.wait()
    finally:
        if app.running:
            await app.stop()
        await stop_services(app)
        await app.shutdown()
        await close_services(app)


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
