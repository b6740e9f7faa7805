-- Step-up approvals: a gateway asks, a person answers on the approval page, a gateway spends
-- the approval on the one call it names (tool and digest of the canonical arguments).
CREATE TABLE approvals (
    id                 TEXT PRIMARY KEY,
    grant_id           TEXT NOT NULL,
    token_id           TEXT NOT NULL,
    subject            TEXT NOT NULL,
    -- The actor chain, outermost first, as a JSON list: only the same chain may spend it.
    actors             TEXT NOT NULL,
    upstream           TEXT NOT NULL,
    tool               TEXT NOT NULL,
    -- The arguments as the agent sent them, for the person to read.
    arguments          TEXT NOT NULL,
    digest             TEXT NOT NULL,
    -- JSON list of the people one of whom gives the second approval; NULL = the user alone.
    four_eyes          TEXT,
    valid_for          BIGINT NOT NULL,
    -- pending, approved, denied, spent, expired, void
    status             TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    -- pending: when the request lapses; approved: when the approval does.
    expires_at         BIGINT NOT NULL,
    approved_by_user   TEXT,
    approved_by_second TEXT,
    decided_by         TEXT,
    decided_at         BIGINT,
    spent_at           BIGINT,
    spent_by           TEXT
);
CREATE INDEX approvals_call ON approvals (grant_id, upstream, tool, digest);
CREATE INDEX approvals_subject ON approvals (subject, status);

-- Signed-in browser sessions (the approval page, and later the account pages).
CREATE TABLE sign_in_sessions (
    -- SHA-256 of the cookie's value: a stolen database holds no usable session.
    id_hash      TEXT PRIMARY KEY,
    username     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
