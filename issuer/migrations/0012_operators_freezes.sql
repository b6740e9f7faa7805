-- Operators: people who may open the console (1) besides their own account page.
ALTER TABLE users ADD COLUMN operator BIGINT NOT NULL DEFAULT 0;

-- Change freezes in force at every gateway: each refuses every tools/call whose
-- `upstream/tool` matches a pattern until an operator lifts it (the row is then deleted;
-- the audit log keeps both events).
CREATE TABLE freezes (
    pattern    TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
