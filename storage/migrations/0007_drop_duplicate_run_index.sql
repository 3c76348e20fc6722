-- runs_by_schedule indexed (schedule_id, scheduled_for), the same columns in the same
-- order as the index SQLite already keeps for UNIQUE (schedule_id, scheduled_for). Every
-- run written paid for both; the unique index serves the same lookups.
DROP INDEX IF EXISTS runs_by_schedule;
