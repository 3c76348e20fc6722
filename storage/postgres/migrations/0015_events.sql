-- Events and the runs each fired: SQLite's 0015 (see there). 0014 is another change's.
CREATE TABLE events (
    id              TEXT COLLATE "C" PRIMARY KEY,
    caller          TEXT COLLATE "C" NOT NULL,
    name            TEXT COLLATE "C" NOT NULL,
    idempotency_key TEXT COLLATE "C",
    payload_json    TEXT COLLATE "C" NOT NULL,
    received_at     TEXT COLLATE "C" NOT NULL,
    UNIQUE (caller, idempotency_key)
);
CREATE TABLE event_runs (
    run_id   TEXT COLLATE "C" PRIMARY KEY,
    event_id TEXT COLLATE "C" NOT NULL REFERENCES events (id)
);
CREATE INDEX event_runs_event ON event_runs (event_id);
