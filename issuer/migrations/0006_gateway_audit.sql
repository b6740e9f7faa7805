-- Decision events shipped by gateways join the issuer's audit chain. Each gateway numbers its
-- events; the highest number accepted per gateway makes a retried batch harmless.
CREATE TABLE gateway_audit_cursors (
    gateway  TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
