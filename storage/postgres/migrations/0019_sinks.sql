-- Notification sinks: SQLite's 0019 (see there).
CREATE TABLE sinks (
    id            TEXT COLLATE "C" PRIMARY KEY,
    chat_id       BIGINT NOT NULL,
    kind          TEXT COLLATE "C" NOT NULL,
    target        TEXT COLLATE "C" NOT NULL,
    secret        TEXT COLLATE "C",
    events        TEXT COLLATE "C" NOT NULL,
    status        TEXT COLLATE "C" NOT NULL,
    failing_since TEXT COLLATE "C",
    last_error    TEXT COLLATE "C",
    created_by    BIGINT,
    created_at    TEXT COLLATE "C" NOT NULL
);
CREATE INDEX sinks_by_chat ON sinks (chat_id, status);

CREATE TABLE sink_deliveries (
    sink_id         TEXT COLLATE "C" NOT NULL,
    notification_id TEXT COLLATE "C" NOT NULL,
    chat_id         BIGINT NOT NULL,
    event           TEXT COLLATE "C" NOT NULL,
    text            TEXT COLLATE "C" NOT NULL,
    schedule_id     TEXT COLLATE "C",
    schedule_name   TEXT COLLATE "C",
    run_id          TEXT COLLATE "C",
    created_at      TEXT COLLATE "C" NOT NULL,
    status          TEXT COLLATE "C" NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT COLLATE "C",
    sent_at         TEXT COLLATE "C",
    last_error      TEXT COLLATE "C",
    PRIMARY KEY (sink_id, notification_id)
);
CREATE INDEX sink_deliveries_due ON sink_deliveries (next_attempt_at) WHERE status = 'pending';
