-- The longest token lifetime of every issuer opened on this database, recorded as it opens. A
-- revocation of an agent or a user, and a retired signing key, must be kept until every token
-- they cover has expired: whichever process revokes or prunes (a replica, the CLI) reads the
-- longest here instead of trusting its own flags.
CREATE TABLE token_lifetimes (
    seconds    BIGINT PRIMARY KEY,
    -- When an issuer first opened with it.
    first_seen BIGINT NOT NULL
);
