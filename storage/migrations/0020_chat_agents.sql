-- Per-chat agents (scheduler/chat_agents.py): a chat may send its runs to an agent of its
-- own; a chat without a row uses AGENT_URL. NULL columns fall back to the default's value.
-- `secret` is the chat's webhook secret (telegram mode) or bearer token (openai mode): it
-- is never exported in clear nor logged.
CREATE TABLE chat_agents (
    chat_id    INTEGER PRIMARY KEY,
    url        TEXT,
    mode       TEXT,
    secret     TEXT,
    model      TEXT,
    updated_at TEXT NOT NULL
);

-- The claim's hot read, now also covering chat_id: a full batch of one chat asks whether
-- any other chat has a fire due (storage/schedules.py `due`) from the index alone.
DROP INDEX schedules_due;
CREATE INDEX schedules_due ON schedules (next_run_at, chat_id)
    WHERE enabled = 1 AND tripped = 0 AND archived_at IS NULL AND next_run_at IS NOT NULL;
