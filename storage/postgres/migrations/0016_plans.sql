-- Multi-step plans: SQLite's 0016_plans.sql (see there).
ALTER TABLE runs ADD COLUMN plan_run_id TEXT COLLATE "C";
ALTER TABLE runs ADD COLUMN step INTEGER;
CREATE INDEX runs_by_plan ON runs (plan_run_id) WHERE plan_run_id IS NOT NULL;
