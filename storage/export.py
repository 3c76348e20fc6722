"""Export, validate and import: the database as JSONL files a person (or jq) can read.

One file per entity, one JSON object per line, in id (or seq) order, so two exports of
the same database are byte-identical. Times are UTC ISO-8601 with `Z`, microseconds
only when non-zero; JSON columns are nested objects; engine instances are operational
state and are left out. `manifest.json` records the format and schema versions and the
count of each file.

An export for people (the CLI's, /export) leaves credentials out (storage/export_secrets.py).
A `verbatim` one, for moving an installation between two databases (`tickler
migrate-store`), carries every value as it is stored, whatever it looks like: it is
written to a private temporary folder and imported at once, and scrubbing it would
change the data (a prompt that quotes an API key, a header named `token`).
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scheduler.models import RunStatus
from storage.database import SCHEMA_VERSION, backfill_statement
from storage.export_checks import bundle_problems, row_problems, valid_time
from storage.export_secrets import Scrubber, secret_problems
from storage.locations import Location, exclusive, is_constraint_error, shown, snapshot
from storage.runs import ALL_ATTEMPTS, DERIVED_ATTEMPT
from storage.schedules import NUMBER_UNNUMBERED_SQL
from storage.sql import Db, Row, fetch_all

#: The schema version that began storing why a run was skipped (migration 0013).
_SKIP_REASONS_SINCE = 13
#: What migrations 0012 and 0013 did to a database's older rows, done to an older
#: export's rows on import: a paused schedule without a kind takes the one its reason
#: meant; a skipped or cancelled run (of an export made before 0013) the reason its
#: sentence meant.
_KIND_UNKINDED_SQL = backfill_statement(12, "pause_kind IS NULL")
_REASON_UNREASONED_SQL = backfill_statement(_SKIP_REASONS_SINCE, "skip_reason IS NULL")

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "export_chat",
    "export_chat_zip",
    "export_database",
    "export_files",
    "import_export",
    "validate_export",
]

FORMAT = "tickler-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"

_DB_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class _Verbatim(Scrubber):
    """Leaves every value as it is (a verbatim export)."""

    def value(self, value: Any) -> Any:
        return value


@dataclass(frozen=True)
class _Field:
    column: str
    key: str
    #: plain | time | json | bool | count (a tally: absent means 0) | secret (left out of
    #: an export for people, so absent means none)
    kind: str = "plain"
    #: What the export reads instead of the column, when not the column itself.
    read: str | None = None


def _f(column: str, kind: str = "plain", key: str | None = None, read: str | None = None) -> _Field:
    if key is None:
        key = column.removesuffix("_json") if kind == "json" else column
    return _Field(column, key, kind, read)


@dataclass(frozen=True)
class _Entity:
    name: str  # the file is <name>.jsonl; the table has the same name
    id_key: str
    fields: tuple[_Field, ...]
    #: What the export reads the rows from, when not the table itself.
    source: str | None = None
    #: The export's order, when not `id_key`.
    order: str | None = None

    @property
    def file(self) -> str:
        return f"{self.name}.jsonl"


ENTITIES: tuple[_Entity, ...] = (
    _Entity(
        "chats",
        "chat_id",
        (
            _f("chat_id"),
            _f("timezone"),
            _f("blocked_at", "time"),
            _f("block_reason"),
            _f("created_at", "time"),
            _f("updated_at", "time"),
            _f("budget_runs_per_week"),
            _f("budget_tokens_per_week"),
        ),
    ),
    _Entity(
        "schedules",
        "id",
        (
            _f("id"),
            _f("chat_id"),
            _f("name"),
            _f("description"),
            _f("trigger_json", "json"),
            _f("action_json", "json"),
            _f("policies_json", "json"),
            _f("owner_id"),
            _f("owner_name"),
            _f("enabled", "bool"),
            _f("paused_by"),
            _f("pause_reason"),
            _f("next_run_at", "time"),
            _f("last_run_at", "time"),
            _f("consecutive_failures"),
            _f("tripped", "bool"),
            _f("created_by"),
            _f("created_at", "time"),
            _f("updated_at", "time"),
            _f("archived_at", "time"),
            _f("number"),
            _f("pause_kind"),
        ),
    ),
    _Entity(
        "runs",
        "id",
        (
            _f("id"),
            _f("schedule_id"),
            _f("chat_id"),
            _f("scheduled_for", "time"),
            _f("trigger"),
            _f("status"),
            _f("attempt"),
            _f("next_attempt_at", "time"),
            _f("started_at", "time"),
            _f("finished_at", "time"),
            _f("duration_ms"),
            _f("output"),
            _f("error"),
            _f("token_usage_json", "json", key="usage"),
            # A run's owner is the engine running it. A succeeded run whose one attempt
            # is derived (storage/runs.py, DERIVED_ATTEMPT) keeps that attempt's owner,
            # which run_attempts.jsonl shows, as it did when the row was written.
            _f("owner", read="CASE WHEN status = 'succeeded' THEN NULL ELSE owner END"),
            _f("created_at", "time"),
            _f("updated_at", "time"),
            _f("skip_reason"),
            _f("interruptions", "count"),
            _f("summary"),
            _f("outputs_url"),
            _f("log_excerpt"),
            _f("plan_run_id"),
            _f("step"),
        ),
    ),
    _Entity(
        "run_attempts",
        "seq",
        (
            _f("seq"),
            _f("run_id"),
            _f("attempt"),
            _f("owner"),
            _f("started_at", "time"),
            _f("finished_at", "time"),
            _f("status"),
            _f("error"),
        ),
        # The rows written, in seq order, then the derived first attempts (no seq: a
        # run's one attempt, read from its run; import writes it back onto the run).
        source=ALL_ATTEMPTS,
        order="seq IS NULL, seq, run_id",
    ),
    _Entity(
        "events",
        "id",
        (
            _f("id"),
            _f("caller"),
            _f("name"),
            _f("idempotency_key"),
            _f("payload_json", "json"),
            _f("received_at", "time"),
        ),
    ),
    _Entity("event_runs", "run_id", (_f("run_id"), _f("event_id"))),
    _Entity(
        "proposals",
        "id",
        (
            _f("id"),
            _f("chat_id"),
            _f("request_json", "json"),
            _f("tier"),
            _f("status"),
            _f("schedule_id"),
            _f("proposed_by"),
            _f("decided_by"),
            _f("decided_at", "time"),
            _f("expires_at", "time"),
            _f("refusal"),
            _f("created_at", "time"),
        ),
    ),
    _Entity(
        "bundles",
        "id",
        (
            _f("id"),
            _f("chat_id"),
            _f("template_id"),
            _f("anchor_date"),
            _f("title"),
            _f("snapshot_json", "json"),
            _f("status"),
            _f("error"),
            _f("created_at", "time"),
            _f("updated_at", "time"),
            _f("completed_at", "time"),
        ),
    ),
    _Entity(
        "work_items",
        "id",
        (
            _f("id"),
            _f("chat_id"),
            _f("title"),
            _f("instructions"),
            _f("due_at", "time"),
            _f("assignee"),
            _f("schedule_id"),
            _f("fire_date"),
            _f("proof"),
            _f("proof_value"),
            _f("status"),
            _f("waiting_for"),
            _f("follow_up_at", "time"),
            _f("pinged_at", "time"),
            _f("created_at", "time"),
            _f("updated_at", "time"),
            _f("bundle_id"),
            _f("bundle_step"),
        ),
    ),
    _Entity(
        "work_item_history",
        "seq",
        (
            _f("seq"),
            _f("item_id"),
            _f("at", "time"),
            _f("actor"),
            _f("action"),
            _f("note"),
        ),
    ),
    _Entity(
        "notifications",
        "id",
        (
            _f("id"),
            _f("chat_id"),
            _f("kind"),
            _f("text"),
            _f("parse_mode"),
            _f("reply_markup_json", "json"),
            _f("run_id"),
            _f("schedule_id"),
            _f("proposal_id"),
            _f("item_id"),
            _f("status"),
            _f("attempts"),
            _f("next_attempt_at", "time"),
            _f("created_at", "time"),
            _f("sent_at", "time"),
            _f("message_id"),
            _f("last_error"),
        ),
    ),
    # A chat's own agent (/agent). Its `secret` is a credential by name: an export for
    # people leaves it out (storage/export_secrets.py); a verbatim one (migrate-store)
    # carries it.
    _Entity(
        "chat_agents",
        "chat_id",
        (
            _f("chat_id"),
            _f("url"),
            _f("mode"),
            _f("secret", "secret"),
            _f("model"),
            _f("updated_at", "time"),
        ),
    ),
    # A chat's notification sinks; the webhook's signing key or Slack URL (`secret`)
    # only in a verbatim export: one for people leaves it out, and an imported webhook
    # or Slack sink without it fails until it is added again.
    _Entity(
        "sinks",
        "id",
        (
            _f("id"),
            _f("chat_id"),
            _f("kind"),
            _f("target"),
            _f("secret", "secret"),
            _f("events"),
            _f("status"),
            _f("failing_since", "time"),
            _f("last_error"),
            _f("created_by"),
            _f("created_at", "time"),
        ),
    ),
)
_BY_NAME = {e.name: e for e in ENTITIES}
#: Files added after format 1 first shipped: an older export without them has none.
_OPTIONAL = frozenset(
    {
        "work_items",
        "work_item_history",
        "notifications",
        "events",
        "event_runs",
        "bundles",
        "chat_agents",
        "sinks",
    }
)

#: (file, key, target file): each reference that must resolve (whether it may be empty
#: is the schema's business: storage/export_checks.py).
_REFERENCES = (
    ("runs", "schedule_id", "schedules"),
    ("run_attempts", "run_id", "runs"),
    ("event_runs", "run_id", "runs"),
    ("event_runs", "event_id", "events"),
    ("proposals", "schedule_id", "schedules"),
    ("work_items", "schedule_id", "schedules"),
    ("bundles", "template_id", "schedules"),
    ("work_items", "bundle_id", "bundles"),
    ("work_item_history", "item_id", "work_items"),
    ("notifications", "run_id", "runs"),
    ("notifications", "schedule_id", "schedules"),
    ("notifications", "proposal_id", "proposals"),
    ("notifications", "item_id", "work_items"),
)

#: (file, keys): rows that must differ in at least one of the keys (the schema's UNIQUE).
_UNIQUE_TOGETHER = (
    ("runs", ("schedule_id", "scheduled_for")),
    ("work_items", ("schedule_id", "fire_date")),
    ("work_items", ("bundle_id", "bundle_step")),
    ("bundles", ("template_id", "anchor_date")),
    ("events", ("caller", "idempotency_key")),
)

#: Per-chat filters for export_files(chat_id=...): runs and attempts via their schedule.
_CHAT_FILTERS = {
    "chats": "chat_id = :chat",
    "schedules": "chat_id = :chat",
    "runs": "schedule_id IN (SELECT id FROM schedules WHERE chat_id = :chat)",
    "run_attempts": "run_id IN (SELECT r.id FROM runs r JOIN schedules s "
    "ON s.id = r.schedule_id WHERE s.chat_id = :chat)",
    # An event is the chat's when it fired one of the chat's runs (an API event reaches
    # every chat the token may address; each chat's export carries it).
    "events": "id IN (SELECT e.event_id FROM event_runs e JOIN runs r ON r.id = e.run_id "
    "JOIN schedules s ON s.id = r.schedule_id WHERE s.chat_id = :chat)",
    "event_runs": "run_id IN (SELECT r.id FROM runs r JOIN schedules s "
    "ON s.id = r.schedule_id WHERE s.chat_id = :chat)",
    "proposals": "chat_id = :chat",
    "bundles": "chat_id = :chat",
    "work_items": "chat_id = :chat",
    "work_item_history": "item_id IN (SELECT id FROM work_items WHERE chat_id = :chat)",
    "notifications": "chat_id = :chat",
    "chat_agents": "chat_id = :chat",
    "sinks": "chat_id = :chat",
}


# --- encoding ------------------------------------------------------------------------------
def _export_time(text: str) -> str:
    instant = datetime.fromisoformat(text).astimezone(UTC)
    if instant.microsecond:
        return instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def _import_time(text: str) -> str:
    # An export's times are UTC with `Z` (validate_export checked each), so the stored
    # form is the text itself, with microseconds added when it has none: no parsing for
    # each of the hundreds of thousands of times a large import holds.
    if len(text) == 27 and text[19] == "." and text[26] == "Z":
        return text
    if len(text) == 20 and text[19] == "Z":
        return f"{text[:19]}.000000Z"
    return datetime.fromisoformat(text).astimezone(UTC).strftime(_DB_TIME_FORMAT)


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _encode(entity: _Entity, row: Row, scrub: Scrubber) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in entity.fields:
        value = row[field.column]
        if field.kind == "secret" and not isinstance(scrub, _Verbatim):
            continue  # a credential: only a verbatim export (migrate-store) carries it
        if value is None:
            out[field.key] = None
        elif isinstance(value, bytes):
            raise ValueError(f"Refusing to export binary data in {entity.name}.{field.column}.")
        elif field.kind == "time":
            out[field.key] = _export_time(value)
        elif field.kind == "json":
            out[field.key] = scrub.value(json.loads(value))
        elif field.kind == "bool":
            out[field.key] = bool(value)
        else:
            out[field.key] = scrub.value(value)
    return out


def _decode(entity: _Entity, item: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for field in entity.fields:
        value = item.get(field.key)
        if value is None:
            # An export made before a tally existed counts none.
            params[field.column] = 0 if field.kind == "count" else None
        elif field.kind == "time":
            params[field.column] = _import_time(value)
        elif field.kind == "json":
            params[field.column] = json.dumps(value, ensure_ascii=False, sort_keys=True)
        elif field.kind == "bool":
            params[field.column] = 1 if value else 0
        else:
            params[field.column] = value
    return params


# --- export --------------------------------------------------------------------------------
async def export_files(
    db: Db,
    *,
    chat_id: int | None = None,
    secrets: Iterable[str | None] = (),
    verbatim: bool = False,
) -> dict[str, bytes]:
    """Every export file's bytes, by file name (manifest included); only `chat_id`'s
    rows when given. Credentials (`secrets`, the configured ones, and any value or key
    that looks like one: storage/export_secrets.py) are left out, unless `verbatim`."""
    scrub = _Verbatim() if verbatim else Scrubber(secrets)
    files: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    for entity in ENTITIES:
        columns = ", ".join(
            f.column if f.read is None else f"{f.read} AS {f.column}" for f in entity.fields
        )
        where = f" WHERE {_CHAT_FILTERS[entity.name]}" if chat_id is not None else ""
        source = entity.name if entity.source is None else f"{entity.source} AS {entity.name}"
        order = entity.order or entity.id_key
        sql = f"SELECT {columns} FROM {source}{where} ORDER BY {order}"
        rows = await fetch_all(db, sql, {"chat": chat_id} if chat_id is not None else ())
        lines = [_dump(_encode(entity, row, scrub)) + "\n" for row in rows]
        files[entity.file] = "".join(lines).encode("utf-8")
        counts[entity.name] = len(rows)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "counts": counts,
    }
    files[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    return files


async def export_database(
    where: Location,
    out_dir: str | Path,
    *,
    secrets: Iterable[str | None] = (),
    verbatim: bool = False,
) -> dict[str, int]:
    """Write the export of the database at `where` (a SQLite file or a PostgreSQL URL)
    into `out_dir` (created if need be), without `secrets` (with every value as stored
    when `verbatim`); returns the row count of each entity."""
    async with snapshot(where) as db:  # one snapshot for every file
        files = await export_files(db, secrets=secrets, verbatim=verbatim)
    await asyncio.to_thread(_write_files, Path(out_dir), files)
    counts: dict[str, int] = json.loads(files[MANIFEST])["counts"]
    return counts


def _write_files(target: Path, files: dict[str, bytes]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (target / name).write_bytes(data)


async def export_chat(
    where: Location, chat_id: int, *, secrets: Iterable[str | None] = ()
) -> bytes:
    """`export_chat_zip` on a connection of its own: one read snapshot, without holding
    the store's connection."""
    async with snapshot(where) as db:
        return await export_chat_zip(db, chat_id, secrets=secrets)


