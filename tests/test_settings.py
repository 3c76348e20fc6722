"""Configuration: good settings load; a missing or wrong one stops start-up with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[1]


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
