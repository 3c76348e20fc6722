"""Log lines as an operator reads them: one line per event, plain or JSON, the run and
schedule ids on every line about a run, and no secret anywhere — checked on the
formatter, on the engine in process, and on `python -m bot` as a real process."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from adapters.clocks import FakeClock, SystemClock
from bot.demo_kit.agent_stub import AgentStub
from bot.demo_kit.telegram_server import TelegramServer
from bot.logs import build_handler, configure_logging_from_settings
from bot.settings import ConfigError, load_settings
from scheduler.engine import Engine, EngineConfig
from scheduler.log_context import log_context
from scheduler.models import Action, Owner, Policies, RetryPolicy, Run, RunStatus
from scheduler.service import ScheduleService, TriggerSpec
from storage.sqlite_store import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
CHAT = 4242
ADA = Owner(id=CHAT, first_name="Ada")
TOKEN = "7000000001:AAE-log-test-token_0123456789abcdef"
EVERY_DAY = TriggerSpec(kind="interval", every_seconds=86400)
log = logging.getLogger("tickler.test")


class Captured:
    """Our handler on the root logger, writing into a string."""

    def __init__(self, fmt: str, secrets: list[str]) -> None:
        self.stream = io.StringIO()
        self.handler = build_handler(fmt, secrets, self.stream)  # type: ignore[arg-type]

    @property
    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def capture() -> Iterator[Any]:
    """`capture(fmt, secrets)` installs a capturing handler at INFO for the test."""
    root = logging.getLogger()
    installed: list[Captured] = []
    level = root.level

    def make(fmt: str = "json", secrets: list[str] | None = None) -> Captured:
        captured = Captured(fmt, secrets or [])
        root.addHandler(captured.handler)
        installed.append(captured)
        return captured

    root.setLevel(logging.INFO)
    yield make
    for captured in installed:
        root.removeHandler(captured.handler)
    root.setLevel(level)


def boom() -> None:
    raise RuntimeError(f"the agent said no\nto {TOKEN}")


# --- the formats -----------------------------------------------------------------------------
def test_a_plain_line_has_time_level_logger_message_and_the_ids(capture: Any) -> None:
    out = capture("plain")
    with log_context(run_id="R1", schedule_id="S1", chat_id=CHAT):
        log.info("run finished", extra={"status": "succeeded", "error": "agent said: no way"})
    [line] = out.lines
    stamp, rest = line.split(" ", 1)
    assert stamp.endswith("Z") and stamp[10] == "T"
    assert rest == (
        "INFO tickler.test run finished run=R1 schedule=S1 chat=4242 status=succeeded "
        'error="agent said: no way"'
    )


def test_a_traceback_stays_on_the_events_line(capture: Any) -> None:
    plain, as_json = capture("plain"), capture("json")
    try:
        boom()
    except RuntimeError:
        log.exception("dispatch failed\nbadly")
    [line] = plain.lines
    assert "dispatch failed\\nbadly" in line
    folded = line.split(" exc=", 1)[1]
    assert "Traceback" in json.loads(folded) and "RuntimeError: the agent said no" in folded
    [record] = as_json.json()
    assert record["msg"] == "dispatch failed\nbadly"
    assert record["exc"].startswith("Traceback") and record["level"] == "ERROR"


def test_json_lines_carry_the_context_and_the_call_sites_fields(capture: Any) -> None:
    out = capture("json")
    with log_context(run_id="R1", schedule_id="S1"):
        log.warning("run finished", extra={"status": "failed", "attempt": 2})
        with log_context(chat_id=CHAT):
            log.info("sent")
    log.info("idle")
    first, second, third = out.json()
    assert first == {
        "ts": first["ts"],
        "level": "WARNING",
        "logger": "tickler.test",
        "msg": "run finished",
        "run_id": "R1",
        "schedule_id": "S1",
        "status": "failed",
        "attempt": 2,
    }
    assert (second["run_id"], second["chat_id"]) == ("R1", CHAT)
    assert "run_id" not in third


def test_secrets_are_masked_in_messages_args_fields_and_tracebacks(capture: Any) -> None:
    outputs = [capture("plain", [TOKEN, "s3cret-agent"]), capture("json", [TOKEN, "s3cret-agent"])]
    url = f"http://127.0.0.1:8081/bot{TOKEN}/getUpdates"
    log.info("HTTP Request: POST %s", url)
    log.info("header X-Secret: s3cret-agent", extra={"url": url})
    log.info("quoted %s", TOKEN.replace(":", "%3A"))
    try:
        boom()
    except RuntimeError:
        log.exception("failed")
    for out in outputs:
        text = out.stream.getvalue()
        assert TOKEN not in text and "s3cret-agent" not in text and "AAE-log" not in text
        assert text.count("***") >= 5
    assert (
        outputs[1].json()[0]["msg"] == "HTTP Request: POST http://127.0.0.1:8081/bot***/getUpdates"
    )


def test_every_secret_setting_is_masked_in_the_configured_logs() -> None:
    secrets = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "API_TOKEN": "api-token-value-of-at-least-32-chars",
        "AGENT_SECRET": "agent-secret-value",
        "AGENT_TOKEN": "agent-token-value",
        "WEBHOOK_SECRET": "webhook-secret-value",
    }
    settings = load_settings(
        {
            "AGENT_URL": "http://127.0.0.1:9/hook",
            "WEBHOOK_URL": "https://bot.example.com/telegram",
            "LOG_FORMAT": "json",
            **secrets,
        }
    )
    root = logging.getLogger()
    before = list(root.handlers), root.level
    quieted = [logging.getLogger(name) for name in ("httpx", "aiosqlite")]
    levels = [logger.level for logger in quieted]
    stream = io.StringIO()
    try:
        handler = configure_logging_from_settings(settings, stream)
        assert configure_logging_from_settings(settings, stream) is not handler
        assert sum(h.stream is stream for h in root.handlers if hasattr(h, "stream")) == 1
        for value in secrets.values():
            log.info("the value is %s", value)
    finally:
        root.handlers[:] = before[0]
        root.setLevel(before[1])
        for logger, level in zip(quieted, levels, strict=True):
            logger.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["msg"] for line in lines] == ["the value is ***"] * len(secrets)


def test_log_format_is_a_setting_with_a_clear_error() -> None:
    env = {"AGENT_URL": "http://127.0.0.1:9/hook"}
    assert load_settings(env).log_format == "plain"
    assert load_settings({**env, "LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError) as error:
        load_settings({**env, "LOG_FORMAT": "xml"})
    assert str(error.value) == "Configuration error: LOG_FORMAT: Input should be 'plain' or 'json'."


# --- the engine, in process ---------------------------------------------------------------------
class LoggingObserver:
    """Code that knows nothing of runs' ids and logs anyway, as a library would."""

    def attempt_started(self, run: Run, lag_s: float) -> None:
        logging.getLogger("some.library").info("starting something")

    def attempt_finished(self, run: Run, duration_s: float, status: RunStatus) -> None:
        logging.getLogger("some.library").info("finished something")


