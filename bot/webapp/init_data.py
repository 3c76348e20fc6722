"""Telegram Mini App `initData`: checked on every request, the only login there is.

Telegram signs the launch parameters it hands the page: HMAC-SHA256 over the sorted
`key=value` lines (all but `hash`), keyed by HMAC-SHA256("WebAppData", bot token)
(https://core.telegram.org/bots/webapps#validating-data-received-via-the-mini-app).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

__all__ = ["InitDataError", "Launch", "sign", "verify"]

#: Longer than any real initData (a few hundred bytes); refused before any parsing.
MAX_LENGTH = 4096


class InitDataError(ValueError):
    """initData that is missing, malformed, forged or too old; the message says which."""


@dataclass(frozen=True, slots=True)
class Launch:
    """Who opened the Mini App, and from where, as Telegram signed it."""

    user_id: int
    first_name: str
    #: The chat it was opened from, when Telegram says (an attachment-menu launch);
    #: None when opened from the bot's own chat (menu button, a message's button).
    chat_id: int | None
    auth_date: datetime


def _secret(bot_token: str) -> bytes:
    return hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()


def _check_string(fields: Mapping[str, str]) -> bytes:
    return "\n".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "hash").encode()


def sign(fields: Mapping[str, str], bot_token: str) -> str:
    """initData for `fields` as Telegram would sign it (for tests and the demo)."""
    digest = hmac.new(_secret(bot_token), _check_string(fields), hashlib.sha256).hexdigest()
    return urlencode({**fields, "hash": digest})


def verify(init_data: str, bot_token: str, now: datetime, max_age: timedelta) -> Launch:
    """The launch `init_data` describes, if Telegram signed it with `bot_token` no longer
    than `max_age` before `now`; InitDataError otherwise."""
    if not init_data:
        raise InitDataError("Open Tickler from its button in Telegram: no sign-in data came.")
    if len(init_data) > MAX_LENGTH:
        raise InitDataError("The sign-in data is too long.")
    try:
        pairs = parse_qsl(init_data, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise InitDataError("The sign-in data cannot be read.") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise InitDataError("The sign-in data names a field twice.")
    given = fields.get("hash", "")
    expected = hmac.new(_secret(bot_token), _check_string(fields), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise InitDataError("The sign-in data is not signed by this bot.")
    try:
        auth_date = datetime.fromtimestamp(int(fields["auth_date"]), UTC)
        user = json.loads(fields["user"])
        user_id = int(user["id"])
        first_name = str(user.get("first_name", ""))
        chat = json.loads(fields["chat"]) if "chat" in fields else None
        chat_id = int(chat["id"]) if chat is not None else None
    except (KeyError, ValueError, TypeError, OverflowError):
        raise InitDataError("The sign-in data lacks the user or its date.") from None
    if now - auth_date > max_age:
        raise InitDataError("The sign-in has expired: close Tickler and open it again.")
    if auth_date - now > timedelta(minutes=5):
        raise InitDataError("The sign-in is dated in the future: check the server's clock.")
    return Launch(user_id, first_name, chat_id, auth_date)
