-- The outbox: every chat message Tickler sends is written here (pending) before it goes
-- to Telegram, so a message that Telegram cannot take now, or that a stopped or crashed
-- process did not get to send, goes out after the restart instead of being lost.
-- reply_markup_json is the inline keyboard as the Bot API takes it; message_id is
-- Telegram's once sent (a proposal's message is edited through it when it expires).
CREATE TABLE notifications (
    id                TEXT PRIMARY KEY,
    chat_id           INTEGER NOT NULL,
    kind              TEXT NOT NULL,
    text              TEXT NOT NULL,
    parse_mode        TEXT,
    reply_markup_json TEXT,
    -- No foreign keys: what a message is about is context for the reader, and an
    -- alert about the database must not depend on other rows.
    run_id            TEXT,
    schedule_id       TEXT,
    proposal_id       TEXT,
    item_id           TEXT,
    status            TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT,
    created_at        TEXT NOT NULL,
    sent_at           TEXT,
    message_id        INTEGER,
    last_error        TEXT
);
-- A chat's queue, oldest first (ids are ULIDs: they sort by creation).
CREATE INDEX notifications_queue ON notifications (chat_id, id) WHERE status = 'pending';
-- The delivery sweep's read: what is due next, across chats.
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
-- A proposal's message, to edit it when the proposal expires.
CREATE INDEX notifications_by_proposal ON notifications (proposal_id)
    WHERE proposal_id IS NOT NULL;