async def export_chat_zip(db: Db, chat_id: int, *, secrets: Iterable[str | None] = ()) -> bytes:
    """One chat's export as a zip archive (fixed timestamps: same data, same bytes)."""
    files = await export_files(db, chat_id=chat_id, secrets=secrets)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    return buffer.getvalue()


# --- validation ----------------------------------------------------------------------------
def _read_lines(path: Path, problems: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """The file's rows with their line numbers (from 1); a line that is not a UTF-8 JSON
    object is a problem instead."""
    items: list[tuple[int, dict[str, Any]]] = []
    if not path.is_file():
        problems.append(f"{path.name}: missing.")
        return items
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{path.name}:{number}: not UTF-8 text.")
            continue
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):
            problems.append(f"{path.name}:{number}: not a JSON object.")
            continue
        if not isinstance(item, dict):
            problems.append(f"{path.name}:{number}: not a JSON object.")
            continue
        items.append((number, item))
    return items


#: An export's rows as read: by entity, (line number, row) each.
_Rows = dict[str, list[tuple[int, dict[str, Any]]]]


def validate_export(directory: str | Path, *, verbatim: bool = False) -> list[str]:
    """The problems with the export in `directory`, one sentence each; empty when it is
    sound. A `verbatim` export may carry credentials (they are not problems there)."""
    return _validated(Path(directory), verbatim)[0]


