-- Per-chat preferences and delivery state: the zone new schedules use, and whether
-- Telegram refused delivery (the user blocked the bot), so alerts stop until they return.
CREATE TABLE chats (
    chat_id      INTEGER PRIMARY KEY,
    timezone     TEXT,
    blocked_at   TEXT,
    block_reason TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
