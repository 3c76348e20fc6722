"""Configuration from the environment and `.env` (pydantic-settings).

A missing or malformed setting stops start-up with one line naming it; see
`load_settings`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from adapters.clocks import parse_test_clock
from scheduler.cron import load_zone

if TYPE_CHECKING:
    from storage.locations import Location

__all__ = [
    "MAKE_API_TOKEN",
    "MIN_API_TOKEN_CHARS",
    "ConfigError",
    "SettingProblem",
    "Settings",
    "load_settings",
    "settings_file",
    "webhook_path",
]

#: Names the settings file instead of `.env`; set but empty, no file is read (the test
#: suite sets it so that a developer's `.env` cannot change what the tests see).
ENV_FILE_VARIABLE = "TICKLER_ENV_FILE"

#: Paths of the HTTP server that a webhook path may not take.
RESERVED_PATHS = frozenset({"/healthz", "/metrics", "/api"})
#: What Telegram accepts as a webhook's secret_token.
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: A bot token as @BotFather gives it: the bot's numeric id, a colon, the secret part.
_BOT_TOKEN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]+")
#: API_TOKEN guards every chat the API may address, so it must not be guessable; and it
#: travels in an HTTP header, so only visible ASCII.
MIN_API_TOKEN_CHARS = 32
_API_TOKEN = re.compile(r"[!-~]+")
#: How to make a good API_TOKEN (`tickler doctor` says it).
MAKE_API_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
#: The schemes of a PostgreSQL URL that asyncpg (and libpq) accept.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def webhook_path(url: str) -> str:
    """The route that receives Telegram's pushes: WEBHOOK_URL's path ("/" if none)."""
    return urlsplit(url).path or "/"


@dataclass(frozen=True)
class SettingProblem:
    """One setting that is missing or malformed (`tickler doctor` lists them all)."""

    name: str
    missing: bool
    #: What is wrong with the value, as one sentence; empty when `missing`.
    detail: str = ""

    def sentence(self) -> str:
        if self.missing:
            return f"{self.name} is required but not set."
        return f"{self.name}: {self.detail}"


class ConfigError(SystemExit):
    """Raised with the one line to print when configuration is unusable; `problems`
    holds every bad setting found, the line names the first."""

    def __init__(self, line: str, problems: Sequence[SettingProblem] = ()) -> None:
        super().__init__(line)
        self.problems = tuple(problems)


IdList = Annotated[list[int], NoDecode]


class Settings(BaseSettings):
    # No file here: `load_settings` names the one to read (settings_file()), so that a
    # mapping given to it is never mixed with a `.env` it did not ask for.
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    telegram_bot_token: SecretStr | None = None
    admin_ids: IdList = Field(default_factory=list)
    operator_ids: IdList = Field(default_factory=list)
    telegram_api_base_url: str | None = None
    #: Public HTTPS URL Telegram should push updates to; unset means long polling. Its
    #: path is the route on the HTTP server (HTTP_HOST:HTTP_PORT) that receives them.
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = Field(default=None, validate_default=True)

    agent_url: str
    agent_mode: Literal["telegram", "openai"] = "telegram"
    agent_secret: SecretStr | None = None
    agent_token: SecretStr | None = None
    agent_model: str = "gpt-4o-mini"

    database_path: Path = Path("data/tickler.db")
    #: A PostgreSQL database instead of the SQLite file (several replicas may share it);
    #: a secret because the URL usually carries the password.
    database_url: SecretStr | None = None
    #: Seconds between a replica's attempts to become the one that talks to Telegram
    #: (polls and sends the outbox) while another holds it; PostgreSQL only.
    leader_retry_seconds: float = Field(default=5.0, gt=0, le=3600)
    default_timezone: str = "UTC"
    #: Optional schedules-as-code file, applied idempotently at every start.
    schedules_file: Path | None = None
    api_token: SecretStr | None = None

    #: The one HTTP port: /healthz, /metrics, /api/v1 and (webhook mode) the webhook.
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535, validate_default=True)  # 0: none
    #: Chats the API may address besides the ADMIN_IDS / OPERATOR_IDS private chats.
    api_chat_ids: IdList = Field(default_factory=list)
    #: Token bucket per API token: sustained requests per second, and the burst.
    api_rate_per_second: float = Field(default=10.0, gt=0)
    api_rate_burst: int = Field(default=20, ge=1)
    #: The Mini App (docs/mini-app.md): its public HTTPS address, which the chat's menu
    #: button and /today's button open (unset: no buttons; /app/ is served either way).
    webapp_url: str | None = None
    #: How old a Mini App sign-in (Telegram's initData) may be, in seconds.
    webapp_auth_max_age: int = Field(default=3600, ge=60, le=7 * 86400)

    #: E-mail sinks (docs/notification-sinks.md): the SMTP server that sends their mail.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "tickler@localhost"
    #: STARTTLS before the login (port 587); off only for a server on the same host.
    smtp_starttls: bool = True

    #: Days of history kept: older finished runs, their attempts and settled chat
    #: messages are deleted daily (bot/retention.py); 0 keeps everything.
    retention_days: int = Field(default=90, ge=0, le=36_500)
    max_concurrency: int = Field(default=64, ge=1, le=1024)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    trip_after: int = Field(default=3, ge=1)
    #: FOR TESTS ONLY: run the whole process on an accelerated fake clock,
    #: "2026-11-23T07:00:00Z@<real epoch seconds>x<speed>" (adapters.clocks.parse_test_clock),
    #: so the reliability suite can span hours of schedules in seconds. Never set it in
    #: production: every fire, retry and deadline would come early.
    tickler_test_clock: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: One line per event: `plain` (key=value fields) or `json` (one object per line).
    log_format: Literal["plain", "json"] = "plain"

    @field_validator("admin_ids", "operator_ids", "api_chat_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("telegram_bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        # `.env.example` ships `TELEGRAM_BOT_TOKEN=`: empty means not set, so the bot
        # says "required but not set" (and `tickler engine` runs without one).
        if value is None or not value.get_secret_value().strip():
            return None
        if not _BOT_TOKEN.fullmatch(value.get_secret_value().strip()):
            # Never echo the value: it may be a real token pasted with a typo.
            raise ValueError(
                "is not a bot token; @BotFather gives one like 123456789:AAH... (digits, a "
                "colon, then letters, digits, _ and -)"
            )
        return SecretStr(value.get_secret_value().strip())

    @field_validator("agent_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("webapp_url")
    @classmethod
    def _webapp_https(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname or " " in value:
            raise ValueError(
                "must be an https:// address like https://tickler.example.org/app/ "
                "(Telegram opens Mini Apps over HTTPS only)"
            )
        return value

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("https://"):
            raise ValueError("must start with https:// (Telegram pushes only to HTTPS)")
        path = webhook_path(value)
        if path in RESERVED_PATHS or path.startswith("/api/"):
            raise ValueError(f"its path {path} is taken by the HTTP API; use e.g. /telegram")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            if info.data.get("webhook_url"):
                raise ValueError(
                    "is required when WEBHOOK_URL is set (Telegram sends it with every update)"
                )
            return None
        if not _SECRET_TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None  # `DATABASE_URL=` in .env: the SQLite file of DATABASE_PATH
        url = value.get_secret_value().strip()
        # Never echo the value: it carries the database's password.
        if not url.startswith(POSTGRES_SCHEMES):
            raise ValueError(
                "must be a PostgreSQL URL such as postgresql://tickler:PASSWORD@db-host:5432/"
                "tickler (leave it unset for the SQLite file of DATABASE_PATH)"
            )
        return SecretStr(url)

    @field_validator("api_token")
    @classmethod
    def _api_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # `API_TOKEN=` in .env: the API stays off
        token = value.get_secret_value()
        if len(token) < MIN_API_TOKEN_CHARS or not _API_TOKEN.fullmatch(token):
            raise ValueError(
                f"must be at least {MIN_API_TOKEN_CHARS} characters of visible ASCII (no spaces)"
            )
        return value

    @field_validator("http_port")
    @classmethod
    def _port_for_webhook(cls, value: int, info: ValidationInfo) -> int:
        if value == 0 and info.data.get("webhook_url"):
            raise ValueError("must not be 0 when WEBHOOK_URL is set (the webhook is served on it)")
        return value

    @field_validator("tickler_test_clock")
    @classmethod
    def _test_clock(cls, value: str | None) -> str | None:
        if value:
            parse_test_clock(value)
        return value or None

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        load_zone(value)
        return value

    @property
    def database(self) -> Location:
        """Where the data lives: DATABASE_URL's PostgreSQL database when set, else the
        SQLite file of DATABASE_PATH. Log it with `storage.locations.shown` (no password)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return self.database_path


