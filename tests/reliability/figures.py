"""Figures the reliability suite reports at the end of a run: how many crashes, faults
and inputs were tried, and what was lost or doubled (which must be 0).

Tests add to the shared tally with `tally.add("crashes survived", 1)`; the conftest
prints the table after the run and writes it as JSON, so `docs/reliability.md` can
quote the figures of a real run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

__all__ = ["FIGURE_ORDER", "Tally", "tally"]

# The figures the issue asks for come first, in this order; anything else a test adds
# follows alphabetically.
FIGURE_ORDER = (
    "crashes survived",
    "sigterm stops",
    "faults injected",
    "inputs tried",
    "runs checked",
    "runs lost",
    "runs doubled",
)


class Tally:
    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._notes: list[str] = []

    def add(self, figure: str, n: int = 1) -> None:
        self._counts[figure] += n

    def note(self, line: str) -> None:
        """A measured value that is not a count (a p99, a duration), printed as is."""
        self._notes.append(line)

    def __bool__(self) -> bool:
        return bool(self._counts or self._notes)

    def rows(self) -> list[tuple[str, int]]:
        for figure in ("runs lost", "runs doubled"):
            self._counts.setdefault(figure, 0)
        known = [(f, self._counts[f]) for f in FIGURE_ORDER if f in self._counts]
        rest = sorted((f, n) for f, n in self._counts.items() if f not in FIGURE_ORDER)
        return known + rest

    def render(self) -> str:
        width = max(len(f) for f, _ in self.rows())
        lines = [f"{f:<{width}}  {n:>8,}" for f, n in self.rows()]
        lines += self._notes
        return "\n".join(lines)

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {"figures": dict(self.rows()), "notes": self._notes}
        path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")


tally = Tally()
