-- Why a skipped or cancelled run did not run, as a value of scheduler.models.SkipReason
-- (code branches on it; `error` keeps the sentence the operator reads).
ALTER TABLE runs ADD COLUMN skip_reason TEXT;

UPDATE runs SET skip_reason = CASE
    WHEN error LIKE 'missed: skipped by the operator%' THEN 'missed_by_operator'
    WHEN error LIKE 'missed%' THEN 'missed'
    WHEN error LIKE 'overlap%' THEN 'overlap'
    WHEN error IN ('schedule is archived', 'archived') THEN 'archived'
    WHEN error = 'circuit breaker tripped' THEN 'tripped'
    WHEN error LIKE 'schedule cannot be read%' OR error LIKE 'paused: cannot be read:%'
        THEN 'unreadable'
    WHEN error = 'schedule is paused' OR error LIKE 'paused:%'
        OR error = 'schedule was paused' THEN 'paused'
    WHEN error = 'approval deadline passed' THEN 'approval_deadline'
    WHEN error = 'skipped: approval rejected' THEN 'rejected'
    ELSE 'operator'
END
WHERE status IN ('skipped', 'cancelled');
