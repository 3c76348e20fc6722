"""Says so in the log when the event loop stops running, and where it is stuck.

Everything in the process shares one event loop: the engine, Telegram polling, the
outbox, the HTTP API. Since the engine's transactions run in place on the loop's thread
(storage/one_trip.py), a disk that holds a `write()` (a stall of the host's storage)
holds all of them with it, and a blocked loop writes no log line of its own. A thread
that watches a heartbeat the loop sets can: one WARNING with the loop thread's stack
when the loop has not run for `threshold` seconds, one INFO when it runs again.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback

__all__ = ["LoopWatchdog"]

log = logging.getLogger("tickler.loop")


class LoopWatchdog:
    """Start it from a coroutine on the loop to watch, and stop it on that loop too (it
    cancels the loop's heartbeat timer)."""

    def __init__(self, *, threshold: float = 2.0, interval: float = 0.25) -> None:
        self._threshold = threshold
        self._interval = interval
        self._beat = time.monotonic()
        self._stopped = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._loop_thread_id = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread_id = threading.get_ident()
        self._heartbeat()
        threading.Thread(target=self._watch, name="loop-watchdog", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _heartbeat(self) -> None:
        self._beat = time.monotonic()
        if not self._stopped.is_set() and self._loop is not None:
            self._handle = self._loop.call_later(self._interval, self._heartbeat)

    def _watch(self) -> None:
        blocked_since: float | None = None
        while not self._stopped.wait(self._interval):
            beat = self._beat
            silent = time.monotonic() - beat
            if blocked_since is None and silent > self._threshold:
                blocked_since = beat
                log.warning(
                    "the event loop is blocked: the engine, Telegram and the HTTP API wait",
                    extra={"seconds": round(silent, 1), "stack": self._where()},
                )
            elif blocked_since is not None and beat > blocked_since:
                log.info(
                    "the event loop runs again",
                    extra={"seconds": round(beat - blocked_since, 1)},
                )
                blocked_since = None

    def _where(self) -> str:
        frame = sys._current_frames().get(self._loop_thread_id)
        return "".join(traceback.format_stack(frame)) if frame is not None else "(unknown)"
