-- What an agent reported about a run it answered asynchronously (202, then
-- PATCH /api/v1/runs/{id} or the report_result tool): a short summary, a link to what it
-- produced (a PR, an artifact) and an excerpt of its log. NULL for every other run.
ALTER TABLE runs ADD COLUMN summary TEXT;
ALTER TABLE runs ADD COLUMN outputs_url TEXT;
ALTER TABLE runs ADD COLUMN log_excerpt TEXT;
