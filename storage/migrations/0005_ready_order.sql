-- The engine takes ready runs in (next_attempt_at, scheduled_for) order, LIMIT the free
-- slots. With next_attempt_at alone indexed, a burst (thousands of runs ready at the same
-- instant) made every acquisition read and sort all of them; with both columns the index
-- gives the order and the read stops at the limit.
DROP INDEX runs_ready;
CREATE INDEX runs_ready ON runs (next_attempt_at, scheduled_for)
    WHERE status IN ('pending', 'failed');
