-- Notification sinks (docs/notification-sinks.md): besides the chat, a chat's notices go
-- to outgoing webhooks, Slack incoming webhooks and e-mail. `secret` is the webhook's
-- HMAC key or the Slack URL (which is itself the credential): never exported or logged.
-- `events` is a JSON list of the events the sink takes (scheduler/sinks.py).
CREATE TABLE sinks (
    id            TEXT PRIMARY KEY,
    chat_id       INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    target        TEXT NOT NULL,
    secret        TEXT,
    events        TEXT NOT NULL,
    status        TEXT NOT NULL,
    failing_since TEXT,
    last_error    TEXT,
    created_by    INTEGER,
    created_at    TEXT NOT NULL
);
CREATE INDEX sinks_by_chat ON sinks (chat_id, status);

-- One notice for one sink, written in the same transaction as the chat's notification
-- (so it is never lost) and sent in notification id order per sink, independently of
-- the chat's own delivery. The facts are copied so retention of the chat's rows does
-- not take a pending delivery's with them.
CREATE TABLE sink_deliveries (
    sink_id         TEXT NOT NULL,
    notification_id TEXT NOT NULL,
    chat_id         INTEGER NOT NULL,
    event           TEXT NOT NULL,
    text            TEXT NOT NULL,
    schedule_id     TEXT,
    schedule_name   TEXT,
    run_id          TEXT,
    created_at      TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    sent_at         TEXT,
    last_error      TEXT,
    PRIMARY KEY (sink_id, notification_id)
);
CREATE INDEX sink_deliveries_due ON sink_deliveries (next_attempt_at) WHERE status = 'pending';