def _validated(root: Path, verbatim: bool) -> tuple[list[str], _Rows]:
    """`validate_export`'s problems, and the rows it read (what an import writes)."""
    problems: list[str] = []
    data: _Rows = {}
    ids: dict[str, set[Any]] = {}
    for entity in ENTITIES:
        path = root / entity.file
        if entity.name in _OPTIONAL and not path.exists():
            items: list[tuple[int, dict[str, Any]]] = []
        else:
            items = _read_lines(path, problems)
        data[entity.name] = items
        seen: set[Any] = set()
        fields = [(f.column, f.key, f.kind) for f in entity.fields]
        for number, item in items:
            where = f"{entity.file}:{number}"
            ident = item.get(entity.id_key)
            if ident is None and entity.name == "run_attempts":
                pass  # a derived first attempt: _derived_problems
            elif ident is None:
                problems.append(f"{where}: no {entity.id_key}.")
            elif isinstance(ident, str | int) and ident in seen:
                problems.append(f"{where}: duplicate {entity.id_key} {ident!r}.")
            if isinstance(ident, str | int):
                seen.add(ident)
            problems.extend(
                p
                for p in row_problems(entity.name, fields, item, where)
                if not p.endswith(f": no {entity.id_key}.")
            )
            if not verbatim:
                problems.extend(f"{where}: {what}." for what in secret_problems(item))
        ids[entity.name] = seen
    for name, key, target in _REFERENCES:
        for number, item in data[name]:
            ref = item.get(key)
            if ref is None or not isinstance(ref, str | int):
                continue  # missing or mistyped: row_problems said so
            if ref not in ids[target]:
                problems.append(
                    f"{name}.jsonl:{number}: {key} {ref!r} does not match any of {target}."
                )
    for name, keys in _UNIQUE_TOGETHER:
        problems.extend(_repeats(name, keys, data[name]))
    problems.extend(_plan_problems(data["runs"]))
    problems.extend(_derived_problems(data["runs"], data["run_attempts"]))
    problems.extend(bundle_problems(data))
    # Lines, not rows read: a line that could not be read is reported once, above.
    lines = {e.name: _line_count(root / e.file) for e in ENTITIES}
    problems.extend(_manifest_problems(root, lines))
    return problems, data


