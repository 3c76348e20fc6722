"""Whether the database takes writes: told to the operator once when writes start
failing and once when they work again, whichever database it is."""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["ReportsWriteHealth", "WriteHealth"]

log = logging.getLogger("tickler.storage")


class WriteHealth:
    def __init__(self, where: str) -> None:
        self.where = where
        #: Why the last write failed (one sentence for the operator: a lock held past
        #: the busy timeout, a full disk, a server down), until a write succeeds.
        self.write_failure: str | None = None
        self._failed_writes = 0
        #: Told the failure when writes start failing, and None when they work again
        #: (the bot alerts the admins); called inside the write, so it must not wait.
        self.on_write_health: Callable[[str | None], None] | None = None

    def wrote(self, changed: bool) -> None:
        # A transaction that changed nothing wrote nothing, so it proves nothing.
        if self._failed_writes and changed:
            log.warning(
                "The database %s is writable again after %d failed writes.",
                self.where,
                self._failed_writes,
            )
            self.write_failure, self._failed_writes = None, 0
            self._tell(None)

    def failed(self, failure: str) -> None:
        previous, self.write_failure = self.write_failure, failure
        self._failed_writes += 1
        if failure != previous:
            # Once per kind of failure, not once per retry: the engine retries often.
            log.error("%s Nothing is lost: due runs wait until it can be written.", failure)
        if previous is None:
            self._tell(failure)

    def _tell(self, failure: str | None) -> None:
        if self.on_write_health is None:
            return
        try:
            self.on_write_health(failure)
        except Exception:
            log.exception("reporting the database's health failed")


class ReportsWriteHealth:
    """A connection's `write_failure` and `on_write_health` (`storage.sql.Connection`),
    kept by its `health`."""

    health: WriteHealth

    @property
    def write_failure(self) -> str | None:
        return self.health.write_failure

    @property
    def on_write_health(self) -> Callable[[str | None], None] | None:
        return self.health.on_write_health

    @on_write_health.setter
    def on_write_health(self, tell: Callable[[str | None], None] | None) -> None:
        self.health.on_write_health = tell
