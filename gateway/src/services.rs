//! The gateway's background services, each a Pingora `BackgroundService` that runs until
//! shutdown: the decision log's writer and shipper, the pins reloader, the configuration
//! reloader and the issuer's key refresher. The revocation follower lives with the rest of the
//! kill switch, in `kill`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::issuer_keys::IssuerKeys;
use crate::state::GatewayState;
use crate::{metrics, routes};

/// How often the issuer's keys are refreshed in the background (rotation picks them up sooner,
/// on the first token with a new `kid`).
const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// Writes the decision log and ships it to the issuer.
#[derive(Debug)]
pub(crate) struct DecisionShipper {
    pub(crate) state: Arc<GatewayState>,
}

#[async_trait]
impl BackgroundService for DecisionShipper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if let Some(writer) = &self.state.decision_writer {
            tokio::select! {
                _ = shutdown.changed() => {}
                () = writer.run() => {}
            }
        }
    }
}

/// Picks up pins approved by an operator (another process writes the file).
#[derive(Debug)]
pub(crate) struct PinReloader {
    pub(crate) state: Arc<GatewayState>,
}

#[async_trait]
impl BackgroundService for PinReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(pins) = &self.state.pins else {
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => pins.reload_if_changed(),
            }
        }
    }
}

/// Reloads the upstream table on SIGHUP and when the configuration file changes.
#[derive(Debug)]
pub(crate) struct ConfigReloader {
    pub(crate) state: Arc<GatewayState>,
}

impl ConfigReloader {
    fn reload(&self) {
        match routes::reload(&self.state.settings) {
            Ok(Some((routes, reloaded))) => {
                self.state.routes.store(Arc::new(routes));
                metrics::config_reload("applied");
                tracing::info!("configuration reloaded: {} upstream(s)", reloaded.upstreams);
                if reloaded.restart_needed {
                    tracing::warn!(
                        "the configuration file changes settings other than upstreams, \
                         allowed_hosts and allowed_origins; those apply after a restart"
                    );
                }
            }
            Ok(None) => {}
            Err(e) => {
                metrics::config_reload("invalid");
                tracing::error!("configuration not reloaded, the running one stays: {e}");
            }
        }
    }
}

/// The file's contents, to notice a change however it was made (edit, rename, symlink swap).
fn file_contents(path: Option<&std::path::Path>) -> Option<Vec<u8>> {
    std::fs::read(path?).ok()
}

#[async_trait]
impl BackgroundService for ConfigReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let source = self.state.settings.source.as_deref();
        if source.is_none() {
            return;
        }
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!("SIGHUP will not reload the configuration: {e}");
                None
            }
        };
        let mut seen = file_contents(source);
        loop {
            let hung_up = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = hung_up => {
                    seen = file_contents(source);
                    self.reload();
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    let now = file_contents(source);
                    if now.is_some() && now != seen {
                        seen = now;
                        self.reload();
                    }
                }
            }
        }
    }
}

/// Keeps the issuer's keys current.
#[derive(Debug)]
pub(crate) struct KeyRefresher {
    pub(crate) keys: Arc<IssuerKeys>,
}

#[async_trait]
impl BackgroundService for KeyRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let wait = if self.keys.is_loaded() {
                JWKS_REFRESH_INTERVAL
            } else {
                // Until the issuer answers once, keep trying: the gateway is not ready.
                Duration::from_secs(2)
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(wait) => {}
            }
            if let Err(e) = self.keys.refresh().await {
                tracing::warn!("JWKS refresh failed: {e}");
            }
        }
    }
}