def _plan_problems(items: list[tuple[int, dict[str, Any]]]) -> list[str]:
    """A plan's step runs (runs.jsonl's `plan_run_id` and `step`): both or neither, and
    each names a plan run (step 0's run, whose id it is) of the same schedule."""
    # A plan run is a run that is no later step: step 0, or (a fire written without the
    # plan fields, such as a missed fire run later by the operator) none.
    first_steps = {
        item.get("id"): item.get("schedule_id")
        for _, item in items
        if (item.get("step") == 0 and item.get("plan_run_id") == item.get("id"))
        or (item.get("step") is None and item.get("plan_run_id") is None)
    }
    problems: list[str] = []
    for number, item in items:
        where = f"runs.jsonl:{number}"
        plan, step = item.get("plan_run_id"), item.get("step")
        if plan is None and step is None:
            continue
        if plan is None or step is None:
            problems.append(f"{where}: a plan's step run needs both plan_run_id and step.")
        elif not isinstance(step, int) or isinstance(step, bool) or step < 0:
            problems.append(f"{where}: step must be 0 or more.")
        elif step == 0 and plan != item.get("id"):
            problems.append(f"{where}: step 0 of a plan run must be the plan run itself.")
        elif plan not in first_steps:
            # Retention deletes a plan run's steps with it (storage/retention.py).
            problems.append(f"{where}: plan_run_id {plan!r} does not match any plan run.")
        elif first_steps[plan] != item.get("schedule_id"):
            problems.append(f"{where}: plan_run_id {plan!r} is a plan run of another schedule.")
    return problems


