"""`tickler doctor` against the strict Bot API server, the agent stub and real SQLite
files: one line per check, a fix on every failing line, exit 1 when any fails, and no
secret in what it prints."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bot import doctor as doctor_module
from bot.cli import main
from bot.demo_kit.agent_stub import AgentStub, refused_url
from bot.demo_kit.telegram_server import TelegramServer
from bot.settings import Settings
from storage.database import SCHEMA_VERSION
from tests import postgres

AGENT_SECRET = "agent-secret-do-not-print"


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    telegram_server: TelegramServer,
    agent_stub: AgentStub,
) -> Callable[..., None]:
    """A good setup in the environment (no .env is read: the working folder is empty);
    `env(NAME=value)` changes one setting, `env(NAME=None)` removes it."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    good = {
        "TELEGRAM_BOT_TOKEN": telegram_server.token,
        "TELEGRAM_API_BASE_URL": telegram_server.url,
        "ADMIN_IDS": "1001",
        "AGENT_URL": agent_stub.url,
        "AGENT_SECRET": AGENT_SECRET,
        "DATABASE_PATH": str(tmp_path / "data" / "tickler.db"),
    }

    def apply(**changes: str | None) -> None:
        for name, value in {**good, **changes}.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)

    apply()
    return apply


async def doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """Run `tickler doctor` as the console script does (in a thread: the fake servers
    answer on this test's event loop)."""
    code = await asyncio.to_thread(main, ["doctor"])
    out, err = capsys.readouterr()
    assert err == ""
    return code, out.splitlines()


def line(lines: list[str], name: str) -> str:
    [found] = [text for text in lines if text[5:].startswith(f"{name}:")]
    return found


async def test_a_good_setup_passes_every_check_and_leaves_a_migrated_database(
    env: Callable[..., None], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, lines = await doctor(capsys)
    assert code == 0
    assert [text[:5] for text in lines] == ["ok   "] * 6
    assert [text[5:].split(":")[0] for text in lines] == [
        "settings",
        "database",
        "budgets",
        "bot token",
        "agent",
        "stats chart",
    ]
    assert re.fullmatch(
        r"ok   stats chart: matplotlib \S+ drew a 900x720 PNG in \d+\.\d\d s \(font cache .+\)",
        line(lines, "stats chart"),
    )
    assert line(lines, "budgets") == "ok   budgets: 0 schedules and 0 chats have a weekly budget"
    assert "@tickler_test_bot" in line(lines, "bot token")
    db_file = tmp_path / "data" / "tickler.db"
    assert f"created {db_file}" in line(lines, "database")
    with sqlite3.connect(db_file) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)

    # A second run finds the same database ready, and says so.
    code, lines = await doctor(capsys)
    assert code == 0
    assert f"{db_file} is writable, schema version {SCHEMA_VERSION}" in line(lines, "database")

    # A schedule paused at its budget is named (information, never a failure).
    with sqlite3.connect(db_file) as db:
        db.execute(
            "INSERT INTO schedules (id, chat_id, name, trigger_json, action_json, policies_json, "
            "owner_id, owner_name, enabled, pause_kind, created_by, created_at, updated_at) "
            "VALUES ('S1', 7, 'Nightly report', '{}', '{}', '{\"budget_runs_per_week\": 10}', "
            "7, 'Ada', 0, 'budget', 'operator', '2026-11-23T07:00:00.000000Z', "
            "'2026-11-23T07:00:00.000000Z')"
        )
    code, lines = await doctor(capsys)
    assert code == 0
    assert line(lines, "budgets") == (
        "ok   budgets: 1 schedule and 0 chats have a weekly budget; paused at their budget: "
        "'Nightly report' (chat 7) (/budget shows the use)"
    )


