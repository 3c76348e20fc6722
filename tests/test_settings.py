"""Configuration: good settings load; a missing or wrong one stops start-up with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.redact import secrets_of
from bot.settings import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
_SETTING_NAMES = {field.upper() for field in Settings.model_fields}


def test_settings_load_from_the_environment() -> None:
    settings = load_settings(
        {
            "AGENT_URL": "http://127.0.0.1:8080/hook",
            "ADMIN_IDS": "12, 34",
            "AGENT_SECRET": "s3cret",
            "DEFAULT_TIMEZONE": "Europe/Berlin",
        }
    )
    assert settings.admin_ids == [12, 34]
    assert settings.agent_mode == "telegram"
    assert settings.retention_days == 90
    assert "s3cret" not in repr(settings)  # secrets never reach logs


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({}, "Configuration error: AGENT_URL is required but not set."),
        (
            {"AGENT_URL": "ftp://x"},
            "Configuration error: AGENT_URL: must start with http:// or https://.",
        ),
        (
            {"AGENT_URL": "http://x", "DEFAULT_TIMEZONE": "Europe/Berlinn"},
            "Configuration error: DEFAULT_TIMEZONE: Unknown time zone 'Europe/Berlinn'. "
            "Did you mean Europe/Berlin?",
        ),
        (
            {"AGENT_URL": "http://x", "AGENT_MODE": "grpc"},
            "Configuration error: AGENT_MODE: Input should be 'telegram' or 'openai'.",
        ),
        (
            {"AGENT_URL": "http://x", "WEBAPP_URL": "http://tickler.example.org/app/"},
            "Configuration error: WEBAPP_URL: must be an https:// address like "
            "https://tickler.example.org/app/ (Telegram opens Mini Apps over HTTPS only).",
        ),
        (
            {"AGENT_URL": "http://x", "RETENTION_DAYS": "-1"},
            "Configuration error: RETENTION_DAYS: Input should be greater than or equal to 0.",
        ),
    ],
)
def test_bad_configuration_is_one_line(env: dict[str, str], line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert str(caught.value) == line


def test_the_process_refuses_to_start_with_one_line_and_status_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == "Configuration error: AGENT_URL is required but not set.\n"


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".env").write_text(text, encoding="utf-8")
    return folder / ".env"


def test_the_settings_file_is_dot_env_or_the_one_tickler_env_file_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, "AGENT_URL=http://127.0.0.1:1/from-dot-env\n")
    other = _write(tmp_path / "elsewhere", "AGENT_URL=http://127.0.0.1:1/named\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TICKLER_ENV_FILE")
    assert load_settings().agent_url.endswith("/from-dot-env")
    monkeypatch.setenv("TICKLER_ENV_FILE", str(other))
    assert load_settings().agent_url.endswith("/named")
    monkeypatch.setenv("TICKLER_ENV_FILE", "")
    with pytest.raises(ConfigError, match="AGENT_URL is required"):
        load_settings()


def test_the_suite_reads_no_developer_settings() -> None:
    # A developer's .env beside the clone (the README's quick start puts one there) or an
    # exported setting must not change what the tests see: tests/conftest.py clears both.
    assert os.environ.get("TICKLER_ENV_FILE") == ""
    assert not [name for name in os.environ if name.upper() in _SETTING_NAMES]


@pytest.mark.parametrize(
    ("token", "line"),
    [
        # What .env.example ships.
        (
            "",
            "Configuration error: TELEGRAM_BOT_TOKEN is required but not set (create a bot "
            "with @BotFather and put its token there).\n",
        ),
        (
            "paste-your-token-here",
            "Configuration error: TELEGRAM_BOT_TOKEN: is not a bot token; @BotFather gives one "
            "like 123456789:AAH... (digits, a colon, then letters, digits, _ and -).\n",
        ),
    ],
)
def test_an_empty_or_malformed_token_is_one_line_and_status_2(
    tmp_path: Path, token: str, line: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "TELEGRAM_BOT_TOKEN": token,
            "AGENT_URL": "http://127.0.0.1:9/hook",
            "ADMIN_IDS": "1001",
            "DATABASE_PATH": str(tmp_path / "tickler.db"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr, result.stdout) == (2, line, "")


def test_database_url_chooses_postgresql_and_its_password_is_a_secret() -> None:
    base = {"AGENT_URL": "http://127.0.0.1:8080/hook", "DATABASE_PATH": "/data/t.db"}
    assert load_settings(base).database == Path("/data/t.db")
    # `DATABASE_URL=` in a .env means unset: the SQLite file stays.
    assert load_settings({**base, "DATABASE_URL": " "}).database == Path("/data/t.db")
    url = "postgresql://tickler:p%40ss-w0rd-1@db:5432/tickler"
    settings = load_settings({**base, "DATABASE_URL": url})
    assert settings.database == url
    assert "p%40ss" not in repr(settings)
    # Masked in logs whole, and its password alone in both spellings.
    assert {url, "p%40ss-w0rd-1", "p@ss-w0rd-1"} <= set(secrets_of(settings))
    assert load_settings({**base, "DATABASE_URL": "postgres://db/t"}).database == (
        "postgres://db/t"
    )


def test_a_database_url_of_another_kind_is_one_line_that_does_not_echo_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"AGENT_URL": "http://x", "DATABASE_URL": "sqlite:///secret-pw.db"})
    assert str(caught.value) == (
        "Configuration error: DATABASE_URL: must be a PostgreSQL URL such as "
        "postgresql://tickler:PASSWORD@db-host:5432/tickler (leave it unset for the SQLite "
        "file of DATABASE_PATH)."
    )
