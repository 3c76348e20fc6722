"""Which asyncio event loop Tickler runs on.

uvloop when it is installed (it is a dependency everywhere but Windows): the engine's
burst throughput is bound by the CPU of one thread, and uvloop's C selector, callbacks
and timers are about a fifth of it (bench/RESULTS.md). Installed as the event loop
policy before anything creates a loop, so python-telegram-bot's `run_polling`, the
webhook server and the headless engine all get it.
"""

from __future__ import annotations

import asyncio

__all__ = ["install"]


def install() -> str:
    """Use uvloop for every loop created from now on, if it is installed; returns the
    name of the loop in use ("uvloop" or "asyncio")."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
