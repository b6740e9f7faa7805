//! `serve`: the HTTP server, with the settings only the server needs (where it listens, its
//! bearer tokens, registration, trusted identity providers); the ones it shares with every
//! command come from [`Settings`].

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use portcullis_issuer::Settings;

use super::io::read_file;

#[derive(Debug, Args)]
pub(super) struct Serve {
    /// Address to listen on.
    #[arg(
        long,
        env = "PORTCULLIS_ISSUER_LISTEN",
        default_value = "127.0.0.1:9000"
    )]
    listen: SocketAddr,
    /// File holding the bearer token for the /admin API (also PORTCULLIS_ADMIN_TOKEN).
    /// Without one, the admin API is disabled; the CLI works either way.
    #[arg(long, env = "PORTCULLIS_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// File holding the bearer token gateways use to ship decision events to
    /// POST /audit/decisions (also PORTCULLIS_AUDIT_INGEST_TOKEN). Without one, the
    /// endpoint is disabled.
    #[arg(long, env = "PORTCULLIS_AUDIT_INGEST_TOKEN_FILE")]
    audit_ingest_token_file: Option<PathBuf>,
    /// Close POST /register (RFC 7591): only operator-registered clients and clients with
    /// a metadata document URL can then ask for consent.
    #[arg(long, env = "PORTCULLIS_NO_DYNAMIC_REGISTRATION")]
    no_dynamic_registration: bool,
    /// YAML list of trusted identity providers whose ID or access tokens may be the
    /// subject_token of a first exchange: issuer, jwks_uri, audience, user_claim (default
    /// sub), algorithms (default RS256, ES256, EdDSA).
    #[arg(long, env = "PORTCULLIS_TRUSTED_IDPS_FILE")]
    trusted_idps: Option<PathBuf>,
    /// DEVELOPMENT ONLY: fetch client metadata documents from loopback addresses, over
    /// plain http too. Private and link-local addresses stay refused.
    #[arg(long, env = "PORTCULLIS_DEV_ALLOW_LOOPBACK_FETCH")]
    dev_allow_loopback_fetch: bool,
}

impl Serve {
    pub(super) async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let mut config = settings.config();
        config.dynamic_registration = !self.no_dynamic_registration;
        config.allow_loopback_fetch = self.dev_allow_loopback_fetch;
        if let Some(path) = self.trusted_idps {
            config.trusted_idps = serde_yaml::from_str(&read_file(&path)?)
                .with_context(|| format!("{}", path.display()))?;
        }
        if self.dev_allow_loopback_fetch {
            tracing::warn!(
                "DEVELOPMENT MODE: client metadata documents may be fetched from loopback"
            );
        }
        config.admin_token = bearer_token(self.admin_token_file, "PORTCULLIS_ADMIN_TOKEN")?;
        config.audit_ingest_token = bearer_token(
            self.audit_ingest_token_file,
            "PORTCULLIS_AUDIT_INGEST_TOKEN",
        )?;
        let issuer = portcullis_issuer::Issuer::open(config, &settings.storage()?).await?;
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("binding {}", self.listen))?;
        tracing::info!(
            "issuer {} listening on {}",
            settings.issuer_url,
            listener.local_addr()?
        );
        portcullis_issuer::serve(listener, issuer.state().clone(), shutdown_signal()).await?;
        Ok(())
    }
}

/// A bearer token from a file or, without one, an environment variable; at least 16 characters.
fn bearer_token(file: Option<PathBuf>, env: &str) -> anyhow::Result<Option<String>> {
    let token = match file {
        Some(path) => Some(read_file(&path)?.trim().to_owned()),
        None => std::env::var(env).ok(),
    };
    if token.as_ref().is_some_and(|t| t.len() < 16) {
        bail!("the token from {env} (or its file) must be at least 16 characters");
    }
    Ok(token)
}

/// Resolves on Ctrl-C or SIGTERM (what container runtimes send), so in-flight requests finish.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
