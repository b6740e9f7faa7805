-- The authorization-code flow: people who sign in at the issuer, clients that redirect to it,
-- and the short-lived artefacts of the flow. Secrets of any kind (codes, refresh tokens, request
-- handles) are stored as SHA-256 hashes, so a copy of the database cannot replay them.

CREATE TABLE users (
    username              TEXT PRIMARY KEY,
    -- argon2id, in PHC string format.
    password_hash         TEXT NOT NULL,
    -- The most this person may delegate by consent: resources (JSON list) and an mcp_tools
    -- authorization detail (JSON). A consent can only narrow it.
    resources             TEXT NOT NULL,
    authorization_details TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    disabled_at           BIGINT
);

-- JSON list; NULL for clients that never redirect (agents using token exchange only).
ALTER TABLE clients ADD COLUMN redirect_uris TEXT;
-- client_secret_basic (either secret method), none (public), or private_key_jwt.
ALTER TABLE clients ADD COLUMN auth_method TEXT NOT NULL DEFAULT 'client_secret_basic';
-- A JWK set for private_key_jwt.
ALTER TABLE clients ADD COLUMN jwks TEXT;
-- operator, dynamic (RFC 7591) or metadata (a client ID metadata document).
ALTER TABLE clients ADD COLUMN origin TEXT NOT NULL DEFAULT 'operator';
-- When a metadata document was last fetched.
ALTER TABLE clients ADD COLUMN fetched_at BIGINT;

CREATE TABLE authorization_requests (
    handle_hash    TEXT PRIMARY KEY,
    csrf_hash      TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    state          TEXT,
    resource       TEXT NOT NULL,
    -- Requested authorization_details (JSON), or NULL for "whatever the person allows".
    requested      TEXT,
    -- Set once the person has signed in.
    username       TEXT,
    expires_at     BIGINT NOT NULL
);

CREATE TABLE authorization_codes (
    code_hash      TEXT PRIMARY KEY,
    grant_id       TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    resource       TEXT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT
);

-- One family per consent (its grant): a refresh token used twice revokes the grant.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id   TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    resource   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);

-- private_key_jwt assertions seen, so none is accepted twice (RFC 7523 §3, item 7).
CREATE TABLE client_assertions (
    jti_hash   TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