def settings_file() -> str | None:
    """The settings file to read: `.env` in the working folder unless TICKLER_ENV_FILE
    names another (or, empty, none)."""
    return os.environ.get(ENV_FILE_VARIABLE, ".env") or None


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | None = None
) -> Settings:
    """Settings from `environ`, or else from the process environment and `env_file`
    (by default the file `settings_file()` names)."""
    try:
        if environ is None:
            return Settings(_env_file=env_file or settings_file())
        return Settings.model_validate({k.lower(): v for k, v in environ.items()})
    except ValidationError as exc:
        # One problem per setting: "ADMIN_IDS=a,b" is one mistake, not two.
        by_name: dict[str, SettingProblem] = {}
        for error in exc.errors():
            problem = _problem(error)
            by_name.setdefault(problem.name, problem)
        problems = list(by_name.values())
        raise ConfigError(f"Configuration error: {problems[0].sentence()}", problems) from None
    except ValueError as exc:
        raise ConfigError(f"Configuration error: {exc}") from None


def _problem(error: Any) -> SettingProblem:
    name = str(error["loc"][0]).upper() if error["loc"] else "configuration"
    if error["type"] == "missing":
        return SettingProblem(name, missing=True)
    detail = str(error["msg"]).removeprefix("Value error, ")
    if not detail.endswith((".", "?", "!")):
        detail += "."
    return SettingProblem(name, missing=False, detail=detail)
