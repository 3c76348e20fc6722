-- Per-chat agents: SQLite's 0020 (see there).
CREATE TABLE chat_agents (
    chat_id    BIGINT PRIMARY KEY,
    url        TEXT COLLATE "C",
    mode       TEXT COLLATE "C",
    secret     TEXT COLLATE "C",
    model      TEXT COLLATE "C",
    updated_at TEXT COLLATE "C" NOT NULL
);

-- The claim's hot read, now also covering chat_id: a full batch of one chat asks whether
-- any other chat has a fire due (storage/schedules.py `due`) from the index alone.
DROP INDEX schedules_due;
CREATE INDEX schedules_due ON schedules (next_run_at, chat_id)
    WHERE enabled = 1 AND tripped = 0 AND archived_at IS NULL AND next_run_at IS NOT NULL;
