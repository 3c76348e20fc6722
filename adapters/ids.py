"""The system's id source: ULIDs from the wall clock and the OS's randomness."""

from __future__ import annotations

import os
import time

from scheduler.ids import Ulids, use_id_source

__all__ = ["install_system_ids", "system_ids"]


def _millis() -> int:
    return time.time_ns() // 1_000_000


def system_ids() -> Ulids:
    return Ulids(_millis, os.urandom)


_installed: Ulids | None = None


def install_system_ids() -> None:
    """Install the system's id source for the process, once (later calls keep it, so
    ids stay increasing)."""
    global _installed
    if _installed is None:
        _installed = system_ids()
        use_id_source(_installed)
