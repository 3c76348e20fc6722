"""Identifiers: ULIDs are short, URL-safe, sortable by creation time and never reused."""

from __future__ import annotations

from ulid import ULID


def new_id() -> str:
    return str(ULID())
