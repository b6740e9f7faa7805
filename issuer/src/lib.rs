//! The Portcullis issuer: the authorization server behind the gateway.
//!
//! It registers agents as OAuth clients, records the grants users give them, and turns a
//! user's grant into short-lived delegation tokens through RFC 8693 token exchange, attenuating
//! at every re-delegation. Tokens are signed with keys it makes and seals at rest, and verified
//! offline by gateways through its JWKS.
//!
//! The crate is a library with a thin binary: [`Issuer::open`] prepares storage and keys,
//! [`app`] is the whole HTTP surface as a `Router` (tests drive it in-process), and [`serve`]
//! runs it on a listener. The binary's commands read one [`Settings`] and call into the
//! library; what they know beyond parsing and printing lives here (e.g. [`explain`]).
//!
//! The HTTP endpoints with more than one concept have a folder: [`token`] (a file per grant
//! type over one minting core) and `authorize` (request validation, pending requests, CSRF,
//! consent, and one typed error mapped to a page or a redirect).

mod account;
pub mod admin;
pub mod app;
pub mod approvals;
pub mod audit;
pub mod audit_ingest;
mod authorize;
mod client_assertion;
pub mod client_auth;
pub mod client_metadata;
pub mod clients;
pub mod console;
mod cookie;
pub mod db;
pub mod explain;
pub mod external_idp;
pub mod freezes;
pub mod grants;
pub mod grants_file;
pub mod introspection;
pub mod keys;
pub mod maintenance;
pub mod metrics;
pub mod oauth_error;
mod page;
mod registration;
mod request;
pub mod revocation;
pub mod safe_fetch;
pub mod secret;
pub mod settings;
mod sign_in;
mod spent;
pub mod throttle;
pub mod token;
pub mod upstream_links;
pub mod users;

use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::{SystemTime, UNIX_EPOCH};

pub use app::app;
use db::Database;
use keys::Keyring;
pub use settings::{IssuerConfig, Settings, StorageOptions};

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
    /// The console's live lines.
    pub console: Arc<console::DecisionFeed>,
    /// Seals new signing keys (rotation through the admin API) and keys the audit anchor.
    pub sealing: keys::KeyEncryption,
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
    /// The settings could not be read.
    #[error(transparent)]
    Settings(#[from] settings::SettingsError),
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
        settings::record_token_lifetime(&db, config.max_token_lifetime(), now())
            .await
            .map_err(db::DbError::Sqlx)?;
        if storage.key_encryption_secret.is_none() {
            tracing::warn!(
                "NO KEY-ENCRYPTION SECRET CONFIGURED: signing keys are sealed with a development \
                 secret stored in {}; anyone who can read that directory can forge tokens. Set \
                 PORTCULLIS_KEY_ENCRYPTION_SECRET in production.",
                storage.data_dir.display()
            );
        }
        let sealing = storage.key_encryption()?;
        let keyring = keys::load_or_create(&db, &sealing, &config.issuer, now()).await?;
        let hub = revocation::RevocationHub::start(db.clone(), storage.database_url.clone())
            .await
            .map_err(|e| Error::Db(db::DbError::Sqlx(e)))?;
        Ok(Self {
            state: AppState {
                keyring: keys::watch(db.clone(), sealing.clone(), config.issuer.clone(), keyring),
                sealing,
                audit: audit::AuditLog::start(db.clone()),
                console: console::DecisionFeed::start(db.clone()),
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
    // The peer's address, for throttling sign-in per address.
    let app = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
