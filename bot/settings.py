"""Configuration from the environment and `.env` (pydantic-settings).

A missing or malformed setting stops start-up with one line naming it; see
`load_settings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from scheduler.cron import load_zone

__all__ = ["ConfigError", "Settings", "load_settings"]


class ConfigError(SystemExit):
    """Raised with the one line to print when configuration is unusable."""


IdList = Annotated[list[int], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    telegram_bot_token: SecretStr | None = None
    admin_ids: IdList = Field(default_factory=list)
    operator_ids: IdList = Field(default_factory=list)
    telegram_api_base_url: str | None = None
    #: Public HTTPS URL Telegram should push updates to; unset means long polling.
    webhook_url: str | None = None
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = Field(default=8443, ge=1, le=65535)
    webhook_secret: SecretStr | None = None

    agent_url: str
    agent_mode: Literal["telegram", "openai"] = "telegram"
    agent_secret: SecretStr | None = None
    agent_token: SecretStr | None = None
    agent_model: str = "gpt-4o-mini"

    database_path: Path = Path("data/tickler.db")
    default_timezone: str = "UTC"
    api_token: SecretStr | None = None

    max_concurrency: int = Field(default=64, ge=1, le=1024)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    trip_after: int = Field(default=3, ge=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("admin_ids", "operator_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("agent_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("must start with https:// (Telegram pushes only to HTTPS)")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        load_zone(value)
        return value


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | None = ".env"
) -> Settings:
    """Settings from `environ` (the process environment by default) and `env_file`."""
    try:
        if environ is None:
            return Settings(_env_file=env_file)
        return Settings.model_validate({k.lower(): v for k, v in environ.items()})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "configuration"
        if first["type"] == "missing":
            raise ConfigError(f"Configuration error: {name} is required but not set.") from None
        detail = str(first["msg"]).removeprefix("Value error, ")
        if not detail.endswith((".", "?", "!")):
            detail += "."
        raise ConfigError(f"Configuration error: {name}: {detail}") from None
    except ValueError as exc:
        raise ConfigError(f"Configuration error: {exc}") from None
