"""Rewinding a test's SQLite database to an older schema by hand, for the tests of what
an upgrade does: what each migration from 0014 on added, undone newest first, so that
opening the store runs them again. One list, kept beside the migrations it undoes."""

from __future__ import annotations

import sqlite3

__all__ = ["undo_migrations_after"]

_UNDO: dict[int, tuple[str, ...]] = {
    20: ("DROP TABLE chat_agents",),
    19: ("DROP TABLE sink_deliveries", "DROP TABLE sinks"),
    18: (
        "DROP TABLE budget_allowances",
        "ALTER TABLE chats DROP COLUMN budget_runs_per_week",
        "ALTER TABLE chats DROP COLUMN budget_tokens_per_week",
    ),
    17: (
        "DROP INDEX work_items_bundle_step",
        "ALTER TABLE work_items DROP COLUMN bundle_id",
        "ALTER TABLE work_items DROP COLUMN bundle_step",
        "DROP TABLE bundles",
    ),
    16: (
        "DROP INDEX runs_by_plan",
        "ALTER TABLE runs DROP COLUMN plan_run_id",
        "ALTER TABLE runs DROP COLUMN step",
    ),
    15: ("DROP TABLE event_runs", "DROP TABLE events"),
    14: (
        "ALTER TABLE runs DROP COLUMN summary",
        "ALTER TABLE runs DROP COLUMN outputs_url",
        "ALTER TABLE runs DROP COLUMN log_excerpt",
    ),
}


def undo_migrations_after(raw: sqlite3.Connection, version: int) -> None:
    """Undo what the migrations numbered above `version` (and from 14 on) added."""
    for number in sorted(_UNDO, reverse=True):
        if number > version:
            for statement in _UNDO[number]:
                raw.execute(statement)
