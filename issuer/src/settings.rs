//! The issuer's settings, from one source, and the lifetimes in force, recorded where every
//! process reads them.
//!
//! [`Settings`] is the one set of flags (and `PORTCULLIS_*` variables) that `serve` and every
//! operator command share: where the state is, the issuer's URL and the token lifetimes. An
//! operator sets them once, in the environment of the server and the shell alike, and a
//! command computes what `serve` computes. [`IssuerConfig`] and [`StorageOptions`] are what
//! they yield, and what embedders (tests, examples) build directly.
//!
//! A command run without the server's flags would still compute from the defaults, so the
//! lifetimes are also recorded in the database when an issuer opens
//! ([`record_token_lifetime`]): how long a revocation of an agent or a user, or a retired
//! signing key, is kept is the longest lifetime any issuer on the database has signed with
//! ([`longest_token_lifetime`]), whoever revokes or prunes. The longest ever, not the current
//! one: tokens signed before a restart with shorter lifetimes are still out there.

use std::path::PathBuf;

use crate::db::Database;
use crate::{Error, Issuer, external_idp};

/// The settings `serve` and every command share: flags, or the same `PORTCULLIS_*` variables.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Settings shared by serve and every command")]
pub struct Settings {
    /// Data directory: holds the SQLite database and, in development, the key-encryption secret.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_DATA_DIR",
        default_value = "portcullis-data"
    )]
    pub data_dir: PathBuf,
    /// Database URL instead of SQLite in the data directory, e.g. postgres://user@host/db.
    #[arg(long, global = true, env = "PORTCULLIS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// File holding the secret that seals signing keys at rest (32+ random characters). The
    /// secret can also come from PORTCULLIS_KEY_ENCRYPTION_SECRET. Without either, a development
    /// secret is generated into the data directory.
    #[arg(long, global = true, env = "PORTCULLIS_KEY_ENCRYPTION_SECRET_FILE")]
    pub key_encryption_secret_file: Option<PathBuf>,
    /// The issuer identifier: its public base URL, as gateways and clients reach it.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_ISSUER_URL",
        default_value = "http://127.0.0.1:9000"
    )]
    pub issuer_url: String,
    /// Lifetime of delegation tokens, in seconds.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_DELEGATION_TTL",
        default_value_t = 300,
        value_parser = clap::value_parser!(i64).range(1..)
    )]
    pub delegation_ttl: i64,
    /// Lifetime of a grant made by consent (and of its refresh tokens), in seconds.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_CONSENT_TTL",
        default_value_t = 30 * 24 * 3600,
        value_parser = clap::value_parser!(i64).range(1..)
    )]
    pub consent_ttl: i64,
}

/// Why the settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file they name could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Settings {
    /// Where the state is, and how keys are sealed.
    pub fn storage(&self) -> Result<StorageOptions, SettingsError> {
        let key_encryption_secret = match &self.key_encryption_secret_file {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            None => std::env::var("PORTCULLIS_KEY_ENCRYPTION_SECRET").ok(),
        };
        Ok(StorageOptions {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            key_encryption_secret,
        })
    }

    /// The issuer's configuration: its URL and lifetimes, every other setting at its default.
    pub fn config(&self) -> IssuerConfig {
        let mut config = IssuerConfig::new(&self.issuer_url);
        config.delegation_ttl = self.delegation_ttl;
        config.consent_ttl = self.consent_ttl;
        config
    }

    /// Opens the issuer these settings describe, as every command but `serve` uses it.
    pub async fn open(&self) -> Result<Issuer, Error> {
        Issuer::open(self.config(), &self.storage()?).await
    }

    /// Opens the database only (migrating nothing, loading no key).
    pub async fn open_database(&self) -> Result<Database, Error> {
        crate::open_database(&self.storage()?).await
    }
}

/// Settings of a running issuer.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// The issuer identifier and public base URL, without a trailing slash.
    pub issuer: String,
    /// Lifetime of delegation tokens, seconds.
    pub delegation_ttl: i64,
    /// Lifetime of client (`client_credentials`) tokens, seconds.
    pub client_token_ttl: i64,
    /// Lifetime of users' grant (subject) tokens, seconds.
    pub subject_token_ttl: i64,
    /// Bearer token for `/admin`; `None` disables the admin API.
    pub admin_token: Option<String>,
    /// Bearer token gateways present to `POST /audit/decisions`; `None` disables it.
    pub audit_ingest_token: Option<String>,
    /// Lifetime of a grant made by consent (and of its refresh tokens), seconds.
    pub consent_ttl: i64,
    /// Whether `POST /register` (RFC 7591) is open.
    pub dynamic_registration: bool,
    /// Development only: let client metadata documents be fetched over http from loopback.
    pub allow_loopback_fetch: bool,
    /// Identity providers whose tokens may be the `subject_token` of a first exchange.
    pub trusted_idps: Vec<external_idp::TrustedIdp>,
}

impl IssuerConfig {
    /// The longest any token this issuer signs can live: how long a revocation of an agent or a
    /// user must be kept for every token it covers to have expired.
    pub fn max_token_lifetime(&self) -> i64 {
        self.delegation_ttl
            .max(self.client_token_ttl)
            .max(self.subject_token_ttl)
    }

    /// Defaults: 5-minute delegation and client tokens, 1-hour subject tokens, 30-day consents,
    /// no admin API, dynamic registration open, metadata documents fetched over https only.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into().trim_end_matches('/').to_owned(),
            delegation_ttl: 300,
            client_token_ttl: 300,
            subject_token_ttl: 3600,
            admin_token: None,
            audit_ingest_token: None,
            consent_ttl: 30 * 24 * 3600,
            dynamic_registration: true,
            allow_loopback_fetch: false,
            trusted_idps: Vec::new(),
        }
    }
}

/// Where the issuer keeps its state, and how keys are sealed.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Data directory: the SQLite database and the development key-encryption secret.
    pub data_dir: PathBuf,
    /// A database URL overriding the SQLite default (e.g. `postgres://…`).
    pub database_url: Option<String>,
    /// The key-encryption secret; `None` uses a generated development secret.
    pub key_encryption_secret: Option<String>,
}

impl StorageOptions {
    /// The key-encryption key: from the configured secret, else the development secret in
    /// the data directory (made on first use).
    pub fn key_encryption(&self) -> Result<crate::keys::KeyEncryption, crate::keys::KeyStoreError> {
        match &self.key_encryption_secret {
            Some(secret) => crate::keys::KeyEncryption::from_secret(secret),
            None => crate::keys::KeyEncryption::development(&self.data_dir),
        }
    }
}

/// Records that an issuer signs tokens living up to `lifetime` seconds.
pub async fn record_token_lifetime(
    db: &Database,
    lifetime: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    db.write(|tx| {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO token_lifetimes (seconds, first_seen) VALUES ($1, $2)
                 ON CONFLICT (seconds) DO NOTHING",
            )
            .bind(lifetime)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
    })
    .await
}

/// The longest token lifetime in force: the longest any issuer on `db` has recorded, or `own`
/// (the caller's) when that is longer.
pub async fn longest_token_lifetime(db: &Database, own: i64) -> Result<i64, sqlx::Error> {
    let recorded: Option<i64> = sqlx::query_scalar("SELECT MAX(seconds) FROM token_lifetimes")
        .fetch_one(db.pool())
        .await?;
    Ok(recorded.map_or(own, |recorded| recorded.max(own)))
}
