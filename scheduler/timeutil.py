"""UTC instants at the edges: one text form out (`2026-03-08T07:00:00Z`), ISO-8601 in.

Inside Tickler every datetime is aware and in UTC; a naive datetime is a bug
waiting for a DST change, so parsing refuses one instead of guessing a zone.
"""

from __future__ import annotations

from datetime import UTC, datetime

from scheduler.errors import InvalidSchedule, shown

__all__ = ["format_utc", "parse_utc", "to_utc"]


def to_utc(dt: datetime) -> datetime:
    """`dt` (aware) as UTC; a naive datetime raises ValueError (a programming error)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt.isoformat()} where an aware one is required")
    return dt.astimezone(UTC)


def format_utc(dt: datetime) -> str:
    """`dt` (aware) as `YYYY-MM-DDTHH:MM:SSZ`, to the second."""
    return to_utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime:
    """An ISO-8601 instant with `Z` or an offset, as an aware UTC datetime.

    Raises InvalidSchedule (one sentence) for text that is not ISO-8601 or has no offset.
    """
    cleaned = text.strip()
    try:
        parsed = datetime.fromisoformat(cleaned)
    except ValueError:
        raise InvalidSchedule(
            f"'{shown(text)}' is not an ISO-8601 time: use a form like 2026-03-08T07:00:00Z "
            "or 2026-03-08T08:00:00+01:00."
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InvalidSchedule(
            f"The time '{shown(text)}' has no UTC offset: add Z or an offset, "
            "as in 2026-03-08T07:00:00Z or 2026-03-08T08:00:00+01:00."
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:00:00-05:00 is past the last instant Python can hold in UTC.
        raise InvalidSchedule(f"The time '{shown(text)}' is too far in the future.") from None
