"""Reads behind /stats: the runs of one chat whose fire instant lies in a window."""

from __future__ import annotations

import json
from datetime import datetime

from scheduler.models import RunFigure, RunStatus, RunTrigger
from storage.codec import from_db_time, req_time, to_db_time
from storage.sql import Db, fetch_all

__all__ = ["run_figures"]


async def run_figures(db: Db, chat_id: int, since: datetime, until: datetime) -> list[RunFigure]:
    rows = await fetch_all(
        db,
        "SELECT schedule_id, status, trigger, scheduled_for, started_at, duration_ms,"
        " token_usage_json"
        " FROM runs WHERE chat_id = ? AND scheduled_for >= ? AND scheduled_for <= ?",
        (chat_id, to_db_time(since), to_db_time(until)),
    )
    return [
        RunFigure(
            schedule_id=r[0],
            status=RunStatus(r[1]),
            trigger=RunTrigger(r[2]),
            scheduled_for=req_time(r[3]),
            started_at=from_db_time(r[4]),
            duration_ms=r[5],
            tokens=_tokens(r[6]),
        )
        for r in rows
    ]


def _tokens(usage_json: str | None) -> int | None:
    """The run's total tokens: `total_tokens`, else prompt plus completion (an agent may
    report only those), else None."""
    if usage_json is None:
        return None
    usage = json.loads(usage_json)
    if not isinstance(usage, dict):
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int):
        return total
    parts = [usage.get(k) for k in ("prompt_tokens", "completion_tokens")]
    counted = [p for p in parts if isinstance(p, int)]
    return sum(counted) if counted else None
