-- Interval and one-time triggers now keep the zone their schedule was made in (cron
-- triggers always did). Rows written before had none and were shown in UTC; they take
-- their chat's zone where the chat has set one, and read as UTC otherwise.
UPDATE schedules
SET trigger_json = json_set(
    trigger_json,
    '$.timezone',
    (SELECT chats.timezone FROM chats WHERE chats.chat_id = schedules.chat_id)
)
WHERE json_extract(trigger_json, '$.kind') IN ('interval', 'once')
  AND json_extract(trigger_json, '$.timezone') IS NULL
  AND (SELECT chats.timezone FROM chats WHERE chats.chat_id = schedules.chat_id) IS NOT NULL;
