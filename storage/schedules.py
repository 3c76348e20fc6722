"""SQL for the schedule aggregate. Functions take an open connection (inside the caller's
transaction where one is needed); every operator-facing query is scoped by chat_id."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scheduler.errors import InvalidSchedule, UnreadableSchedule
from scheduler.models import PauseKind, Schedule, SkipReason
from storage.codec import (
    SCHEDULE_COLUMNS,
    schedule_from_row,
    schedule_params,
    to_db_time,
)
from storage.due import ACTIVE_WITH_NEXT_FIRE
from storage.runs import OPEN_RUN_SCHEDULES, settle_open
from storage.sql import Db, fetch_all, fetch_one

log = logging.getLogger("tickler.storage")

#: A new schedule's number: the one it brings (an import), else one more than the
#: chat's highest, archived schedules included, so a number is never reused.
_NEXT_NUMBER = (
    "COALESCE(:number, (SELECT COALESCE(MAX(number), 0) + 1 FROM schedules "
    "WHERE chat_id = :chat_id))"
)
_PLACEHOLDERS = ", ".join(
    _NEXT_NUMBER if c.strip() == "number" else ":" + c.strip() for c in SCHEDULE_COLUMNS.split(",")
)
_ASSIGNMENTS = ", ".join(
    f"{c.strip()} = :{c.strip()}"
    for c in SCHEDULE_COLUMNS.split(",")
    if c.strip() not in ("id", "chat_id", "created_at", "number")
)
#: Numbers the schedules that have none (imported from an export without numbers), in
#: the order they were created, after the highest number of their chat.
NUMBER_UNNUMBERED_SQL = (
    "UPDATE schedules SET number = o.n FROM ("
    "SELECT id, ROW_NUMBER() OVER (PARTITION BY chat_id ORDER BY created_at, id) "
    "+ COALESCE((SELECT MAX(m.number) FROM schedules AS m WHERE m.chat_id = s.chat_id), 0) "
    "AS n FROM schedules AS s WHERE s.number IS NULL) AS o "
    "WHERE schedules.id = o.id"
)


async def insert(db: Db, schedule: Schedule) -> int:
    """Insert the schedule; returns its number within the chat."""
    row = await fetch_one(
        db,
        f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES ({_PLACEHOLDERS}) "
        "ON CONFLICT (id) DO NOTHING RETURNING number",
        schedule_params(schedule),
    )
    if row is None:
        # Ids are unique across chats; only a chosen id (schedules.yaml) can collide.
        raise InvalidSchedule(
            f"The id '{schedule.id}' is taken by another schedule; choose another id."
        )
    return int(row[0])


async def replace(db: Db, schedule: Schedule) -> None:
    await db.execute(
        f"UPDATE schedules SET {_ASSIGNMENTS} WHERE id = :id AND chat_id = :chat_id",
        schedule_params(schedule),
    )


async def archive(db: Db, chat_id: int, schedule_id: str, now: datetime) -> Schedule | None:
    """Archive the schedule (disabled, hidden, history kept) and close its runs not yet
    started; None if there is no such schedule. One archived already is left as it is."""
    current = await get(db, chat_id, schedule_id)
    if current is None or current.archived_at is not None:
        return current
    archived = current.model_copy(update={"enabled": False, "archived_at": now, "updated_at": now})
    await replace(db, archived)
    await settle_open(db, schedule_id, SkipReason.ARCHIVED, "archived", now, archived)
    return archived


async def get(db: Db, chat_id: int, schedule_id: str) -> Schedule | None:
    row = await fetch_one(
        db,
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ? AND chat_id = ?",
        (schedule_id, chat_id),
    )
    return None if row is None else schedule_from_row(row)


async def by_number(db: Db, chat_id: int, number: int) -> Schedule | None:
    row = await fetch_one(
        db,
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE chat_id = ? AND number = ?",
        (chat_id, number),
    )
    return None if row is None else schedule_from_row(row)


async def by_prefix(db: Db, chat_id: int, prefix: str, limit: int) -> list[Schedule]:
    """The chat's active schedules whose id starts with `prefix`, in any letter case
    (a phone keyboard capitalises as it likes), at most `limit`, by number."""
    rows = await fetch_all(
        db,
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE chat_id = ? AND archived_at IS NULL "
        "AND lower(substr(id, 1, ?)) = lower(?) ORDER BY number LIMIT ?",
        (chat_id, len(prefix), prefix, limit),
    )
    return [schedule_from_row(row) for row in rows]


async def get_many(db: Db, ids: list[str]) -> dict[str, Schedule]:
    """Engine-internal lookup by id (the run rows already carry the chat scope)."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = await fetch_all(
        db, f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id IN ({marks})", ids
    )
    return dict(_readable((row["id"], row) for row in rows))


