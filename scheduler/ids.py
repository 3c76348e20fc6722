"""Identifiers: ULIDs are short, URL-safe, sortable by creation time and never reused.

Generated here rather than through python-ulid's `str(ULID())`: a burst makes one id per
fire, and that path (generator lock, object, base-32 loop) cost ~4 µs each, about as
much as inserting the run. Same format and guarantees: 48-bit millisecond time, 80
random bits, Crockford base 32, strictly increasing within this process (as python-ulid's
default monotonic policy: the random part counts up within a millisecond).
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["new_id"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Two base-32 digits for each 10-bit value.
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_RANDOM_BITS = 80

_lock = threading.Lock()
_last_millis = -1
_last_random = 0
_prefix = ""  # the time digits of _last_millis


def new_id() -> str:
    global _last_millis, _last_random, _prefix
    millis = time.time_ns() // 1_000_000
    with _lock:
        if millis <= _last_millis:
            # The same millisecond (or the clock stepped back): count up.
            random = _last_random + 1
            if random >> _RANDOM_BITS:  # once in 2**80: carry into the next millisecond
                millis, random = _last_millis + 1, 0
            else:
                millis = _last_millis
        else:
            random = int.from_bytes(os.urandom(10), "big")
        if millis != _last_millis:
            # 48 bits of time as 10 digits: two zero bits on top, then 5 pairs of 10 bits.
            p = _PAIRS
            _prefix = (
                p[millis >> 40]
                + p[millis >> 30 & 1023]
                + p[millis >> 20 & 1023]
                + p[millis >> 10 & 1023]
                + p[millis & 1023]
            )
        _last_millis, _last_random = millis, random
        prefix = _prefix
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
