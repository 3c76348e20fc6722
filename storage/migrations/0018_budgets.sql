-- Spend and volume control (scheduler/budgets.py). A schedule's own budget is in its
-- policies_json; a chat's budget (/budget) is kept with the chat's preferences. Each is
-- runs and tokens over the last 7 days; NULL: no limit.
ALTER TABLE chats ADD COLUMN budget_runs_per_week INTEGER;
ALTER TABLE chats ADD COLUMN budget_tokens_per_week INTEGER;

-- Extra runs an operator allowed a schedule past its budget (the notice's
-- [Run once more]); a fire past the budget spends one instead of pausing the schedule.
CREATE TABLE budget_allowances (
    schedule_id TEXT PRIMARY KEY REFERENCES schedules (id),
    extra_runs  INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL
);
