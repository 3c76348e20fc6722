-- Events (POST /api/v1/events/{name}, the agent's emit_event) and the runs each fired.
-- (0014 is another change's number; migrations apply in order, so a gap is harmless.)
-- `caller` scopes the idempotency key: 'api' for the HTTP API, 'chat:<id>' for the
-- agent of that chat. Without a key every post is a new event (NULLs never conflict).
CREATE TABLE events (
    id              TEXT PRIMARY KEY,
    caller          TEXT NOT NULL,
    name            TEXT NOT NULL,
    idempotency_key TEXT,
    payload_json    TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    UNIQUE (caller, idempotency_key)
);
-- The runs an event fired: a repeat of the event answers with these, and the engine
-- reads the payload through it for a prompt's {event}. No foreign key to runs, so that
-- retention may delete old runs (it deletes their rows here with them).
CREATE TABLE event_runs (
    run_id   TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events (id)
);
CREATE INDEX event_runs_event ON event_runs (event_id);
