-- Multi-step plans (`action.kind: plan`): each step of a plan run is a run of its own.
-- `plan_run_id` is the id of the plan run's first run (step 0, whose own id it is);
-- `step` is the 0-based step. Both NULL for a run of any other kind of schedule (and for
-- a plan schedule's run written before this migration, read as step 0 of its own plan).
-- No foreign key: retention may delete the first run before the later ones.
ALTER TABLE runs ADD COLUMN plan_run_id TEXT;
ALTER TABLE runs ADD COLUMN step INTEGER;
CREATE INDEX runs_by_plan ON runs (plan_run_id) WHERE plan_run_id IS NOT NULL;
