-- Per-chat agents: SQLite's 0020 (see there).
CREATE TABLE chat_agents (
    chat_id    BIGINT PRIMARY KEY,
    url        TEXT COLLATE "C",
    mode       TEXT COLLATE "C",
    secret     TEXT COLLATE "C",
    model      TEXT COLLATE "C",
    updated_at TEXT COLLATE "C" NOT NULL
);
