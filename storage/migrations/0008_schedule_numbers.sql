-- A short number per schedule within its chat (#1, #2, ...), so an operator on a phone
-- can type `/pause 3` instead of a 26-character id. Assigned when a schedule is inserted
-- (one more than the chat's highest, archived ones included: schedules are never
-- deleted, so a number is never reused); existing schedules are numbered in the order
-- they were created.
ALTER TABLE schedules ADD COLUMN number INTEGER;
UPDATE schedules SET number = o.n
    FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY chat_id ORDER BY created_at, id) AS n
          FROM schedules) AS o
    WHERE schedules.id = o.id;
CREATE UNIQUE INDEX schedules_by_number ON schedules (chat_id, number);
-- The message that told the chat a run was sent to the agent (/runnow), to confirm its
-- outcome in place when the run finishes.
CREATE INDEX notifications_by_run ON notifications (run_id) WHERE kind = 'run_sent';
