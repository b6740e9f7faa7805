-- Upstreams protected by an authorization server of their own (`downstream_auth: oauth` at
-- the gateway): where that server is and the issuer's client there, by the resource grants
-- name for the upstream at the gateway (`upstream_resource` is its own identifier, from its
-- RFC 9728 metadata). The client secret is sealed (`v1.` …).
CREATE TABLE upstream_oauth (
    resource               TEXT PRIMARY KEY,
    upstream_resource      TEXT NOT NULL,
    authorization_server   TEXT NOT NULL,
    authorization_endpoint TEXT NOT NULL,
    token_endpoint         TEXT NOT NULL,
    client_id              TEXT NOT NULL,
    client_secret          TEXT,
    scope                  TEXT,
    created_at             BIGINT NOT NULL
);

-- A person's account at such an upstream, linked once: their tokens there, sealed and bound
-- to the person and the resource. Revoking the grant (or the person) or unlinking deletes it.
CREATE TABLE upstream_links (
    username          TEXT NOT NULL,
    resource          TEXT NOT NULL,
    access_token      TEXT NOT NULL,
    access_expires_at BIGINT NOT NULL,
    refresh_token     TEXT,
    linked_at         BIGINT NOT NULL,
    PRIMARY KEY (username, resource)
);

-- Links under way: the authorization request sent the person to the upstream's server with
-- this state (stored hashed) and PKCE verifier; answered once, within ten minutes.
CREATE TABLE upstream_link_requests (
    state_hash TEXT PRIMARY KEY,
    username   TEXT NOT NULL,
    resource   TEXT NOT NULL,
    verifier   TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
