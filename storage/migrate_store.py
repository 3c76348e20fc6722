"""Moving a stopped installation between two databases (`tickler migrate-store`): SQLite
to PostgreSQL or back, every row as it is stored.

The copy goes through the export format (storage/export.py), verbatim: the source is
exported into a private temporary folder in one read snapshot, imported into the
target in one transaction, and the target exported again. The copy is accepted when
each entity's count is the same in the source, in what the import inserted and in the
target, and when the two exports are the same bytes, file by file: ids, times, JSON,
counts, in one canonical form whichever database wrote it.

It refuses, before writing anything, a target that holds rows, and a source (or
target) that an engine still uses: an engine instance whose heartbeat is recent and
that never said it stopped (`--force` when that engine is known to be gone, e.g. a
killed process whose row could not be updated).
"""

from __future__ import annotations

import asyncio
import filecmp
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from storage.codec import to_db_time
from storage.export import ENTITIES, MANIFEST, export_database, import_export
from storage.locations import Location, is_postgres, shown, snapshot
from storage.sql import fetch_all

__all__ = [
    "LIVE_WITHIN",
    "MigrationFailed",
    "MigrationRefused",
    "Moved",
    "live_engines",
    "migrate_store",
    "parse_location",
]

#: An engine that wrote a heartbeat this recently (it writes one every 15 s) and did
#: not record a stop is taken to be running.
LIVE_WITHIN = timedelta(minutes=1)


class MigrationRefused(ValueError):
    """Nothing was written: the source or the target cannot be used as they are; the
    message is the sentence to show."""


class MigrationFailed(RuntimeError):
    """The copy was written but does not match the source; the message says what differs
    and what to do."""


@dataclass
class Moved:
    source: str
    target: str
    #: Rows per entity: the source's export, the import's inserts, the target's export.
    counts: dict[str, int]
    files: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        rows = ", ".join(f"{count} {name}" for name, count in self.counts.items())
        phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.timings.items())
        return (
            f"Moved {self.source} to {self.target} in {self.seconds:.1f} s ({rows}); every "
            f"count matches and the two exports are byte-identical ({self.files} files). "
            f"Time: {phases}."
        )


def parse_location(text: str) -> Location:
    """`--from`/`--to`: a PostgreSQL URL as it is; a SQLite file as a plain path, or as
    `sqlite:///relative/path` or `sqlite:////absolute/path` (SQLAlchemy's spelling: the
    path is what follows the third slash). Raises MigrationRefused for anything else."""
    if is_postgres(text):
        return text
    if text.startswith("sqlite:"):
        rest = text.removeprefix("sqlite:")
        if not rest.startswith("///") or len(rest) == 3:
            raise MigrationRefused(
                f"{text} is not a SQLite URL: write sqlite:///relative/path, "
                "sqlite:////absolute/path or the file's path."
            )
        return Path(rest[3:])
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise MigrationRefused(
            f"{scheme}:// is not a database Tickler uses: give a SQLite file (a path or "
            "sqlite:///path) or a postgresql:// URL."
        )
    return Path(text)


async def live_engines(where: Location, now: datetime) -> list[str]:
    """The engines that seem to run on the database at `where`: `host pid N` each."""
    async with snapshot(where) as db:
        rows = await fetch_all(
            db,
            "SELECT host, pid FROM engine_instances WHERE stopped_at IS NULL "
            "AND heartbeat_at >= ? ORDER BY heartbeat_at DESC",
            (to_db_time(now - LIVE_WITHIN),),
        )
    return [f"{row[0]} pid {row[1]}" for row in rows]


async def _rows(where: Location) -> int:
    async with snapshot(where) as db:
        total = 0
        for entity in ENTITIES:
            [row] = await fetch_all(db, f"SELECT COUNT(*) FROM {entity.name}")
            total += int(row[0])
    return total


def _same_place(a: Location, b: Location) -> bool:
    if is_postgres(a) or is_postgres(b):
        return str(a) == str(b)
    return Path(a).resolve() == Path(b).resolve()


async def migrate_store(
    source: Location, target: Location, *, now: datetime, force: bool = False
) -> Moved:
    """Copy every row of `source` into the empty `target` and prove the copy (see the
    module's docstring). Raises MigrationRefused (nothing written) or MigrationFailed."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    if _same_place(source, target):
        raise MigrationRefused("--from and --to name the same database; name two.")
    missing = await asyncio.to_thread(_missing, source)
    if missing:
        raise MigrationRefused(missing)
    for side, where in (("source", source), ("target", target)):
        if not is_postgres(where):
            Path(where).parent.mkdir(parents=True, exist_ok=True)
        engines = await live_engines(where, now)
        if engines and not force:
            raise MigrationRefused(
                f"Tickler seems to be running on the {side} {shown(where)} (an engine on "
                f"{engines[0]} wrote a heartbeat within the last minute): stop every "
                "replica first, or add --force if it is gone."
            )
    if await _rows(target):
        raise MigrationRefused(
            f"The target {shown(target)} is not empty; migrate into a new, empty database."
        )
    with tempfile.TemporaryDirectory(prefix="tickler-migrate-") as folder:
        before, after = Path(folder, "source"), Path(folder, "target")
        mark = time.perf_counter()
        exported = await export_database(source, before, verbatim=True)
        timings["export"] = time.perf_counter() - mark
        mark = time.perf_counter()
        try:
            inserted = await import_export(before, target, verbatim=True)
        except ValueError as exc:
            raise MigrationFailed(f"{exc} Nothing was written to {shown(target)}.") from None
        timings["import"] = time.perf_counter() - mark
        mark = time.perf_counter()
        copied = await export_database(target, after, verbatim=True)
        timings["export of the copy"] = time.perf_counter() - mark
        for name, count in exported.items():
            if inserted.get(name) != count or copied.get(name) != count:
                raise MigrationFailed(
                    f"The copy in {shown(target)} does not match: {name} has {count} rows "
                    f"in the source, {inserted.get(name)} were inserted and the target has "
                    f"{copied.get(name)}; keep using the source and drop the target."
                )
        names, differ = await asyncio.to_thread(_compare, before, after)
        if differ:
            raise MigrationFailed(
                f"The copy in {shown(target)} differs from the source in {differ[0]} "
                f"({len(differ)} file{'s' if len(differ) != 1 else ''} differ); keep using "
                "the source and drop the target."
            )
    return Moved(
        source=_display(source),
        target=_display(target),
        counts=exported,
        files=len(names),
        seconds=time.perf_counter() - started,
        timings=timings,
    )


def _display(where: Location) -> str:
    return shown(where) if is_postgres(where) else str(Path(where).resolve())


def _missing(source: Location) -> str | None:
    """Why the source cannot be read: a SQLite file that is not there."""
    if is_postgres(source) or Path(source).is_file():
        return None
    hint = ""
    if not Path(source).is_absolute() and Path("/", source).is_file():
        hint = f" (for /{source} write sqlite:////{source}, with four slashes)"
    return f"There is no database at {source}{hint}."


def _compare(before: Path, after: Path) -> tuple[list[str], list[str]]:
    """The export's file names, and those whose bytes differ between the two exports
    (one missing on either side differs too); the manifest first: a count that differs
    is the clearest thing to report."""
    names = sorted({p.name for p in before.iterdir()} | {p.name for p in after.iterdir()})
    names.sort(key=lambda name: name != MANIFEST)
    differ = [
        n
        for n in names
        if not (before / n).is_file()
        or not (after / n).is_file()
        or not filecmp.cmp(before / n, after / n, shallow=False)
    ]
    return names, differ
