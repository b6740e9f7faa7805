-- Failed sign-ins, counted per user (`user:NAME`) and per address (`addr:IP`) in a fixed
-- window, so that every issuer replica refuses online password guessing alike.
CREATE TABLE sign_in_failures (
    key          TEXT PRIMARY KEY,
    failures     BIGINT NOT NULL,
    window_start BIGINT NOT NULL
);