_RUN_STATUSES = frozenset(s.value for s in RunStatus)


def _derived_problems(
    runs: list[tuple[int, dict[str, Any]]], attempts: list[tuple[int, dict[str, Any]]]
) -> list[str]:
    """A run_attempts row without seq is a succeeded run's first attempt, read from the
    run (storage/runs.py, DERIVED_ATTEMPT): it must be its succeeded run's only attempt,
    and agree with the run."""
    by_id = {item.get("id"): item for _, item in runs}
    rows_of: dict[Any, int] = {}
    for _, item in attempts:
        rows_of[item.get("run_id")] = rows_of.get(item.get("run_id"), 0) + 1
    problems: list[str] = []
    for number, item in attempts:
        if item.get("seq") is not None:
            continue
        where = f"run_attempts.jsonl:{number}"
        run = by_id.get(item.get("run_id"))
        if run is None or run.get("status") not in _RUN_STATUSES:
            continue  # the reference check, or the run's own, said so
        if rows_of[item.get("run_id")] > 1:
            problems.append(f"{where}: no seq, but its run has other attempts.")
        elif item.get("status") != "succeeded" or run.get("status") != "succeeded":
            problems.append(f"{where}: no seq, but it is no succeeded run's first attempt.")
        elif any(
            item.get(k) != run.get(k)
            for k in ("attempt", "started_at", "finished_at")
            # a malformed time is reported once, by row_problems
            if not isinstance(item.get(k), str) or valid_time(item[k])
        ):
            problems.append(f"{where}: no seq, but it differs from its run.")
        elif item.get("owner") is None or item.get("error") is not None:
            problems.append(f"{where}: no seq, but no owner, or an error.")
    return problems


