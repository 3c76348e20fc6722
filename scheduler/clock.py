"""The clock protocol. The engine and the services read time only through it, so tests
can span days without sleeping; the implementations are adapters (adapters/clocks.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Protocol

__all__ = ["Clock"]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never go back, for how long something
        took (a run's duration); unaffected by a step of the wall clock."""

    async def sleep_until(self, deadline: datetime, wake: asyncio.Event) -> None:
        """Return at `deadline` or as soon as `wake` is set, whichever comes first."""
