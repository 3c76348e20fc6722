"""`python -m bot`: run Tickler (the Telegram console and the scheduler) in the
foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from urllib.parse import urlsplit

from bot.settings import ConfigError, Settings, load_settings


def serve(*, headless: bool = False) -> int:
    try:
        settings = load_settings()
        if not headless and settings.telegram_bot_token is None:
            raise ConfigError("Configuration error: TELEGRAM_BOT_TOKEN is required but not set.")
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # httpx logs every request at INFO, Telegram's long polls included; too chatty.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if headless:
        from bot.runtime import run_engine

        asyncio.run(run_engine(settings))
    else:
        _run_bot(settings)
    return 0


def _run_bot(settings: Settings) -> None:
    from telegram import Update

    from bot.app import build_application

    app = build_application(settings)
    # PTB stops the updater, then calls post_stop (the engine drains its in-flight
    # runs within the grace period), then post_shutdown (the database closes).
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    if settings.webhook_url:
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        app.run_webhook(
            listen=settings.webhook_listen,
            port=settings.webhook_port,
            url_path=urlsplit(settings.webhook_url).path.lstrip("/"),
            webhook_url=settings.webhook_url,
            secret_token=secret,
            allowed_updates=Update.ALL_TYPES,
            stop_signals=stop_signals,
            close_loop=False,
        )
    else:
        app.run_polling(
            allowed_updates=Update.ALL_TYPES, stop_signals=stop_signals, close_loop=False
        )


def main() -> int:
    return serve()


if __name__ == "__main__":
    raise SystemExit(main())
