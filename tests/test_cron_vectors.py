"""The worked cases of tests/data/cron_vectors.json, which the spec says we must reproduce.

The file is a copy of the spec's `shared/cron_vectors.json` (tests/data/README.md says
where it comes from); where the original is beside the repository, as in CI, the copy
must not have drifted from it.
"""

from __future__ import annotations

import json
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from scheduler.cron import CronExpression, load_zone
from scheduler.timeutil import format_utc

EXPECTED_MINIMUM = 37


VECTOR_FILE = Path(__file__).resolve().parent / "data" / "cron_vectors.json"
SHARED_ORIGINAL = Path(__file__).resolve().parents[2] / "shared" / "cron_vectors.json"


def _vectors() -> list[Any]:
    vectors = json.loads(VECTOR_FILE.read_text(encoding="utf-8"))
    return [
        pytest.param(vector, id=f"{vector['expr']} {vector['tz']} {vector['after']}")
        for vector in vectors
    ]


@pytest.mark.parametrize("vector", _vectors())
def test_vector(vector: dict[str, Any]) -> None:
    cron = CronExpression.parse(vector["expr"])
    after = datetime.fromisoformat(vector["after"])
    fires = islice(cron.iter_after(after, load_zone(vector["tz"])), len(vector["expected_next"]))
    assert [format_utc(fire) for fire in fires] == vector["expected_next"], vector["note"]


def test_vector_file_is_complete() -> None:
    vectors = json.loads(VECTOR_FILE.read_text(encoding="utf-8"))
    assert len(vectors) >= EXPECTED_MINIMUM
    assert all(len(vector["expected_next"]) == 5 for vector in vectors)


@pytest.mark.skipif(
    not SHARED_ORIGINAL.is_file(), reason="the spec's shared/ is not beside this clone"
)
def test_copy_matches_the_specs_original() -> None:
    assert VECTOR_FILE.read_bytes() == SHARED_ORIGINAL.read_bytes(), (
        "tests/data/cron_vectors.json differs from shared/cron_vectors.json: copy it again"
    )
