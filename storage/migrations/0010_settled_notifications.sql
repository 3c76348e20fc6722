-- The retention sweep's read (storage/retention.py): settled chat messages by age, so
-- it deletes the oldest a batch at a time without reading the whole outbox each day.
CREATE INDEX notifications_settled ON notifications (created_at) WHERE status <> 'pending';