def _repeats(
    name: str, keys: tuple[str, ...], items: list[tuple[int, dict[str, Any]]]
) -> list[str]:
    first: dict[tuple[str, ...], int] = {}
    problems: list[str] = []
    for number, item in items:
        values = tuple(item.get(key) for key in keys)
        if any(v is None for v in values):
            continue  # SQLite lets NULLs repeat; a missing required key is reported above
        key = tuple(json.dumps(v) for v in values)
        if key in first:
            problems.append(
                f"{name}.jsonl:{number}: the same {' and '.join(keys)} as line {first[key]}."
            )
        first.setdefault(key, number)
    return problems


def _line_count(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.is_file() else 0


def _manifest_problems(root: Path, counts: dict[str, int]) -> list[str]:
    path = root / MANIFEST
    if not path.is_file():
        return [f"{MANIFEST}: missing."]
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError):
        return [f"{MANIFEST}: not JSON in UTF-8."]
    if not isinstance(manifest, dict):
        return [f"{MANIFEST}: not a JSON object."]
    problems: list[str] = []
    if manifest.get("format") != FORMAT:
        problems.append(f"{MANIFEST}: format is not {FORMAT!r}.")
    if manifest.get("format_version") != FORMAT_VERSION:
        problems.append(f"{MANIFEST}: format_version is not {FORMAT_VERSION}.")
    schema = manifest.get("schema_version")
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        problems.append(f"{MANIFEST}: schema_version {schema!r} is not one this Tickler reads.")
    listed = manifest.get("counts")
    if not isinstance(listed, dict):
        return [*problems, f"{MANIFEST}: no counts."]
    for name, count in counts.items():
        if name in _OPTIONAL and name not in listed and count == 0:
            continue
        if listed.get(name) != count:
            problems.append(
                f"{MANIFEST}: counts {name} is {listed.get(name)!r} but the file has {count}."
            )
    problems.extend(f"{MANIFEST}: {what}." for what in secret_problems(manifest))
    return problems


# --- import --------------------------------------------------------------------------------
async def _row_count(db: Db) -> int:
    total = 0
    for entity in ENTITIES:
        rows = await fetch_all(db, f"SELECT COUNT(*) FROM {entity.name}")
        total += int(rows[0][0])
    return total


#: Rows written with one executemany: a round trip (PostgreSQL) or a hop to SQLite's
#: thread each, instead of one per row.
_IMPORT_BATCH = 500