async def test_wrong_token_unreachable_agent_and_unwritable_database_each_fail_with_a_fix(
    env: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # A regular file where a folder should be: unwritable even for root (CI runs as root).
    (tmp_path / "file").write_text("not a folder")
    wrong_token = "7000000001:AAE-wrong-token-that-must-not-be-printed"
    agent = refused_url("/hook")
    env(
        TELEGRAM_BOT_TOKEN=wrong_token,
        AGENT_URL=agent,
        DATABASE_PATH=str(tmp_path / "file" / "tickler.db"),
    )
    code, lines = await doctor(capsys)
    print("\n".join(lines))
    assert code == 1
    assert line(lines, "settings").startswith("ok   ")
    token = line(lines, "bot token")
    assert token.startswith("FAIL bot token: getMe answered 401 Unauthorized — fix: ")
    assert "@BotFather" in token
    assert line(lines, "agent") == (
        f"FAIL agent: nothing answers at {agent} (connection refused) — fix: start the "
        "agent, or set AGENT_URL to where it listens (inside a container 127.0.0.1 is the "
        "container itself: use the agent's service name or the host's address)"
    )
    database = line(lines, "database")
    assert database.startswith(f"FAIL database: cannot create {tmp_path / 'file' / 'tickler.db'}")
    assert "— fix: point DATABASE_PATH at a file in a folder" in database
    output = "\n".join(lines)
    assert wrong_token not in output and AGENT_SECRET not in output


@pytest.mark.parametrize(
    ("database_path", "expected"),
    [
        ("/proc/tickler/tickler.db", "FAIL database: cannot create /proc/tickler/tickler.db"),
        (
            "/proc/tickler.db",
            "FAIL database: cannot open /proc/tickler.db for writing "
            "(unable to open database file)",
        ),
    ],
)
async def test_a_database_path_nobody_may_write_fails(
    env: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
    database_path: str,
    expected: str,
) -> None:
    env(DATABASE_PATH=database_path)
    code, lines = await doctor(capsys)
    print("\n".join(lines))
    assert code == 1
    assert line(lines, "database").startswith(expected)
    assert " — fix: " in line(lines, "database")
    assert [text[:4] for text in lines].count("FAIL") == 1


async def test_a_database_from_a_newer_tickler_fails_with_an_upgrade_fix(
    env: Callable[..., None], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    db_file = tmp_path / "newer.db"
    with sqlite3.connect(db_file) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    env(DATABASE_PATH=str(db_file))
    code, lines = await doctor(capsys)
    assert code == 1
    database = line(lines, "database")
    assert database.startswith(
        f"FAIL database: The database schema is version {SCHEMA_VERSION + 1}"
    )
    assert "fix: run the Tickler version that wrote it" in database


async def test_an_agent_that_fails_or_refuses_the_secret_fails(
    env: Callable[..., None], capsys: pytest.CaptureFixture[str], agent_stub: AgentStub
) -> None:
    agent_stub.respond_with(502)
    code, lines = await doctor(capsys)
    assert code == 1
    assert line(lines, "agent") == (
        f"FAIL agent: {agent_stub.url} answered 502 Bad Gateway — fix: the agent is up but "
        "failing: see its logs"
    )

    agent_stub.respond_with(403)
    code, lines = await doctor(capsys)
    assert code == 1
    assert "fix: set AGENT_SECRET to the value the agent expects" in line(lines, "agent")
    # It probed with a GET (a POST would hand the agent a task), secret attached.
    assert {r.method for r in agent_stub.requests} == {"GET"}
    assert agent_stub.requests[-1].headers["x-telegram-bot-api-secret-token"] == AGENT_SECRET


async def test_openai_mode_checks_the_token_on_the_models_endpoint(
    env: Callable[..., None], capsys: pytest.CaptureFixture[str], agent_stub: AgentStub
) -> None:
    env(AGENT_MODE="openai", AGENT_URL=agent_stub.openai_url, AGENT_TOKEN="sk-never-printed")
    code, lines = await doctor(capsys)
    assert code == 0, lines
    [probe] = agent_stub.requests
    assert (probe.method, probe.path) == ("GET", "/v1/models")
    assert probe.headers["authorization"] == "Bearer sk-never-printed"
    assert "sk-never-printed" not in "\n".join(lines)


async def test_every_bad_setting_is_reported_at_once_with_its_fix(
    env: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    env(AGENT_URL=None, TELEGRAM_BOT_TOKEN="paste-your-token-here", DEFAULT_TIMEZONE="Berlin")
    code, lines = await doctor(capsys)
    assert code == 1
    assert lines[:-1] == [
        "FAIL settings: TELEGRAM_BOT_TOKEN is not usable: is not a bot token; @BotFather "
        "gives one like 123456789:AAH... (digits, a colon, then letters, digits, _ and -) "
        "— fix: copy the token again from @BotFather (/mybots → your bot → API Token), with "
        "nothing around it",
        "FAIL settings: AGENT_URL is not set — fix: set it to the URL the agent listens on, "
        "e.g. http://agent:9000/hook",
        "FAIL settings: DEFAULT_TIMEZONE is not usable: Unknown time zone 'Berlin'. Did you "
        "mean Europe/Berlin? — fix: use an IANA zone name such as Europe/Berlin",
        "skip database: needs the settings above",
        "skip bot token: needs the settings above",
        "skip agent: needs the settings above",
    ]
    # The chart needs no settings: it is drawn all the same.
    assert lines[-1].startswith("ok   stats chart: matplotlib ")


async def test_a_chart_that_cannot_be_drawn_fails_with_its_fix(
    env: Callable[..., None], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot import stats_chart

    def broken(stats: object) -> bytes:
        raise RuntimeError("no font found")

    monkeypatch.setattr(stats_chart, "render_png", broken)
    code, lines = await doctor(capsys)
    assert code == 1
    assert line(lines, "stats chart") == (
        "FAIL stats chart: matplotlib could not draw it (no font found) — fix: reinstall the "
        "locked dependencies (pip install --require-hashes -r requirements.lock) and give "
        "MPLCONFIGDIR a writable folder; /stats still answers in text meanwhile"
    )


async def test_a_short_api_token_fails_and_says_how_to_make_one(
    env: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    env(API_TOKEN="a")
    code, lines = await doctor(capsys)
    assert code == 1
    assert lines[0] == (
        "FAIL settings: API_TOKEN is not usable: must be at least 32 characters of visible "
        "ASCII (no spaces) — fix: make one with python -c 'import secrets; "
        "print(secrets.token_urlsafe(32))' and set API_TOKEN to it in .env"
    )


async def test_no_token_and_nobody_allowed_are_failures(
    env: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    env(TELEGRAM_BOT_TOKEN=None, ADMIN_IDS=None)
    code, lines = await doctor(capsys)
    assert code == 1
    assert line(lines, "settings").startswith(
        "FAIL settings: ADMIN_IDS and OPERATOR_IDS are both empty"
    )
    assert line(lines, "bot token").startswith(
        "FAIL bot token: TELEGRAM_BOT_TOKEN is not set — fix: create a bot with @BotFather"
    )


async def test_an_agent_that_never_answers_fails_within_the_timeout(
    env: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
    agent_stub: AgentStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(doctor_module, "HTTP_TIMEOUT_S", 0.5)
    agent_stub.hang()
    code, lines = await doctor(capsys)
    assert code == 1
    assert line(lines, "agent").startswith(
        f"FAIL agent: nothing answers at {agent_stub.url} (no answer within 0.5 s) — fix: "
    )
    assert line(lines, "bot token").startswith("ok   ")


def test_the_deployment_guides_sample_shows_todays_schema_version() -> None:
    guide = (Path(__file__).resolve().parents[1] / "docs" / "deployment.md").read_text()
    shown = re.findall(r"is writable, schema version (\d+)", guide)
    # The SQLite sample and the PostgreSQL one.
    assert shown == [str(SCHEMA_VERSION)] * 2, "docs/deployment.md's doctor samples are stale"


# --- PostgreSQL (DATABASE_URL) -----------------------------------------------------------
async def test_a_postgresql_database_is_migrated_and_reported_without_its_password(
    env: Callable[..., None], capsys: pytest.CaptureFixture[str], postgres_url: str
) -> None:
    # The throwaway server trusts loopback logins, so any password gets in: one that must
    # never be printed.
    password = "pg-password-do-not-print"
    url = postgres_url.replace("postgres@", f"postgres:{password}@")
    shown = postgres_url  # postgresql://postgres@127.0.0.1:PORT/NAME
    env(DATABASE_URL=url)
    code, lines = await doctor(capsys)
    assert code == 0, lines
    assert line(lines, "database") == (
        f"ok   database: {shown} is writable, created schema version {SCHEMA_VERSION}"
    )
    code, lines = await doctor(capsys)
    assert line(lines, "database") == (
        f"ok   database: {shown} is writable, schema version {SCHEMA_VERSION}"
    )
    assert password not in "\n".join(lines)


async def test_a_postgresql_database_that_is_missing_or_unreachable_fails_with_a_fix(
    env: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
    pg_cluster: postgres.Cluster,
) -> None:
    env(DATABASE_URL=pg_cluster.url("no_such_db").replace("postgres@", "postgres:pw-9x7@"))
    code, lines = await doctor(capsys)
    assert code == 1
    assert line(lines, "database") == (
        f"FAIL database: {pg_cluster.url('no_such_db')}: the server has no database "
        "no_such_db — fix: create it (createdb -O postgres no_such_db), or fix the database "
        "name in DATABASE_URL"
    )
    refused = urlsplit(refused_url("/")).port
    env(DATABASE_URL=f"postgresql://tickler:pw-9x7@127.0.0.1:{refused}/tickler")
    code, lines = await doctor(capsys)
    assert code == 1
    assert line(lines, "database").startswith(
        f"FAIL database: nothing answers at postgresql://tickler@127.0.0.1:{refused}/tickler "
        "(connection refused) — fix: start the PostgreSQL server"
    )
    assert "pw-9x7" not in "\n".join(lines)


def test_a_database_url_that_is_no_postgresql_url_is_one_setting_problem(
    env: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    env(DATABASE_URL="mysql://root:hunter22@db/tickler")
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL settings: DATABASE_URL is not usable: must be a PostgreSQL URL")
    assert "hunter22" not in out


async def test_every_chats_own_agent_is_checked_as_the_default_is(
    env: Callable[..., None], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _ = await doctor(capsys)  # creates the database
    assert code == 0
    nowhere = refused_url("/hook")
    async with AgentStub() as good:
        with sqlite3.connect(tmp_path / "data" / "tickler.db") as db:
            db.executemany(
                "INSERT INTO chat_agents (chat_id, url, secret, updated_at) VALUES (?, ?, ?, ?)",
                [
                    (7, good.url, "chat-7-secret", "2026-11-23T07:00:00.000000Z"),
                    (8, nowhere, None, "2026-11-23T07:00:00.000000Z"),
                    (9, None, None, "2026-11-23T07:00:00.000000Z"),  # the default in all
                ],
            )
        code, lines = await doctor(capsys)
        assert code == 1
        assert (
            line(lines, "agent of chat 7")
            == f"ok   agent of chat 7: {good.url} answers (GET: 200 OK)"
        )
        assert good.requests[0].headers["x-telegram-bot-api-secret-token"] == "chat-7-secret"
        assert line(lines, "agent of chat 8").startswith(
            f"FAIL agent of chat 8: nothing answers at {nowhere} (connection refused)"
            " — fix: start that agent, or change it with /agent url in chat 8"
        )
        assert not [text for text in lines if "chat 9" in text]
        assert "chat-7-secret" not in "\n".join(lines)
