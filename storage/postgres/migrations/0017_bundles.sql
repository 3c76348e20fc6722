-- Workflow templates and bundles: SQLite's 0017 (see there). 0016 is another change's.
CREATE TABLE bundles (
    id           TEXT COLLATE "C" PRIMARY KEY,
    chat_id      BIGINT NOT NULL,
    template_id  TEXT COLLATE "C" NOT NULL REFERENCES schedules (id),
    anchor_date  TEXT COLLATE "C" NOT NULL,
    title        TEXT COLLATE "C" NOT NULL,
    snapshot_json TEXT COLLATE "C" NOT NULL,
    status       TEXT COLLATE "C" NOT NULL,
    error        TEXT COLLATE "C",
    created_at   TEXT COLLATE "C" NOT NULL,
    updated_at   TEXT COLLATE "C" NOT NULL,
    completed_at TEXT COLLATE "C",
    UNIQUE (template_id, anchor_date)
);
CREATE INDEX bundles_by_chat ON bundles (chat_id, status, anchor_date);
CREATE INDEX bundles_instantiating ON bundles (created_at) WHERE status = 'instantiating';

ALTER TABLE work_items ADD COLUMN bundle_id TEXT COLLATE "C";
ALTER TABLE work_items ADD COLUMN bundle_step BIGINT;
CREATE UNIQUE INDEX work_items_bundle_step ON work_items (bundle_id, bundle_step)
    WHERE bundle_id IS NOT NULL;
