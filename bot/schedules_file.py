"""SCHEDULES_FILE on disk: reading it, parsing its YAML (keeping each entry's line), and
handing the entries to the core (scheduler/schedules_file.py), which validates them and
reconciles them with the stored schedules."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from scheduler.chat_agents import ChatAgentService, InvalidAgent
from scheduler.schedules_file import (
    ApplyReport,
    Entry,
    UnusableEntries,
    apply_entries,
    check_entries,
)
from scheduler.service import ScheduleService

__all__ = [
    "UnusableFile",
    "apply_agents",
    "apply_schedules_file",
    "parse_agents",
    "parse_entries",
]


class UnusableFile(UnusableEntries):
    """The file cannot be applied as a whole (unreadable, not UTF-8, not YAML, not a
    `schedules:` list, the same id twice); the message is its one line."""


def parse_entries(text: str, default_timezone: str = "UTC") -> tuple[list[Entry], list[str]]:
    """The file's valid entries and one error line per bad one; UnusableFile when it
    cannot be applied as a whole."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or "it is not valid YAML"
        raise UnusableFile(f"schedules.yaml line {line}: {problem}.") from None
    if root is None:
        return [], [
            "schedules.yaml line 1: the file has no schedules in it; nothing was changed "
            "(write 'schedules: []' to mean no schedules)."
        ]
    if isinstance(root, yaml.MappingNode) and isinstance(data, dict):
        pairs = {k.value: v for k, v in root.value if isinstance(k, yaml.ScalarNode)}
        node = pairs.get("schedules")
        if node is None or not set(data) <= {"schedules", "agents"}:
            raise UnusableFile(
                "schedules.yaml line 1: the file must hold a 'schedules:' list "
                "(and may hold an 'agents:' list)."
            )
        root, data = node, data["schedules"]
    if not isinstance(root, yaml.SequenceNode) or not isinstance(data, list):
        line = root.start_mark.line + 1
        raise UnusableFile(f"schedules.yaml line {line}: 'schedules' must be a list of entries.")
    items = [(node.start_mark.line + 1, item) for node, item in zip(root.value, data, strict=True)]
    try:
        return check_entries(items, default_timezone)
    except UnusableEntries as exc:
        raise UnusableFile(str(exc)) from None


_AGENT_KEYS = frozenset({"chat_id", "url", "mode", "secret_env", "model"})


def parse_agents(text: str) -> tuple[list[tuple[int, int, dict[str, str | None]]], list[str]]:
    """The `agents:` list: (line, chat id, settings) of each good entry, and one error
    line per bad one. An entry: `chat_id`, and any of `url`, `mode`, `model` and
    `secret_env` (the name of the environment variable holding the secret: a secret does
    not belong in a file kept in git). The values are checked by the service."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError:
        return [], []  # parse_entries says why
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        return [], []
    pairs = {k.value: v for k, v in root.value if isinstance(k, yaml.ScalarNode)}
    node, items = pairs.get("agents"), data.get("agents")
    if node is None:
        return [], []
    if not isinstance(node, yaml.SequenceNode) or not isinstance(items, list):
        return [], [f"schedules.yaml line {node.start_mark.line + 1}: 'agents' must be a list."]
    good: list[tuple[int, int, dict[str, str | None]]] = []
    errors: list[str] = []
    for item_node, item in zip(node.value, items, strict=True):
        line = item_node.start_mark.line + 1
        where = f"schedules.yaml line {line}"
        if not isinstance(item, dict) or not isinstance(item.get("chat_id"), int):
            errors.append(f"{where}: an agent entry needs a numeric chat_id.")
            continue
        unknown = sorted(set(item) - _AGENT_KEYS)
        if unknown:
            errors.append(
                f"{where}: unknown key '{unknown[0]}' (an agent entry takes chat_id, url, "
                "mode, secret_env and model)."
            )
            continue
        secret: str | None = None
        if item.get("secret_env") is not None:
            secret = os.environ.get(str(item["secret_env"]))
            if not secret:
                errors.append(f"{where}: the environment variable {item['secret_env']} is not set.")
                continue
        settings = {
            "url": None if item.get("url") is None else str(item["url"]),
            "mode": None if item.get("mode") is None else str(item["mode"]),
            "model": None if item.get("model") is None else str(item["model"]),
            "secret": secret,
        }
        good.append((line, item["chat_id"], settings))
    return good, errors


async def apply_agents(
    text: str, agents: ChatAgentService, report: ApplyReport, *, chats: Collection[int]
) -> None:
    """Set each listed chat's agent as the file says (a chat not listed keeps what /agent
    or the API set); a bad entry is one line in `report.errors` and changes nothing."""
    good, report_errors = parse_agents(text)
    report.errors.extend(report_errors)
    for line, chat_id, settings in good:
        if chat_id not in chats:
            report.errors.append(
                f"schedules.yaml line {line}: chat {chat_id} is not in ADMIN_IDS, "
                "OPERATOR_IDS or API_CHAT_IDS."
            )
            continue
        try:
            await agents.update(chat_id, **settings)
        except InvalidAgent as exc:
            report.errors.append(f"schedules.yaml line {line}: {exc}")


async def apply_schedules_file(
    path: Path | str,
    service: ScheduleService,
    *,
    now: datetime,
    chats: Collection[int],
    agents: ChatAgentService | None = None,
) -> ApplyReport:
    """Apply the file at `path` for the allow-listed `chats` (ADMIN_IDS, OPERATOR_IDS,
    API_CHAT_IDS): entries for other chats are refused. Config-created schedules of
    those chats whose ids are no longer in the file are paused with REMOVED_REASON.
    `now` is the instant the apply is logged for."""
    del now  # the service reads its own clock; kept for callers' logs and symmetry
    report = ApplyReport()
    try:
        raw = await asyncio.to_thread(Path(path).read_bytes)
    except OSError as exc:
        return report.refuse(f"schedules.yaml line 1: cannot read {path} ({exc.strerror}).")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return report.refuse(
            f"schedules.yaml line {line}: byte 0x{raw[exc.start]:02x} is not UTF-8 text; save "
            "the file as UTF-8 (nothing was changed)."
        )
    try:
        parsed, report.errors = parse_entries(text, service.default_timezone)
    except UnusableFile as exc:
        return report.refuse(str(exc))
    report = await apply_entries(parsed, service, report, chats=chats, text=text)
    if agents is not None and report.unusable is None:
        await apply_agents(text, agents, report, chats=chats)
    return report
