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
