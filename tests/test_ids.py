"""Ids: the core's ULID generator, given its clock and randomness (scheduler/ids.py)."""

from __future__ import annotations

import re

from adapters.ids import system_ids
from scheduler.ids import Ulids, new_id

ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def test_an_id_is_a_ulid_of_its_millisecond_and_randomness() -> None:
    ids = Ulids(lambda: 1_795_503_600_000, lambda n: bytes(range(1, n + 1)))
    first = ids.new_id()
    assert ULID.fullmatch(first)
    # 48 bits of milliseconds, then the 80 random bits, as one 128-bit number in
    # Crockford base 32 (26 digits, most significant first).
    value = 1_795_503_600_000 << 80 | int.from_bytes(bytes(range(1, 11)), "big")
    digits = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    assert first == "".join(digits[value >> (5 * i) & 31] for i in reversed(range(26)))


def test_ids_increase_within_a_millisecond_and_when_the_clock_steps_back() -> None:
    now = [1_000]
    ids = Ulids(lambda: now[0], lambda n: b"\xff" * n)  # the random part at its top
    a, b = ids.new_id(), ids.new_id()  # counts up: carries into the next millisecond
    now[0] = 500
    c = ids.new_id()
    assert a < b < c


def test_the_installed_source_makes_sortable_ids() -> None:
    made = [new_id() for _ in range(1000)]
    assert all(ULID.fullmatch(i) for i in made)
    assert made == sorted(made) and len(set(made)) == len(made)
    assert system_ids().new_id() > made[0]
