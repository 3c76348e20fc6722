"""`tickler next`: the real entry point in a subprocess, and `main()` in-process for speed."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.cli import build_parser, main
from scheduler.timeutil import parse_utc

REPO = Path(__file__).resolve().parents[1]
NEW_YORK_SPRING = [
    "2026-03-08T07:00:00Z",
    "2026-03-09T06:30:00Z",
    "2026-03-10T06:30:00Z",
    "2026-03-11T06:30:00Z",
    "2026-03-12T06:30:00Z",
]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )


class TestSubprocess:
    def test_prints_next_fires(self) -> None:
        result = run_cli(
            "next", "30 2 * * *", "--tz", "America/New_York", "--after", "2026-03-07T12:00:00Z"
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == NEW_YORK_SPRING
        assert result.stderr == ""

    def test_bad_expression_exits_2_with_one_sentence(self) -> None:
        result = run_cli("next", "0 0 L * *", "--tz", "UTC")
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr == (
            "Unsupported cron syntax 'L' in day-of-month: use five fields (minute hour "
            "day-of-month month day-of-week) with numbers, names, ranges, steps and lists.\n"
        )


class TestMain:
    def test_next_with_after_and_zone(self, capsys: pytest.CaptureFixture[str]) -> None:
        code = main(
            ["next", "30 2 * * *", "--tz", "America/New_York", "--after", "2026-03-07T12:00:00Z"]
        )
        out, err = capsys.readouterr()
        assert (code, out.splitlines(), err) == (0, NEW_YORK_SPRING, "")

    def test_count_and_default_zone(self, capsys: pytest.CaptureFixture[str]) -> None:
        code = main(["next", "@daily", "--after", "2026-01-01T00:00:00+01:00", "--count", "3"])
        out, err = capsys.readouterr()
        assert code == 0
        assert out == "2026-01-01T00:00:00Z\n2026-01-02T00:00:00Z\n2026-01-03T00:00:00Z\n"
        assert err == ""

    def test_after_defaults_to_now(self, capsys: pytest.CaptureFixture[str]) -> None:
        before = datetime.now(UTC)
        assert main(["next", "* * * * *"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 5
        fires = [parse_utc(line) for line in lines]
        assert fires == sorted(fires)
        assert before < fires[0]
        assert (fires[-1] - fires[0]).total_seconds() == 4 * 60

    def test_large_count(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert (
            main(["next", "*/15 * * * *", "--after", "2026-01-01T00:00:00Z", "--count", "1000"])
            == 0
        )
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 1000
        assert lines[-1] == "2026-01-11T10:00:00Z"

    @pytest.mark.parametrize(
        ("argv", "sentence"),
        [
            (
                ["next", "0 9 31 2 *"],
                "The cron expression '0 9 31 2 *' never fires: February has no day 31.",
            ),
            (
                ["next", "0 9 * * *", "--tz", "Europe/Berlinn"],
                "Unknown time zone 'Europe/Berlinn'. Did you mean Europe/Berlin?",
            ),
            (
                ["next", "0 9 * * *", "--after", "2026-03-07T12:00:00"],
                "The time '2026-03-07T12:00:00' has no UTC offset: add Z or an offset, "
                "as in 2026-03-08T07:00:00Z or 2026-03-08T08:00:00+01:00.",
            ),
            (
                ["next", "0 9 * * *", "--after", "tomorrow"],
                "'tomorrow' is not an ISO-8601 time: use a form like 2026-03-08T07:00:00Z "
                "or 2026-03-08T08:00:00+01:00.",
            ),
            (
                ["next", "0 9 * * *", "--count", "0"],
                "--count must be a whole number from 1 to 1000, not '0'.",
            ),
            (
                ["next", "0 9 * * *", "--count", "-3"],
                "--count must be a whole number from 1 to 1000, not '-3'.",
            ),
            (
                ["next", "0 9 * * *", "--count", "many"],
                "--count must be a whole number from 1 to 1000, not 'many'.",
            ),
            (
                ["next", "0 9 * * *", "--count", "1001"],
                "--count must be a whole number from 1 to 1000, not '1001'.",
            ),
            (
                ["next", "0 9 * * * *"],
                "The cron expression '0 9 * * * *' has 6 fields: use five fields (minute hour "
                "day-of-month month day-of-week), e.g. '0 9 * * 1-5'; seconds and years are "
                "not supported.",
            ),
            (["next"], "Missing EXPR (see 'tickler next --help')."),
            (["next", "0 9 * * *", "--bogus"], "Unknown argument --bogus (see 'tickler --help')."),
            ([], "Missing command: use 'tickler next EXPR --tz ZONE', or 'tickler --help'."),
        ],
    )
    def test_errors_exit_2_with_one_sentence(
        self, argv: list[str], sentence: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 2
        assert out == ""
        assert err == sentence + "\n"

    def test_help_exits_0(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["next", "--help"]) == 0
        assert "--count" in capsys.readouterr().out

    def test_parser_is_extensible(self) -> None:
        parser = build_parser()
        args = parser.parse_args(["next", "@hourly", "--tz", "Asia/Kolkata"])
        assert (args.command, args.expr, args.tz, args.after, args.count) == (
            "next",
            "@hourly",
            "Asia/Kolkata",
            None,
            "5",
        )
        assert callable(args.handler)
