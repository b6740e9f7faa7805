//! The Portcullis issuer: the authorization server behind the gateway.
//!
//! It registers agents as OAuth clients, records the grants users give them, and turns a
//! user's grant into short-lived delegation tokens through RFC 8693 token exchange, attenuating
//! at every re-delegation. Tokens are signed with keys it makes and seals at rest, and verified
//! offline by gateways through its JWKS.
//!
//! The crate is a library with a thin binary: [`Issuer::open`] prepares storage and keys,
//! [`app`] is the whole HTTP surface as a `Router` (tests drive it in-process), and [`serve`]
//! runs it on a listener.

pub mod app;
pub mod audit;
pub mod audit_ingest;
mod authorize;
mod client_assertion;
pub mod client_auth;
pub mod client_metadata;
pub mod clients;
pub mod db;
pub mod external_idp;
pub mod grants;
pub mod grants_file;
pub mod introspection;
pub mod keys;
pub mod metrics;
pub mod oauth_error;
mod registration;
pub mod revocation;
pub mod safe_fetch;
pub mod secret;
pub mod token;
pub mod users;

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::{SystemTime, UNIX_EPOCH};

pub use app::app;
use db::Database;
use keys::{KeyEncryption, Keyring};

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

/// Everything a request handler needs.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Storage.
    pub db: Database,
    /// Signing keys; replaced when another process rotates them.
    pub keyring: Arc<ArcSwap<Keyring>>,
    /// Settings.
    pub config: Arc<IssuerConfig>,
    /// Publishes revocations to live streams.
    pub hub: Arc<revocation::RevocationHub>,
    /// Records exchanges and mints.
    pub audit: audit::AuditLog,
    /// Trusted external identity providers.
    pub idps: Arc<external_idp::Idps>,
}

impl AppState {
    /// The current signing keys.
    pub fn keys(&self) -> Arc<Keyring> {
        self.keyring.load_full()
    }
}

/// Why the issuer could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage failed.
    #[error("database: {0}")]
    Db(#[from] db::DbError),
    /// Keys failed.
    #[error("signing keys: {0}")]
    Keys(#[from] keys::KeyStoreError),
    /// The trusted identity providers are misconfigured.
    #[error(transparent)]
    Idp(#[from] external_idp::IdpError),
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A ready issuer: storage migrated, keys loaded.
#[derive(Debug, Clone)]
pub struct Issuer {
    state: AppState,
}

impl Issuer {
    /// Opens storage (migrating it), and loads or creates the signing key.
    pub async fn open(config: IssuerConfig, storage: &StorageOptions) -> Result<Self, Error> {
        let idps = Arc::new(external_idp::Idps::new(config.trusted_idps.clone())?);
        let db = open_database(storage).await?;
        db.migrate().await?;
        let sealing = match &storage.key_encryption_secret {
            Some(secret) => KeyEncryption::from_secret(secret)?,
            None => {
                tracing::warn!(
                    "NO KEY-ENCRYPTION SECRET CONFIGURED: signing keys are sealed with a development \
                     secret stored in {}; anyone who can read that directory can forge tokens. Set \
                     PORTCULLIS_KEY_ENCRYPTION_SECRET in production.",
                    storage.data_dir.display()
                );
                KeyEncryption::development(&storage.data_dir)?
            }
        };
        let keyring = keys::load_or_create(&db, &sealing, &config.issuer, now()).await?;
        let hub = revocation::RevocationHub::start(db.clone(), storage.database_url.clone())
            .await
            .map_err(|e| Error::Db(db::DbError::Sqlx(e)))?;
        Ok(Self {
            state: AppState {
                keyring: keys::watch(db.clone(), sealing, config.issuer.clone(), keyring),
                audit: audit::AuditLog::start(db.clone()),
                idps,
                db,
                config: Arc::new(config),
                hub,
            },
        })
    }

    /// The state handlers run on.
    pub fn state(&self) -> &AppState {
        &self.state
    }
}

/// Opens the configured database (creating the data directory), without migrating it.
pub async fn open_database(storage: &StorageOptions) -> Result<Database, Error> {
    std::fs::create_dir_all(&storage.data_dir).map_err(|source| Error::DataDir {
        path: storage.data_dir.display().to_string(),
        source,
    })?;
    Ok(match &storage.database_url {
        Some(url) => Database::connect(url).await?,
        None => Database::open_sqlite_in(&storage.data_dir).await?,
    })
}

/// Serves the issuer on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Without TCP_NODELAY a small response on loopback can stall ~40 ms (Nagle + delayed ACK).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!("cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
