"""An agent's asynchronous result: a run it accepted with a 202 and reports on later
(`PATCH /api/v1/chats/{chat_id}/runs/{run_id}` or the `report_result` tool).

Checked here, once, before anything changes: the status, a short summary, an http(s)
link to what the agent produced and an excerpt of its log, each bounded. The engine
applies a checked report (`Engine.report_result`) as it would a synchronous answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from scheduler.errors import InvalidSchedule

__all__ = [
    "LOG_EXCERPT_LIMIT",
    "OUTPUTS_URL_LIMIT",
    "SUMMARY_LIMIT",
    "ResultReport",
    "check_report",
]

#: Characters of a reported summary: a line or two shown in the chat.
SUMMARY_LIMIT = 500
#: Characters of a reported link.
OUTPUTS_URL_LIMIT = 2000
#: Characters of a reported log excerpt: kept with the run, shown in its detail.
LOG_EXCERPT_LIMIT = 4000


@dataclass(frozen=True)
class ResultReport:
    """A checked report: `status` succeeded or failed, the rest optional."""

    status: Literal["succeeded", "failed"]
    summary: str | None = None
    outputs_url: str | None = None
    log_excerpt: str | None = None


def check_report(data: Any) -> ResultReport:
    """The report `data` (decoded JSON) describes, or InvalidSchedule with one sentence
    naming the field."""
    if not isinstance(data, dict):
        raise InvalidSchedule("The result must be a JSON object.")
    unknown = sorted(set(data) - {"status", "summary", "outputs_url", "log_excerpt"})
    if unknown:
        raise InvalidSchedule(f"Unknown field {unknown[0]!r} in the result.", field=unknown[0])
    status = data.get("status")
    if status not in ("succeeded", "failed"):
        raise InvalidSchedule("The status must be 'succeeded' or 'failed'.", field="status")
    summary = _text(data, "summary", SUMMARY_LIMIT)
    url = _text(data, "outputs_url", OUTPUTS_URL_LIMIT)
    if url is not None:
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.netloc
            or any(c.isspace() for c in url)
        ):
            raise InvalidSchedule(
                "The outputs_url must be an absolute http:// or https:// link.",
                field="outputs_url",
            )
    log_excerpt = _text(data, "log_excerpt", LOG_EXCERPT_LIMIT)
    return ResultReport(status, summary, url, log_excerpt)


def _text(data: dict[str, Any], key: str, limit: int) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidSchedule(f"The {key} must be a string.", field=key)
    value = value.strip()
    if len(value) > limit:
        raise InvalidSchedule(f"The {key} must be at most {limit} characters.", field=key)
    # An empty text says nothing: stored as absent.
    return value or None
