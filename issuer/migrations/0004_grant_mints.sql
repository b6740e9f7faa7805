-- Exchanges per grant in the last hour, for a grant's `rate` cap at mint. Rows older than an
-- hour are deleted as new ones are written.
CREATE TABLE grant_mints (
    grant_id TEXT NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX grant_mints_grant_at ON grant_mints (grant_id, at);
