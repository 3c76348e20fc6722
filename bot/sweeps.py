"""Small loops beside the engine (the scheduler must not know the bot): the proposal
expiry sweep and the follow-up pings. Started by `start_services`, cancelled by `stop_services`.

Each sleeps on the injected clock until the instant its sweep asks for (at most
`MAX_SLEEP`, so work added meanwhile is noticed); with the FakeClock in tests,
advancing the clock wakes it. A failed sweep (a locked database) is logged and tried
again after `BACKOFF`; only cancellation ends the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from scheduler.clock import Clock

__all__ = ["BACKOFF", "MAX_SLEEP", "Sweep", "sweep_forever"]

log = logging.getLogger("tickler.sweeps")

MAX_SLEEP = timedelta(minutes=10)
BACKOFF = timedelta(seconds=30)

#: Does what is due at `now`; returns when it wants to run next (None: nothing known).
Sweep = Callable[[datetime], Awaitable[datetime | None]]


async def sweep_forever(
    sweep: Sweep, clock: Clock, *, what: str, wake: asyncio.Event | None = None
) -> None:
    """Until cancelled; `wake` set: sweep now, whatever the sweep asked for."""
    never = asyncio.Event()
    while True:
        if wake is not None:
            wake.clear()  # before the sweep: a wake during it makes the next one come at once
        now = clock.now()
        deadline = now + MAX_SLEEP
        try:
            wanted = await sweep(now)
            if wanted is not None and wanted > now:
                deadline = min(deadline, wanted)
        except Exception:
            log.exception("%s failed", what)
            deadline = now + BACKOFF
        await clock.sleep_until(deadline, wake or never)
