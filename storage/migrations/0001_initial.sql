-- Schedules, runs and engine instances. Times are UTC text in one fixed-width format
-- (2026-11-24T07:00:00.000000Z) so that text order is time order and indexes work.

CREATE TABLE schedules (
    id                   TEXT PRIMARY KEY,
    chat_id              INTEGER NOT NULL,
    name                 TEXT NOT NULL,
    description          TEXT NOT NULL DEFAULT '',
    trigger_json         TEXT NOT NULL,
    action_json          TEXT NOT NULL,
    policies_json        TEXT NOT NULL,
    owner_id             INTEGER NOT NULL,
    owner_name           TEXT NOT NULL,
    enabled              INTEGER NOT NULL DEFAULT 1,
    paused_by            INTEGER,
    pause_reason         TEXT,
    next_run_at          TEXT,
    last_run_at          TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    tripped              INTEGER NOT NULL DEFAULT 0,
    created_by           TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    archived_at          TEXT
);

-- The loop's one hot read: the earliest due active schedule.
CREATE INDEX schedules_due ON schedules (next_run_at)
    WHERE enabled = 1 AND tripped = 0 AND archived_at IS NULL AND next_run_at IS NOT NULL;
CREATE INDEX schedules_by_chat ON schedules (chat_id, created_at);

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    schedule_id      TEXT NOT NULL REFERENCES schedules (id),
    chat_id          INTEGER NOT NULL,
    scheduled_for    TEXT NOT NULL,
    trigger          TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    started_at       TEXT,
    finished_at      TEXT,
    duration_ms      INTEGER,
    output           TEXT,
    error            TEXT,
    token_usage_json TEXT,
    owner            TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    -- The idempotency key: one row per fire instant, whoever claims it.
    UNIQUE (schedule_id, scheduled_for)
);

CREATE INDEX runs_ready ON runs (next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX runs_ready_by_schedule ON runs (schedule_id, scheduled_for)
    WHERE status IN ('pending', 'failed');
CREATE INDEX runs_running ON runs (schedule_id, owner) WHERE status = 'running';
CREATE INDEX runs_by_chat ON runs (chat_id, scheduled_for);
CREATE INDEX runs_by_schedule ON runs (schedule_id, scheduled_for);

CREATE TABLE engine_instances (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    stopped_at   TEXT
);

-- One row per finished attempt: the audit trail behind a run's current status
-- ("attempt 1 orphaned, attempt 2 succeeded").
CREATE TABLE run_attempts (
    -- A sequence, not (run, attempt): a retried dead run numbers its attempts from 1
    -- again, and its earlier attempts must stay in the history.
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES runs (id),
    attempt     INTEGER NOT NULL,
    owner       TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT NOT NULL,
    status      TEXT NOT NULL,
    error       TEXT
);
CREATE INDEX run_attempts_by_run ON run_attempts (run_id, seq);
