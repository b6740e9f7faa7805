-- Revocations and the audit chain. Both number their rows with MAX(seq) + 1 inside the writing
-- transaction, under the primary key: a concurrent writer collides, retries, and so commits in
-- sequence order. A sequence object would hand out numbers that commit out of order, and a
-- reader resuming "after seq N" could then miss a row that committed late.

CREATE TABLE revocations (
    seq           BIGINT PRIMARY KEY,
    kind          TEXT NOT NULL,
    -- The revoked value (jti, grant id, client id, user, session id), for operators.
    value         TEXT NOT NULL,
    -- What feeds publish instead of the value: base64url(SHA-256(kind ":" value)), 22 chars.
    target        TEXT NOT NULL,
    revoked_at    BIGINT NOT NULL,
    issued_before BIGINT,
    expires_at    BIGINT NOT NULL,
    reason        TEXT NOT NULL
);

CREATE INDEX revocations_target ON revocations (target);
CREATE INDEX revocations_expiry ON revocations (expires_at);

ALTER TABLE clients ADD COLUMN disabled_at BIGINT;

-- When a key stopped signing (keys rotate); it stays published until pruned.
ALTER TABLE signing_keys ADD COLUMN retired_at BIGINT;

CREATE TABLE audit_events (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    -- Canonical JSON (sorted keys, no spaces) of the event's details.
    data      TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    -- hex(SHA-256(prev_hash || canonical JSON of {seq, at, kind, data})).
    hash      TEXT NOT NULL
);
