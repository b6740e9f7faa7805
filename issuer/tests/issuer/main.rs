//! The issuer driven in-process through its router, on SQLite always and on PostgreSQL when
//! `PORTCULLIS_TEST_POSTGRES_URL` is set (each test in a schema of its own).

mod account;
mod admin_api;
mod approvals;
mod audit;
mod authorization_code;
mod browser;
mod cli;
mod console;
mod crash;
mod external_idp;
mod grants_file;
mod keys;
mod maintenance;
mod registered_grants;
mod revocation;
mod support;
mod throttle;
mod token_exchange;
mod upstream_links;
