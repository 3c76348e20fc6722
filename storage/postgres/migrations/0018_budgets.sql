-- Spend and volume control: SQLite's 0018 (see there).
ALTER TABLE chats ADD COLUMN budget_runs_per_week BIGINT;
ALTER TABLE chats ADD COLUMN budget_tokens_per_week BIGINT;

CREATE TABLE budget_allowances (
    schedule_id TEXT COLLATE "C" PRIMARY KEY REFERENCES schedules (id),
    extra_runs  BIGINT NOT NULL DEFAULT 0,
    updated_at  TEXT COLLATE "C" NOT NULL
);
