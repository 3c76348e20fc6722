-- Why a schedule is paused, as a kind code branches on (scheduler/models.PauseKind),
-- next to the reason shown to people (`pause_reason`, which an operator may write
-- freely). Paused rows take their kind from the sentinel texts code compared until now;
-- archived ones are not paused and take none.
ALTER TABLE schedules ADD COLUMN pause_kind TEXT;

UPDATE schedules
SET pause_kind = CASE
    WHEN pause_reason = 'awaiting approval' THEN 'awaiting_approval'
    WHEN pause_reason = 'removed from schedules.yaml' THEN 'removed_from_file'
    WHEN pause_reason LIKE 'cannot be read: %' THEN 'unreadable'
    ELSE 'operator'
END
WHERE enabled = 0 AND archived_at IS NULL;