async def list_for_chat(db: Db, chat_id: int, *, include_archived: bool) -> list[Schedule]:
    archived = "" if include_archived else "AND archived_at IS NULL"
    rows = await fetch_all(
        db,
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE chat_id = ? {archived} "
        "ORDER BY created_at, id",
        (chat_id,),
    )
    return [schedule for _, schedule in _readable((row["id"], row) for row in rows)]


async def list_by_trigger(db: Db, chat_ids: Collection[int], kind: str) -> list[Schedule]:
    if not chat_ids:
        return []
    # The kind as model_dump_json writes it, or json.dumps (rows of older versions and
    # imports keep their text as written); the decoded trigger is checked again below.
    compact, spaced = f'%"kind":"{kind}"%', f'%"kind": "{kind}"%'
    marks = ", ".join("?" for _ in chat_ids)
    rows = await fetch_all(
        db,
        f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE chat_id IN ({marks}) "
        "AND archived_at IS NULL AND (trigger_json LIKE ? OR trigger_json LIKE ?) "
        "ORDER BY created_at, id",
        (*sorted(chat_ids), compact, spaced),
    )
    found = (s for _, s in _readable((row["id"], row) for row in rows))
    return [s for s in found if s.trigger.kind == kind]


def _readable(rows: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Schedule]]:
    """The schedules of `rows` that can be decoded: one unreadable row (the engine
    pauses it, see `quarantine`) must not hide a chat's other schedules."""
    for key, row in rows:
        try:
            yield key, schedule_from_row(row)
        except UnreadableSchedule as exc:
            log.warning("schedule left out: %s", exc, extra={"schedule_id": exc.schedule_id})


async def quarantine(db: Db, broken: UnreadableSchedule, now: datetime) -> bool:
    """Pause a schedule whose row cannot be decoded, with the reason, and close its runs
    not yet started; False if it was paused already (so the chat is told once)."""
    when = to_db_time(now)
    reason = f"cannot be read: {broken.reason}"
    row = await fetch_one(
        db,
        "UPDATE schedules SET enabled = 0, paused_by = NULL, pause_reason = ?, pause_kind = ?, "
        "updated_at = ? WHERE id = ? AND enabled = 1 RETURNING id",
        (reason, PauseKind.UNREADABLE.value, when, broken.schedule_id),
    )
    if row is None:
        return False
    await settle_open(db, broken.schedule_id, SkipReason.UNREADABLE, f"paused: {reason}", now)
    return True


async def pause_for_budget(db: Db, schedule_id: str, reason: str, now: datetime) -> bool:
    """Pause a schedule that reached its budget (scheduler/budgets.py); False if it was
    paused already."""
    row = await fetch_one(
        db,
        "UPDATE schedules SET enabled = 0, paused_by = NULL, pause_reason = ?, pause_kind = ?, "
        "updated_at = ? WHERE id = ? AND enabled = 1 RETURNING id",
        (reason, PauseKind.BUDGET.value, to_db_time(now), schedule_id),
    )
    return row is not None


async def count_active(db: Db, chat_id: int) -> int:
    row = await fetch_one(
        db, "SELECT COUNT(*) FROM schedules WHERE chat_id = ? AND archived_at IS NULL", (chat_id,)
    )
    return int(row[0]) if row else 0


async def count_all_active(db: Db) -> int:
    row = await fetch_one(db, "SELECT COUNT(*) FROM schedules WHERE archived_at IS NULL")
    return int(row[0]) if row else 0


