-- Portable SQL: the same migration runs on SQLite and PostgreSQL (through sqlx's Any driver).
-- Times are Unix seconds in BIGINT; JSON documents are TEXT.

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    alg           TEXT NOT NULL,
    public_jwk    TEXT NOT NULL,
    -- The private key, sealed with the key-encryption secret (XChaCha20-Poly1305, AAD = kid).
    sealed_secret TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    -- 1 for the key that signs new tokens; older keys stay published in the JWKS.
    active        BIGINT NOT NULL
);

CREATE TABLE clients (
    client_id   TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    -- SHA-256 of a 256-bit random secret: a slow password hash adds nothing at that entropy.
    secret_hash TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE grants (
    id                    TEXT PRIMARY KEY,
    subject               TEXT NOT NULL,
    client_id             TEXT NOT NULL REFERENCES clients (client_id),
    resources             TEXT NOT NULL,
    authorization_details TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    expires_at            BIGINT NOT NULL,
    revoked_at            BIGINT
);

CREATE INDEX grants_client ON grants (client_id);
