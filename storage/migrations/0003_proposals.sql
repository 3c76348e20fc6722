-- Schedules the agent proposed, with the trail of who proposed and who decided when.
-- The request (name, trigger, action, policies, reason, hint) is kept as the agent sent
-- it, completed with the chat's zone; schedule_id points at the schedule it created.
CREATE TABLE proposals (
    id           TEXT PRIMARY KEY,
    chat_id      INTEGER NOT NULL,
    request_json TEXT NOT NULL,
    tier         TEXT NOT NULL,
    status       TEXT NOT NULL,
    -- No foreign key: an approval claims the proposal (and the new schedule's id)
    -- before it creates the schedule, so a second press cannot create another.
    schedule_id  TEXT,
    proposed_by  TEXT NOT NULL,
    decided_by   INTEGER,
    decided_at   TEXT,
    expires_at   TEXT,
    refusal      TEXT,
    created_at   TEXT NOT NULL
);
CREATE INDEX proposals_by_chat ON proposals (chat_id, created_at);
-- The expiry sweep's one read.
CREATE INDEX proposals_expiring ON proposals (expires_at)
    WHERE status = 'pending' AND expires_at IS NOT NULL;

-- A run awaiting approval keeps its approval deadline in next_attempt_at (the time the
-- engine next acts on it: it is skipped then, unanswered). Runs that were waiting
-- before this version get a day from their fire instant.
CREATE INDEX runs_awaiting_approval ON runs (next_attempt_at)
    WHERE status = 'awaiting_approval';
UPDATE runs
    SET next_attempt_at = strftime('%Y-%m-%dT%H:%M:%S', scheduled_for, '+1 day')
        || substr(scheduled_for, 20)
    WHERE status = 'awaiting_approval' AND next_attempt_at IS NULL;
