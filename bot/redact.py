"""Secrets never reach the logs, whatever the logging configuration.

The bot token is part of every Bot API URL, and httpx logs each request's URL at INFO;
a token or secret can also turn up in an exception's text. Rather than trust every
logger's level, every log record is scrubbed when it is made, before any handler (a
file, the console, pytest's caplog) sees it: the configured secrets' values (and their
URL-encoded spellings), and anything shaped like a Telegram bot token, become `***`.
The log formatters (bot/logs.py) mask again with the same `Redactor`, for the fields a
call site adds with `extra=`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:
    from bot.settings import Settings

__all__ = ["MASK", "Redactor", "install", "redact", "remember", "secrets_of"]

MASK = "***"
#: A Telegram bot token: the bot's numeric id, a colon, 35 URL-safe characters.
_BOT_TOKEN = re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}")
#: Shorter values are not masked: masking "ab" everywhere would garble every line, and
#: a secret that short is no secret anyway.
MIN_SECRET_LENGTH = 4


class Redactor:
    """Masks the given secrets, their URL-encoded forms and bot-token-shaped text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str | None]) -> None:
        values = set(self._secrets) | {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        values |= {quote(s, safe="") for s in values}
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _BOT_TOKEN.sub(MASK, text)


_process = Redactor()
_installed = False


def redact(text: str) -> str:
    """`text` with every installed secret and every bot-token-shaped string masked."""
    return _process(text)


def secrets_of(settings: Settings) -> list[str]:
    """Every secret setting's value (each SecretStr field), for masking; and the password
    in DATABASE_URL on its own, which a driver's error may quote without the URL."""
    from pydantic import SecretStr

    values = (getattr(settings, name) for name in type(settings).model_fields)
    found = [v.get_secret_value() for v in values if isinstance(v, SecretStr)]
    if settings.database_url is not None:
        password = _password(settings.database_url.get_secret_value())
        if password:
            found.extend({password, unquote(password)})
    return found


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:  # a port that is no number: the whole URL is masked anyway
        return None


def remember(secrets: Iterable[str | None]) -> None:
    """Mask these secrets too, from now on: secrets read at run time (a chat's own
    agent's, a notification sink's)."""
    _process.add(secrets)


def install(secrets: Iterable[str | None]) -> None:
    """Mask `secrets` (and bot tokens) in every log record from now on; idempotent."""
    global _installed
    _process.add(secrets)
    if _installed:
        return
    _installed = True
    make = logging.getLogRecordFactory()

    def scrubbed(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:
            return record  # a bad format string: logging reports it as usual at emit time
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(scrubbed)