async def test_every_line_about_a_run_carries_its_ids(
    capture: Any, store: SqliteStore, clock: FakeClock, agent_stub: AgentStub
) -> None:
    out = capture("json", ["stub-secret"])
    service = ScheduleService(store, clock)
    schedule = await service.create_schedule(
        CHAT,
        ADA,
        name="Daily brief",
        trigger=EVERY_DAY,
        action=Action(text="Brief me."),
        policies=Policies(retry=RetryPolicy(max_attempts=2, base_seconds=1, cap_seconds=1)),
    )
    dispatcher = HttpAgentDispatcher(url=agent_stub.url, secret="stub-secret")
    engine = Engine(
        store.engine, clock, dispatcher, config=EngineConfig(), observer=LoggingObserver()
    )
    try:
        agent_stub.script([500])
        await engine.run_until_idle()
        await clock.advance(timedelta(seconds=5))
        await engine.run_until_idle()
    finally:
        await engine.shutdown()
        await dispatcher.aclose()

    [run] = await store.runs.list_for_chat(CHAT)
    lines = out.json()  # each line is one JSON object, or this fails
    finished = [line for line in lines if line["msg"] == "run finished"]
    assert [(f["status"], f["attempt"], f["level"]) for f in finished] == [
        ("failed", 1, "WARNING"),
        ("succeeded", 2, "INFO"),
    ]
    assert finished[0]["error"] == "The agent answered HTTP 500."
    unaware = [line for line in lines if line["logger"] == "some.library"]
    assert len(unaware) == 4  # started and finished, for each of the two attempts
    for line in finished + unaware:
        assert (line["run_id"], line["schedule_id"], line["chat_id"]) == (run.id, schedule.id, CHAT)
    assert "stub-secret" not in out.stream.getvalue()


