-- The operator's own duties: one work item per fire of a `task` schedule (at most one
-- per schedule and local date), or a stand-alone follow-up; and each item's trail.
CREATE TABLE work_items (
    id            TEXT PRIMARY KEY,
    chat_id       INTEGER NOT NULL,
    title         TEXT NOT NULL,
    instructions  TEXT NOT NULL DEFAULT '',
    due_at        TEXT NOT NULL,
    assignee      TEXT,
    schedule_id   TEXT REFERENCES schedules (id),
    -- The fire's local date in the schedule's zone: the idempotency key with schedule_id.
    fire_date     TEXT,
    proof         TEXT,
    proof_value   TEXT,
    status        TEXT NOT NULL,
    waiting_for   TEXT,
    follow_up_at  TEXT,
    pinged_at     TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (schedule_id, fire_date)
);
CREATE INDEX work_items_by_chat ON work_items (chat_id, status, due_at);
CREATE INDEX work_items_follow_up ON work_items (follow_up_at)
    WHERE status = 'waiting' AND pinged_at IS NULL;

CREATE TABLE work_item_history (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id  TEXT NOT NULL REFERENCES work_items (id),
    at       TEXT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    note     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX work_item_history_by_item ON work_item_history (item_id, seq);
