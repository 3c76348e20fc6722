-- SQLite's 0014_run_results.sql: what an agent reported about a run it answered
-- asynchronously. NULL for every other run.
ALTER TABLE runs ADD COLUMN summary TEXT COLLATE "C";
ALTER TABLE runs ADD COLUMN outputs_url TEXT COLLATE "C";
ALTER TABLE runs ADD COLUMN log_excerpt TEXT COLLATE "C";
