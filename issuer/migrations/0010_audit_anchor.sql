-- Where the audit chain starts once old events are pruned (`maintenance prune
-- --audit-older-than-days`): the first kept event and the hash it chains from, authenticated
-- with a key derived from the key-encryption secret, so that whoever can write the database
-- cannot move the start of the chain. One row: each pruning replaces it.
CREATE TABLE audit_anchor (
    id        BIGINT PRIMARY KEY,
    seq       BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    pruned_at BIGINT NOT NULL,
    mac       TEXT NOT NULL
);