# --- python -m bot, a real process ------------------------------------------------------------
async def test_the_bot_process_writes_json_lines_without_its_token(
    tmp_path: Path, agent_stub: AgentStub
) -> None:
    db_path = tmp_path / "tickler.db"
    async with await SqliteStore.open(db_path) as store:
        schedule = await ScheduleService(store, SystemClock()).create_schedule(
            CHAT, ADA, name="Brief", trigger=EVERY_DAY, action=Action(text="Brief me.")
        )

    async def the_run_succeeded() -> None:
        async with asyncio.timeout(30):
            while _status(db_path) != "succeeded":
                await asyncio.sleep(0.05)

    async with TelegramServer(token=TOKEN) as telegram:
        # DEBUG: the libraries' own lines too (httpx logs URLs with the token in them).
        stderr = await _bot_log(
            tmp_path,
            telegram,
            agent_stub,
            str(CHAT),
            the_run_succeeded,
            LOG_LEVEL="DEBUG",
            AGENT_SECRET="proc-secret-value",
        )

    lines = [json.loads(line) for line in stderr.splitlines()]  # every line is JSON
    assert TOKEN not in stderr and TOKEN.split(":")[1] not in stderr
    assert "proc-secret-value" not in stderr
    assert any("/bot***/getUpdates" in line["msg"] for line in lines)  # masked, not absent
    [finished] = [line for line in lines if line["msg"] == "run finished"]
    assert (finished["schedule_id"], finished["status"]) == (schedule.id, "succeeded")
    assert finished["run_id"] == _run_id(db_path)
    about_the_run = [line for line in lines if finished["run_id"] in json.dumps(line)]
    assert all(line.get("run_id") for line in about_the_run)
    print(f"{len(lines)} log lines; {len(about_the_run)} about the run, each with its ids")


def _status(db_path: Path) -> str | None:
    with sqlite3.connect(db_path) as db:
        row = db.execute("SELECT status FROM runs").fetchone()
    return None if row is None else str(row[0])


def _run_id(db_path: Path) -> str:
    with sqlite3.connect(db_path) as db:
        return str(db.execute("SELECT id FROM runs").fetchone()[0])


async def _bot_log(
    tmp_path: Path,
    telegram: TelegramServer,
    agent_stub: AgentStub,
    admin_ids: str,
    chat: Any = None,
    **settings: str,
) -> str:
    """Run `python -m bot` (JSON lines at INFO unless `settings` say otherwise) until it
    polls Telegram, let `chat` (an async callable) talk to it, stop it with SIGTERM;
    what it wrote on stderr."""
    db_path = tmp_path / "tickler.db"
    env = {
        **os.environ,
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": telegram.url,
        "ADMIN_IDS": admin_ids,
        "DATABASE_PATH": str(db_path),
        "AGENT_URL": agent_stub.url,
        "HTTP_PORT": "0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        **settings,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await telegram.wait_polling(timeout=30)
        if chat is not None:
            await chat()
        proc.send_signal(signal.SIGTERM)
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            stderr = (await proc.stderr.read()).decode()
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return stderr


async def _bot_lines(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """`_bot_log`, its lines parsed (each one is JSON)."""
    return [json.loads(line) for line in (await _bot_log(*args, **kwargs)).splitlines()]


async def test_the_bot_says_started_once_and_a_new_step_logs_no_job_queue_lines(
    tmp_path: Path, agent_stub: AgentStub
) -> None:
    db_path = tmp_path / "tickler.db"
    async with await SqliteStore.open(db_path) as store:
        await ScheduleService(store, SystemClock()).create_schedule(
            CHAT, ADA, name="Brief", trigger=EVERY_DAY, action=Action(text="Brief me.")
        )
    async with TelegramServer(token=TOKEN) as telegram:
        ada = telegram.user(CHAT, "Ada")

        async def new_schedule_steps() -> None:
            await ada.send("/new")
            await ada.wait_reply(containing="What should it do?", timeout=15)
            await ada.send("/cancel")
            await ada.wait_reply(timeout=15)

        lines = await _bot_lines(tmp_path, telegram, agent_stub, str(CHAT), new_schedule_steps)
    [started] = [line for line in lines if line["msg"] == "started"]
    assert started["level"] == "INFO" and started["version"]
    assert (started["mode"], started["database"], started["timezone"], started["schedules"]) == (
        "polling",
        str(db_path),
        "UTC",
        1,
    )
    job_loggers = ("apscheduler", "telegram.ext.JobQueue")
    jobs = [line for line in lines if line["logger"].startswith(job_loggers)]
    assert jobs == []
    assert not any("serves nobody" in line["msg"] for line in lines)


async def test_a_bot_that_serves_nobody_says_so_loudly_at_start(
    tmp_path: Path, agent_stub: AgentStub
) -> None:
    async with TelegramServer(token=TOKEN) as telegram:
        lines = await _bot_lines(tmp_path, telegram, agent_stub, admin_ids="")
    [warning] = [line for line in lines if "serves nobody" in line["msg"]]
    assert warning["level"] == "WARNING" and "set ADMIN_IDS" in warning["msg"]