async def _insert(
    db: Db, sql: str, batch: list[tuple[int, dict[str, Any]]], root: str, file: str
) -> int:
    """Write a batch of rows (line number, parameters); how many were inserted. A row
    the database refuses is named by its line: the batch is undone (to its savepoint)
    and written again a row at a time up to it."""
    await db.execute("SAVEPOINT import_batch")
    try:
        cur = await db.executemany(sql, [params for _, params in batch])
    except Exception as exc:
        if not is_constraint_error(exc):
            raise
        await db.execute("ROLLBACK TO SAVEPOINT import_batch")
        for number, params in batch:
            try:
                await db.execute(sql, params)
            except Exception as row_exc:
                if not is_constraint_error(row_exc):
                    raise
                # What the row checks cannot see alone: two runs of one schedule for
                # the same instant, say.
                raise ValueError(
                    f"The export in {root} cannot be imported: {file}:{number}: {row_exc}."
                ) from None
        raise  # refused as a batch, never row by row: not expected, so not hidden
    await db.execute("RELEASE SAVEPOINT import_batch")
    return max(cur.rowcount, 0)


def _split_derived(
    items: list[tuple[int, dict[str, Any]]],
) -> tuple[list[tuple[int, dict[str, Any]]], list[dict[str, Any]]]:
    """run_attempts rows as written (with seq), and the derived first attempts."""
    written = [(n, item) for n, item in items if item.get("seq") is not None]
    return written, [item for _, item in items if item.get("seq") is None]


#: A derived first attempt is stored as its run's owner (storage/runs.py DERIVED_ATTEMPT).
_RESTORE_DERIVED_SQL = (
    "UPDATE runs SET owner = :owner WHERE id = :run_id AND status = 'succeeded' "
    "AND owner IS NULL AND NOT EXISTS (SELECT 1 FROM run_attempts a WHERE a.run_id = :run_id)"
)
assert "owner IS NOT NULL" in DERIVED_ATTEMPT


async def _restore_derived(db: Db, derived: list[dict[str, Any]]) -> int:
    before = db.total_changes
    if derived:
        await db.executemany(
            _RESTORE_DERIVED_SQL,
            [{"owner": item["owner"], "run_id": item["run_id"]} for item in derived],
        )
    return db.total_changes - before


async def import_export(
    directory: str | Path, where: Location, *, merge: bool = False, verbatim: bool = False
) -> dict[str, int]:
    """Restore the export in `directory` into the database at `where` (created and
    migrated if need be); returns the rows inserted per entity.

    The database must be empty unless `merge`, which inserts only rows whose id is new;
    `verbatim`: the export is one of `export_database(verbatim=True)`, credentials and
    all. Raises ValueError (one sentence) for an invalid export or a non-empty database.
    """
    root = Path(directory)
    problems, data = await asyncio.to_thread(_validated, root, verbatim)
    if problems:
        raise ValueError(f"The export in {root} is not valid: {problems[0]}")
    manifest = json.loads((root / MANIFEST).read_bytes().decode("utf-8"))
    async with exclusive(where) as db:
        if not merge and await _row_count(db):
            raise ValueError(
                f"The database at {shown(where)} is not empty; import into a new one "
                "or merge with --merge."
            )
        inserted: dict[str, int] = {}
        verb = "INSERT OR IGNORE" if merge else "INSERT"
        for entity in ENTITIES:
            columns = [f.column for f in entity.fields]
            sql = (
                f"{verb} INTO {entity.name} ({', '.join(columns)}) "
                f"VALUES ({', '.join(':' + c for c in columns)})"
            )
            count = 0
            items = data[entity.name]  # empty for an optional file the export lacks
            if entity.name == "run_attempts":
                items, derived = _split_derived(items)
                count += await _restore_derived(db, derived)
            for start in range(0, len(items), _IMPORT_BATCH):
                batch: list[tuple[int, dict[str, Any]]] = []
                for number, item in items[start : start + _IMPORT_BATCH]:
                    params = _decode(entity, item)
                    if merge and entity.name == "schedules":
                        # Short numbers belong to one database; merged schedules are
                        # numbered after the chat's own (a clash would drop the row).
                        params["number"] = None
                    batch.append((number, params))
                count += await _insert(db, sql, batch, f"{root}", entity.file)
            inserted[entity.name] = count
            if entity.name == "schedules":
                await db.execute(NUMBER_UNNUMBERED_SQL)
                await db.execute(_KIND_UNKINDED_SQL)
            if entity.name == "runs" and manifest["schema_version"] < _SKIP_REASONS_SINCE:
                await db.execute(_REASON_UNREASONED_SQL)
    return inserted
