"""Identifiers: ULIDs are short, URL-safe, sortable by creation time and never reused.

Generated here rather than through python-ulid's `str(ULID())`: a burst makes one id per
fire, and that path (generator lock, object, base-32 loop) cost about as much as
inserting the run. Same format and guarantees: 48-bit millisecond time, 80 random bits,
Crockford base 32, strictly increasing within this process (as python-ulid's default
monotonic policy: the random part counts up within a millisecond).

The core reads neither the clock nor the system's randomness: a `Ulids` generator is
given both, and the process installs one (`use_id_source`; adapters/ids.py makes the
system's) before anything asks for an id.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

__all__ = ["IdSource", "Ulids", "new_id", "use_id_source"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Two base-32 digits for each 10-bit value.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_RANDOM_BITS = 80


class IdSource(Protocol):
    def new_id(self) -> str:
        """A fresh id, greater than every earlier one from this source."""
        ...


class Ulids:
    """Monotonic ULIDs from `millis()` (milliseconds since the epoch) and `entropy(n)`
    (n random bytes)."""

    def __init__(self, millis: Callable[[], int], entropy: Callable[[int], bytes]) -> None:
        self._millis = millis
        self._entropy = entropy
        self._lock = threading.Lock()
        self._last_millis = -1
        self._last_random = 0
        self._prefix = ""  # the time digits of _last_millis

    def new_id(self) -> str:
        millis = self._millis()
        with self._lock:
            if millis <= self._last_millis:
                # The same millisecond (or the clock stepped back): count up.
                random = self._last_random + 1
                if random >> _RANDOM_BITS:  # once in 2**80: carry into the next millisecond
                    millis, random = self._last_millis + 1, 0
                else:
                    millis = self._last_millis
            else:
                random = int.from_bytes(self._entropy(10), "big")
            if millis != self._last_millis:
                # 48 bits of time as 10 digits: two zero bits on top, then 5 pairs of 10 bits.
                p = _PAIRS
                self._prefix = (
                    p[millis >> 40]
                    + p[millis >> 30 & 1023]
                    + p[millis >> 20 & 1023]
                    + p[millis >> 10 & 1023]
                    + p[millis & 1023]
                )
            self._last_millis, self._last_random = millis, random
            prefix = self._prefix
        p = _PAIRS
        return (
            prefix
            + p[random >> 70]
            + p[random >> 60 & 1023]
            + p[random >> 50 & 1023]
            + p[random >> 40 & 1023]
            + p[random >> 30 & 1023]
            + p[random >> 20 & 1023]
            + p[random >> 10 & 1023]
            + p[random & 1023]
        )


class _NotInstalled:
    def new_id(self) -> str:
        raise RuntimeError(
            "no id source installed: call scheduler.ids.use_id_source() at start-up "
            "(adapters.ids.install_system_ids() installs the system's)"
        )


_source: IdSource = _NotInstalled()


def use_id_source(source: IdSource) -> None:
    """Make `source` the one `new_id` asks, for the whole process."""
    global _source
    _source = source


def new_id() -> str:
    """A fresh id from the installed source."""
    return _source.new_id()
