"""Online backup: a consistent copy of a live database, via SQLite's backup API."""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from storage.database import BUSY_TIMEOUT_MS
from storage.sql import fetch_one


async def backup_database(source: Path, target: Path) -> int:
    """Copy `source` to `target` while other connections keep writing; returns the
    number of pages copied. The copy is checked before returning."""
    async with aiosqlite.connect(str(source)) as src, aiosqlite.connect(str(target)) as dst:
        await src.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await src.backup(dst)
        row = await fetch_one(dst, "PRAGMA integrity_check")
        if row is None or row[0] != "ok":
            raise RuntimeError(f"The backup at {target} failed its integrity check.")
        pages = await fetch_one(dst, "PRAGMA page_count")
    return int(pages[0]) if pages else 0