#: Due at the first parameter and after the second.
_DUE = f"{ACTIVE_WITH_NEXT_FIRE} AND next_run_at <= ? AND next_run_at > ?"
_DUE_ORDER = "ORDER BY next_run_at LIMIT ?"
#: The statements of the engine's hot path, named so that bench/ledger_floor.py times
#: exactly these.
#: Schedules due at `now` and after a lower bound ('' for none), the earliest `limit`.
DUE_SQL = f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE {_DUE} {_DUE_ORDER}"
#: The same, a fair share per chat (issue 21): each chat's due schedules are ranked by
#: next_run_at and the batch takes every chat's first, then every chat's second, and so
#: on, so one chat's 10,000 due fires do not hold back another chat's one for more than a
#: batch. In that order: the first of the batch are the first to get a slot.
FAIR_DUE_SQL = (
    f"SELECT {SCHEDULE_COLUMNS} FROM schedules JOIN ("
    "SELECT fair_id, fair_turn, fair_at FROM ("
    "SELECT id AS fair_id, next_run_at AS fair_at, "
    "ROW_NUMBER() OVER (PARTITION BY chat_id ORDER BY next_run_at) AS fair_turn "
    f"FROM schedules WHERE {_DUE}) AS ranked ORDER BY fair_turn, fair_at LIMIT ?"
    ") AS fair ON schedules.id = fair.fair_id ORDER BY fair.fair_turn, fair.fair_at"
)
_DUE_WITH_OPEN_RUNS_SQL = (
    f"SELECT {SCHEDULE_COLUMNS} FROM schedules "
    f"WHERE {_DUE} AND id IN ({OPEN_RUN_SCHEDULES}) {_DUE_ORDER}"
)
#: `updated_at`, then JSON [[id, expected next_run_at, new next_run_at], ...]: a
#: compare-and-set each; returns the ids that moved.
ADVANCE_SQL = (
    "UPDATE schedules SET next_run_at = m.value ->> 2, updated_at = ? "
    "FROM json_each(?) AS m "
    "WHERE schedules.id = m.value ->> 0 AND schedules.next_run_at = m.value ->> 1 "
    "AND enabled = 1 AND tripped = 0 AND archived_at IS NULL "
    "RETURNING schedules.id"
)
#: JSON [[id, finished_at], ...] of successes; returns each schedule's id and `tripped`.
SUCCESSES_SQL = (
    "UPDATE schedules SET consecutive_failures = 0, last_run_at = s.value ->> 1, "
    "updated_at = s.value ->> 1 FROM json_each(?) AS s WHERE schedules.id = s.value ->> 0 "
    "RETURNING schedules.id, schedules.tripped"
)


async def due(
    db: Db,
    now: datetime,
    limit: int,
    *,
    after: datetime | None = None,
    with_open_runs: bool = False,
    unreadable: list[UnreadableSchedule] | None = None,
    lock: bool = False,
    backlog: Backlog | None = None,
    whole: bool = True,
) -> list[tuple[tuple[Any, ...], Schedule]]:
    """Schedules due at `now` (and, with `after`, due only after it), in next_run_at
    order (a full batch: a fair share per chat, `FAIR_DUE_SQL`), each with its row's
    values (for `codec.remember_claimed`). With
    `with_open_runs`, only those that have a run running, pending or failed (found from
    the runs' side: few, next to the due schedules of a burst). Rows that cannot be
    decoded are left out, and added to `unreadable` (to be quarantined). With `lock`
    (PostgreSQL), the rows are locked until the transaction ends, and rows another
    transaction holds are skipped. `backlog` (the engine store's, kept across claims)
    spares a long backlog of one chat most of the question whether another is due;
    `whole` is False for a read of only the older part of what is due (a short read of
    it says nothing of the newer part, so the backlog is not over)."""
    sql = _DUE_WITH_OPEN_RUNS_SQL if with_open_runs else DUE_SQL
    # '' sorts before every instant: no lower bound.
    params = (to_db_time(now), "" if after is None else to_db_time(after), limit)
    rows = await fetch_all(db, f"{sql} FOR UPDATE SKIP LOCKED" if lock else sql, params)
    if len(rows) < limit:
        if backlog is not None and whole and not with_open_runs:
            backlog.forget()
    elif not with_open_runs and await _others_due(db, rows, params, backlog):
        # A backlog (more is due than one batch takes) and more than one chat in it:
        # only then is every due row ranked, a query that reads them all. (PostgreSQL:
        # rows the first read locked and this one leaves stay locked until the claim
        # commits; the other engines skip them meanwhile.)
        rows = await fetch_all(
            db,
            f"{FAIR_DUE_SQL} FOR UPDATE OF schedules SKIP LOCKED" if lock else FAIR_DUE_SQL,
            params,
        )
    found = []
    for values in map(tuple, rows):
        try:
            found.append((values, schedule_from_row(values)))
        except UnreadableSchedule as exc:
            if unreadable is not None:
                unreadable.append(exc)
    return found


#: Whether a chat other than the given one has a fire due in the same window: read from
#: the `schedules_due` index alone (it covers chat_id), the hot path's only extra cost.
OTHERS_DUE_SQL = f"SELECT 1 FROM schedules WHERE {_DUE} AND chat_id <> ? LIMIT 1"
_CHAT_AT = SCHEDULE_COLUMNS.replace(" ", "").split(",").index("chat_id")


@dataclass
class Backlog:
    """What the last claims learnt of a backlog: only `chat` had fires due up to
    `checked_to`. The next full batch of that chat then asks only about fires that came
    due since, so a 10,000-fire backlog is not read again on each of its 20 batches.
    Forgotten when a batch is not full (the backlog is over) or has several chats."""

    chat: int | None = None
    checked_to: str = ""

    def forget(self) -> None:
        self.chat, self.checked_to = None, ""


