-- Workflow templates and bundles (scheduler/bundles.py). A template is a schedule whose
-- action is `bundle`; each fire makes at most one bundle per (template, anchor date).
-- (0016 is another change's number; migrations apply in order, so a gap is harmless.)
-- `snapshot_json` is what the bundle is made from (the steps, their zone and time of day,
-- the owner and policies of its prompt steps) as it was at the fire: a start that finds a
-- bundle still `instantiating` (a crash between writing it and its steps) finishes it
-- from this snapshot, whatever the template became meanwhile.
CREATE TABLE bundles (
    id           TEXT PRIMARY KEY,
    chat_id      INTEGER NOT NULL,
    template_id  TEXT NOT NULL REFERENCES schedules (id),
    anchor_date  TEXT NOT NULL,
    title        TEXT NOT NULL,
    snapshot_json TEXT NOT NULL,
    -- instantiating | active | done | failed (could not be finished; the chat was told)
    status       TEXT NOT NULL,
    error        TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    completed_at TEXT,
    UNIQUE (template_id, anchor_date)
);
CREATE INDEX bundles_by_chat ON bundles (chat_id, status, anchor_date);
CREATE INDEX bundles_instantiating ON bundles (created_at) WHERE status = 'instantiating';

-- A task step is a work item of its bundle; (bundle_id, bundle_step) is its
-- idempotency key, so instantiating a bundle twice makes each step once. (No foreign
-- key: SQLite cannot drop or rebuild such a column in place; validate-export checks it.)
ALTER TABLE work_items ADD COLUMN bundle_id TEXT;
ALTER TABLE work_items ADD COLUMN bundle_step INTEGER;
CREATE UNIQUE INDEX work_items_bundle_step ON work_items (bundle_id, bundle_step)
    WHERE bundle_id IS NOT NULL;
