"""The README and docs/ stay true: the settings table is bot/settings.py, the commands
table is the bot's command menu, every JSON example parses (and the wire examples are
what Tickler really sends), the shell commands shown exist, the CLI output shown is the
CLI's output, and every local link leads to a file."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.agent_dispatch import HttpAgentDispatcher
from bot.cli import build_parser, main
from bot.commands import COMMANDS
from bot.demo_kit.agent_stub import AgentStub
from bot.settings import Settings
from scheduler.dispatching import DispatchRequest, Operator
from scheduler.proposals import ProposalRequest
from scheduler.results import check_report
from storage.sqlite_store import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def table_after(marker: str, page: Path = README) -> list[list[str]]:
    """The rows (cells stripped, header and rule left out) of the table after `marker`."""
    lines = text(page).split(f"<!-- {marker}", 1)[1].splitlines()[1:]
    rows: list[list[str]] = []
    for line in lines:
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[2:]


def blocks(language: str, pages: list[Path] = PAGES) -> list[tuple[Path, str, str]]:
    """(page, the marker comment just before it or "", body) of each fenced block."""
    found = []
    pattern = re.compile(rf"(?:<!-- ([^>]*?) -->\n)?```{language}\n(.*?)```", re.DOTALL)
    for page in pages:
        for match in pattern.finditer(text(page)):
            found.append((page, match.group(1) or "", match.group(2)))
    return found


def example(name: str, page: Path = README) -> Any:
    [body] = [b for p, marker, b in blocks("json", [page]) if marker == f"json-example: {name}"]
    return json.loads(body)


# --- configuration and commands ----------------------------------------------------------------
def test_the_settings_table_lists_every_setting_and_only_settings() -> None:
    rows = table_after("settings-table")
    listed = [row[0].strip("`") for row in rows]
    assert sorted(listed) == sorted(name.upper() for name in Settings.model_fields)
    for row in rows:
        assert len(row) == 4 and all(row), f"a row needs a default, an example and a meaning: {row}"


def test_the_settings_tables_defaults_are_the_real_defaults() -> None:
    for name, default, *_ in table_after("settings-table"):
        field = Settings.model_fields[name.strip("`").lower()]
        if field.is_required():
            assert default == "(required)", name
            continue
        value = field.get_default(call_default_factory=True)
        if value is None or value == []:
            assert not default.startswith("`"), f"{name}: no default, but the table shows one"
            continue
        shown = default.strip("`")
        assert shown in {str(value), f"{value:g}" if isinstance(value, float) else ""}, name


def test_the_commands_table_is_the_bots_command_menu() -> None:
    listed = [row[0].strip("`").split()[0].lstrip("/") for row in table_after("commands-table")]
    assert listed == [name for name, _ in COMMANDS]


# --- the examples ----------------------------------------------------------------------------
def test_every_json_example_parses() -> None:
    found = blocks("json")
    assert len(found) >= 6
    for page, marker, body in found:
        try:
            json.loads(body)
        except ValueError as exc:
            pytest.fail(f"{page.name}, {marker or 'a JSON block'}: {exc}")


def test_the_proposal_examples_are_valid_proposals() -> None:
    for page in (README, ROOT / "docs" / "agent-protocol.md"):
        ProposalRequest.model_validate(example("proposal", page))
    plan = ProposalRequest.model_validate(
        example("plan-proposal", ROOT / "docs" / "agent-protocol.md")
    )
    assert [s.title for s in plan.action.steps] == ["Collect", "Summarise", "Publish"]


def test_the_result_example_is_a_valid_report() -> None:
    report = check_report(example("result", ROOT / "docs" / "agent-protocol.md"))
    assert report.status == "succeeded" and report.outputs_url is not None


async def test_the_wire_examples_are_what_tickler_sends(agent_stub: AgentStub) -> None:
    request = DispatchRequest(
        schedule_id="01JDEXAMPLE",
        run_id="01JEEXAMPLE",
        scheduled_for=datetime(2026, 11, 24, 7, 0, tzinfo=UTC),
        chat_id=123456789,
        operator=Operator(id=123456789, first_name="Ada"),
        schedule_name="Daily brief",
        prompt="Prepare my daily brief for Tuesday 24 November.",
        timezone="Europe/Berlin",
    )
    for mode, url in (("telegram", agent_stub.url), ("openai", agent_stub.openai_url)):
        async with HttpAgentDispatcher(url=url, mode=mode) as dispatcher:  # type: ignore[arg-type]
            await dispatcher.dispatch(request, timeout=5)
    telegram, openai = (r.json for r in agent_stub.requests)
    for page in (README, ROOT / "docs" / "agent-protocol.md"):
        # The ids are a hash of the idempotency key, which the example cannot reproduce.
        assert without_ids(example("telegram", page)) == without_ids(telegram)
        assert example("openai", page) == openai


def without_ids(update: dict[str, Any]) -> dict[str, Any]:
    message = {k: v for k, v in update["message"].items() if k != "message_id"}
    return {**{k: v for k, v in update.items() if k != "update_id"}, "message": message}


def test_the_log_line_example_has_the_documented_fields() -> None:
    line = example("log line", ROOT / "docs" / "logs.md")
    assert list(line)[:4] == ["ts", "level", "logger", "msg"]
    assert {"run_id", "schedule_id"} <= set(line)


def test_the_cli_output_shown_is_the_clis_output(capsys: pytest.CaptureFixture[str]) -> None:
    page = ROOT / "docs" / "chat.md"
    command = next(
        line
        for _, _, body in blocks("bash", [page])
        for line in body.splitlines()
        if "next" in line
    )
    [(_, _, shown)] = [b for b in blocks("text", [page]) if b[1].startswith("cli-output")]
    args = shlex.split(command)
    assert args[:2] == ["./dev", "tickler"]
    assert main(args[2:]) == 0
    assert capsys.readouterr().out == shown


def test_the_shell_commands_shown_exist() -> None:
    [group] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    subcommands = set(group.choices)
    # `./dev X` runs X from the virtual environment's bin folder, where this test runs.
    venv_bin = Path(sys.executable).parent
    seen = set()
    for _, _, body in blocks("bash"):
        for line in body.splitlines():
            for command in re.findall(r"(?:^|&& |\$\()(\./[\w.-]+(?: [\w.-]+)*)", line):
                words = command.split()
                script = ROOT / words[0]
                assert script.is_file() and script.stat().st_mode & 0o111, f"{words[0]} in {line}"
                seen.add(words[0])
                if words[0] == "./dev":
                    assert (venv_bin / words[1]).is_file(), line
                    if words[1] == "tickler":
                        assert words[2] in subcommands, line
    assert {"./dev", "./demo"} <= seen
    # The test command is shown on a line of its own (and .ci/run runs exactly it).
    assert "\n./dev pytest\n" in text(README)
    assert "./dev pytest\n" in text(ROOT / ".ci" / "run")


def test_every_local_link_leads_to_a_file() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text(page)):
            if target.startswith(("http://", "https://")):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_the_backup_command_shown_makes_a_copy_that_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bash = "".join(body for _, _, body in blocks("bash", [README]))
    line = next(line for line in bash.splitlines() if "tickler backup" in line)
    args = shlex.split(line.split("#")[0].replace("$(date +%F)", "2026-11-25"))
    assert args[:3] == ["./dev", "tickler", "backup"]
    database = tmp_path / "data" / "tickler.db"
    database.parent.mkdir()
    asyncio.run(_open_and_close(database))  # a real Tickler database, migrated
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_PATH", str(database))
    monkeypatch.setenv("AGENT_URL", "http://127.0.0.1:9/hook")
    assert main(args[2:]) == 0, capsys.readouterr().err
    copy = tmp_path / args[3]
    asyncio.run(_open_and_close(copy))


async def _open_and_close(path: Path) -> None:
    store = await SqliteStore.open(path)
    await store.close()


def test_the_docker_quick_start_has_its_files() -> None:
    readme = text(README)
    assert "cp .env.example .env" in readme and "docker compose up -d" in readme
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    for name in ("TELEGRAM_BOT_TOKEN", "ADMIN_IDS", "AGENT_URL"):
        assert re.search(rf"^#? *{name}=", example, re.MULTILINE), f"{name} not in .env.example"
    assert (ROOT / "docker-compose.yml").is_file() or (ROOT / "compose.yaml").is_file()
