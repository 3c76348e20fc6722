"""Log lines: one line per event, plain by default, JSON with LOG_FORMAT=json, no secrets.

2026-11-25T12:00:00.000Z INFO tickler.engine run finished run=01J.. schedule=01J.. status=succeeded
{"ts": "2026-11-25T12:00:00.000Z", "level": "INFO", "logger": "tickler.engine",
 "msg": "run finished", "run_id": "01J..", "schedule_id": "01J..", "status": "succeeded"}

Fields come from `extra={...}` at the call site and from `scheduler.log_context` (the
ids of the run being dispatched), so every line about a run carries its run and
schedule ids. An exception's traceback is folded into the same line (`exc="..."` with
escaped newlines) or the JSON object's `exc` field, so one event is always one line.

The configured secrets (bot token, API_TOKEN, AGENT_SECRET, AGENT_TOKEN,
WEBHOOK_SECRET) are masked in everything written, belt and braces: our own lines never
contain them, but a library may log a URL with the bot token in it (`/bot<token>/...`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TextIO

from bot.redact import Redactor, install, secrets_of
from scheduler.log_context import current_log_context

if TYPE_CHECKING:
    from bot.settings import Settings

__all__ = [
    "JsonFormatter",
    "LogFormat",
    "PlainFormatter",
    "build_handler",
    "configure_logging",
    "configure_logging_from_settings",
]

LogFormat = Literal["plain", "json"]

#: How plain lines name the ids (JSON uses the field names themselves).
_PLAIN_NAMES = {"run_id": "run", "schedule_id": "schedule", "chat_id": "chat"}
#: Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_OURS = "_tickler_handler"


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The line's key-value fields: the run context, then what the call site added."""
    fields: dict[str, Any] = dict(getattr(record, "_tickler_context", {}))
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_") and value is not None:
            fields[key] = value
    return fields


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    parts = []
    if record.exc_info:
        parts.append(formatter.formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return "\n".join(parts) if parts else None


class _ContextFilter(logging.Filter):
    """Stamps each record with the run context of the code that logged it. A handler
    filter runs synchronously in the logging call, so it sees the caller's context."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current_log_context()
        if context:
            record._tickler_context = dict(context)
        return True


class PlainFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), record.levelname, record.name, _one_line(record.getMessage())]
        for key, value in _fields(record).items():
            parts.append(f"{_PLAIN_NAMES.get(key, key)}={_plain_value(value)}")
        exc = _exception_text(self, record)
        if exc is not None:
            parts.append(f"exc={json.dumps(exc, ensure_ascii=False)}")
        return self._redact(" ".join(parts))


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            line.setdefault(key, value)
        exc = _exception_text(self, record)
        if exc is not None:
            line["exc"] = exc
        # Masked value by value: JSON escaping could otherwise split a secret's spelling.
        clean = {k: self._clean(v) for k, v in line.items()}
        return json.dumps(clean, ensure_ascii=False)

    def _clean(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        return self._redact(str(value))


def _one_line(text: str) -> str:
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")


def _plain_value(value: object) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def build_handler(
    fmt: LogFormat = "plain", secrets: Iterable[str | None] = (), stream: TextIO | None = None
) -> logging.Handler:
    """A handler writing one line per record in `fmt`, run ids added, `secrets` masked."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    redact = Redactor(secrets)
    handler.setFormatter(JsonFormatter(redact) if fmt == "json" else PlainFormatter(redact))
    handler.addFilter(_ContextFilter())
    return handler


def configure_logging(
    level: str = "INFO",
    fmt: LogFormat = "plain",
    secrets: Iterable[str | None] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every log record of the process through one handler of ours (replacing the
    one a previous call installed; other handlers are left alone)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    secrets = list(secrets)
    install(secrets)
    handler = build_handler(fmt, secrets, stream)
    setattr(handler, _OURS, True)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request at INFO, Telegram's long polls included: too chatty,
    # except when debugging.
    logging.getLogger("httpx").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    # aiosqlite logs every statement with its parameters at DEBUG, from its own thread
    # (so without the run's ids): noise even when debugging Tickler itself.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    # /new's conversation timeout is a PTB job: APScheduler and PTB's JobQueue log each
    # add and removal at INFO, two lines for every step of every /new.
    for chatty in ("apscheduler", "telegram.ext.JobQueue"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    # aiohttp's access log writes a line (with a dozen fields) per request, so the
    # container's health check alone would add one every 30 s; errors still show.
    logging.getLogger("aiohttp.access").setLevel(
        logging.DEBUG if level == "DEBUG" else logging.WARNING
    )
    return handler


def configure_logging_from_settings(
    settings: Settings, stream: TextIO | None = None
) -> logging.Handler:
    """LOG_LEVEL, LOG_FORMAT, and every secret setting masked."""
    return configure_logging(settings.log_level, settings.log_format, secrets_of(settings), stream)
