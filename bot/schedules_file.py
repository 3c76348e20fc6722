"""SCHEDULES_FILE on disk: reading it, parsing its YAML (keeping each entry's line), and
handing the entries to the core (scheduler/schedules_file.py), which validates them and
reconciles them with the stored schedules."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from scheduler.schedules_file import (
    ApplyReport,
    Entry,
    UnusableEntries,
    apply_entries,
    check_entries,
)
from scheduler.service import ScheduleService

__all__ = ["UnusableFile", "apply_schedules_file", "parse_entries"]


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
        if node is None or set(data) != {"schedules"}:
            raise UnusableFile("schedules.yaml line 1: the file must hold a 'schedules:' list.")
        root, data = node, data["schedules"]
    if not isinstance(root, yaml.SequenceNode) or not isinstance(data, list):
        line = root.start_mark.line + 1
        raise UnusableFile(f"schedules.yaml line {line}: 'schedules' must be a list of entries.")
    items = [(node.start_mark.line + 1, item) for node, item in zip(root.value, data, strict=True)]
    try:
        return check_entries(items, default_timezone)
    except UnusableEntries as exc:
        raise UnusableFile(str(exc)) from None


async def apply_schedules_file(
    path: Path | str,
    service: ScheduleService,
    *,
    now: datetime,
    chats: Collection[int],
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
    return await apply_entries(parsed, service, report, chats=chats, text=text)