async def _others_due(
    db: Db, rows: list[Any], params: tuple[str, str, int], backlog: Backlog | None
) -> bool:
    """Whether a full batch shares the due fires with another chat: it has several
    chats' fires, or another chat has a fire due beyond it."""
    chats = {row[_CHAT_AT] for row in rows}
    if len(chats) > 1:
        if backlog is not None:
            backlog.forget()
        return True
    now, after, _ = params
    [chat] = chats
    since = after
    if backlog is not None and backlog.chat == chat:
        since = max(after, backlog.checked_to)
    found = await fetch_one(db, OTHERS_DUE_SQL, (now, since, chat)) is not None
    if backlog is not None:
        if found:
            backlog.forget()
        else:
            backlog.chat, backlog.checked_to = chat, max(now, backlog.checked_to)
    return found


async def count_due(db: Db, now: datetime) -> int:
    row = await fetch_one(db, f"SELECT COUNT(*) FROM schedules WHERE {_DUE}", (to_db_time(now), ""))
    return int(row[0]) if row else 0


async def advance(
    db: Db,
    schedule_id: str,
    expected: datetime | None,
    to: datetime | None,
    now: datetime,
) -> bool:
    """Move an active schedule's next_run_at from `expected` to `to`; False if it was
    no longer at `expected` (claimed elsewhere, paused, edited)."""
    if expected is None:
        return False
    cur = await db.execute(
        "UPDATE schedules SET next_run_at = ?, updated_at = ? "
        "WHERE id = ? AND next_run_at = ? AND enabled = 1 AND tripped = 0 "
        "AND archived_at IS NULL",
        (
            None if to is None else to_db_time(to),
            to_db_time(now),
            schedule_id,
            to_db_time(expected),
        ),
    )
    return cur.rowcount == 1


async def advance_many(
    db: Db,
    moves: Sequence[tuple[str, datetime, datetime | None]],
    now: datetime,
) -> set[str]:
    """`advance` for many schedules in one statement (one trip to the database thread
    instead of one per schedule): each (id, expected, to) is a compare-and-set on
    next_run_at. Returns the ids that moved."""
    if not moves:
        return set()
    payload = json.dumps(
        [
            [sid, to_db_time(expected), None if to is None else to_db_time(to)]
            for sid, expected, to in moves
        ]
    )
    rows = await fetch_all(db, ADVANCE_SQL, (to_db_time(now), payload))
    return {row[0] for row in rows}


async def record_successes(db: Db, finished: Sequence[tuple[str, datetime]]) -> dict[str, bool]:
    """`record_outcome(succeeded=True)` for many (schedule id, finished_at) in one
    statement; returns each schedule's `tripped` after the update."""
    if not finished:
        return {}
    latest: dict[str, datetime] = {}
    for sid, when in finished:
        # A schedule that allows overlap may finish twice in one batch; the later wins,
        # as it would one statement at a time.
        if sid not in latest or when > latest[sid]:
            latest[sid] = when
    payload = json.dumps([[sid, to_db_time(when)] for sid, when in latest.items()])
    rows = await fetch_all(db, SUCCESSES_SQL, (payload,))
    return {row[0]: bool(row[1]) for row in rows}


async def record_outcome(
    db: Db,
    schedule_id: str,
    *,
    succeeded: bool,
    dead: bool,
    finished_at: datetime,
    trip_after: int,
) -> tuple[int, bool, bool] | None:
    """Update the failure streak and the breaker; returns (consecutive_failures,
    tripped, tripped_just_now) after the update, or None when the outcome changes
    neither."""
    when = to_db_time(finished_at)
    if succeeded:
        sql = (
            "UPDATE schedules SET consecutive_failures = 0, last_run_at = ?, updated_at = ? "
            "WHERE id = ? RETURNING consecutive_failures, tripped"
        )
        params: tuple[object, ...] = (when, when, schedule_id)
        was_tripped = False
    elif dead:
        before = await fetch_one(db, "SELECT tripped FROM schedules WHERE id = ?", (schedule_id,))
        was_tripped = bool(before[0]) if before else False
        sql = (
            "UPDATE schedules SET consecutive_failures = consecutive_failures + 1, "
            "last_run_at = ?, updated_at = ?, "
            "tripped = CASE WHEN consecutive_failures + 1 >= ? THEN 1 ELSE tripped END "
            "WHERE id = ? RETURNING consecutive_failures, tripped"
        )
        params = (when, when, trip_after, schedule_id)
    else:
        return None
    row = await fetch_one(db, sql, params)
    if row is None:
        return None
    failures, tripped = int(row[0]), bool(row[1])
    return failures, tripped, tripped and dead and not was_tripped


async def count_tripped(db: Db) -> int:
    row = await fetch_one(
        db, "SELECT COUNT(*) FROM schedules WHERE tripped = 1 AND archived_at IS NULL"
    )
    return int(row[0]) if row else 0
