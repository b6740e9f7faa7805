//! The Portcullis gateway: a Pingora reverse proxy that puts a gate in front of MCP servers.
//!
//! For every request to `/mcp/{upstream}` it verifies the agent's delegation token offline
//! (keys from the issuer's JWKS), authorizes each `tools/call` against the token's constraints
//! before anything is sent upstream, filters `tools/list` results to the tools the token allows,
//! and replaces the agent's token with a short-lived one of its own for that upstream only.
//!
//! [`run`] starts four Pingora services: the proxy ([`proxy::Gateway`]), the admin listener
//! ([`admin::AdminApp`]), a background task that refreshes the issuer's keys, and one that
//! follows the issuer's revocations and ends the live work they cover ([`revocation`]).

pub mod admin;
pub mod config;
pub mod controls;
pub mod decision_log;
pub mod discovery;
pub mod downstream_token;
pub mod fleet;
pub mod issuer_keys;
pub mod jsonrpc;
pub mod jsonrpc_error;
pub mod members;
pub mod metrics;
pub mod origin;
pub mod pins;
pub mod proxy;
pub mod rate_limit;
pub mod revocation;
pub mod routes;
pub mod session;
pub mod sse;
#[cfg(test)]
mod test_tokens;
pub mod token_cache;
pub mod tools_list;
pub mod upstream_client;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use pingora::services::listening::Service;

use crate::config::Config;
use crate::downstream_token::DownstreamMinter;
use crate::issuer_keys::IssuerKeys;
use crate::proxy::{Gateway, GatewayState};

/// How often the issuer's keys are refreshed in the background (rotation picks them up sooner,
/// on the first token with a new `kid`).
const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The downstream signing key could not be loaded.
    #[error(transparent)]
    SigningKey(#[from] downstream_token::KeyFileError),
    /// The pins file could not be read.
    #[error(transparent)]
    Pins(#[from] pins::PinError),
    /// The decision log could not be opened.
    #[error("the decision log in {dir}: {source}")]
    DecisionLog {
        /// Its directory.
        dir: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A runtime for the first key fetch could not be built.
    #[error("starting a runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

struct DecisionShipper {
    state: Arc<GatewayState>,
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
struct PinReloader {
    state: Arc<GatewayState>,
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
struct ConfigReloader {
    state: Arc<GatewayState>,
}

impl ConfigReloader {
    fn reload(&self) {
        match routes::reload(&self.state.config) {
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
        let source = self.state.config.source.as_deref();
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

struct KeyRefresher {
    keys: Arc<IssuerKeys>,
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

struct RevocationFollower {
    state: Arc<GatewayState>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Up to half again as long, so a fleet of gateways does not reconnect in lockstep.
fn jittered(base: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let spread = match getrandom::fill(&mut byte) {
        Ok(()) => u32::from(byte[0]),
        Err(_) => 128,
    };
    base + base * spread / 512
}

impl RevocationFollower {
    async fn follow(&self) {
        let state = &self.state;
        let sources = &state.config.revocation_sources;
        let retry_max = state.config.revocation_retry_max;
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = std::time::Instant::now();
            let result =
                revocation::follow_stream(&state.revocations, sources, unix_now, |killed| {
                    proxy::cancel_killed(state, killed)
                })
                .await;
            match result {
                Ok(()) => tracing::warn!("the revocation stream ended; reconnecting"),
                Err(e) => tracing::warn!("revocation stream: {e}; falling back to the feed"),
            }
            if started.elapsed() > Duration::from_secs(10) {
                backoff = Duration::from_millis(100);
            }
            // Catch up through the signed feed while the stream is down.
            match revocation::poll_feed(&state.revocations, &state.keys, sources, unix_now).await {
                Ok(killed) => proxy::cancel_killed(state, killed),
                Err(e) => tracing::debug!("revocation feed: {e}"),
            }
            tokio::time::sleep(jittered(backoff)).await;
            backoff = (backoff * 2).min(retry_max);
        }
    }
}

#[async_trait]
impl BackgroundService for RevocationFollower {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = shutdown.changed() => {}
            () = self.follow() => {}
        }
    }
}

/// Builds the shared state: the issuer's keys and revocations (fetched once now; a failure is
/// logged and retried in the background) and the downstream signer.
pub fn prepare(config: Config) -> Result<Arc<GatewayState>, StartError> {
    let keys = Arc::new(IssuerKeys::new(
        config.issuer.clone(),
        config.jwks_url.clone(),
        config.leeway_seconds,
    ));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(keys.refresh()) {
        Ok(count) => tracing::info!("loaded {count} issuer key(s) from {}", config.jwks_url),
        Err(e) => tracing::warn!("issuer keys not loaded yet (retrying in the background): {e}"),
    }
    let revocations =
        revocation::Revocations::new(config.revocation_mode, config.max_staleness_seconds);
    let initial = revocation::poll_feed(&revocations, &keys, &config.revocation_sources, unix_now);
    match runtime.block_on(initial) {
        Ok(_) => tracing::info!("revocations loaded up to {}", revocations.version()),
        Err(e) => tracing::warn!("revocations not loaded yet (retrying in the background): {e}"),
    }
    if config.jwks_url.starts_with("http://")
        && !["http://127.", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| config.jwks_url.starts_with(p))
    {
        tracing::warn!(
            "the issuer's JWKS is fetched over plain HTTP from {}: anyone on that path can \
             substitute signing keys; use https outside loopback",
            config.jwks_url
        );
    }
    if config.signing_key_file.is_none() {
        tracing::info!(
            "downstream tokens are signed with a key generated at start; set signing_key_file \
             when several replicas serve one address"
        );
    }
    let minter = DownstreamMinter::new(
        config.public_url.clone(),
        config.downstream_token_ttl_seconds,
        config.signing_key_file.as_deref(),
    )?;
    let jwks_document = Bytes::from(serde_json::to_vec(&minter.jwks()).expect("a JWKS serialises"));
    let (decisions, decision_writer) = match &config.audit {
        Some(audit) => {
            let (log, writer) =
                decision_log::open(audit.clone()).map_err(|source| StartError::DecisionLog {
                    dir: audit.dir.display().to_string(),
                    source,
                })?;
            (Some(log), Some(writer))
        }
        None => (None, None),
    };
    let pins = config.pins_file.clone().map(pins::Pins::open).transpose()?;
    Ok(Arc::new(GatewayState {
        pins,
        decisions,
        decision_writer,
        controls: controls::Controls::new(config.admin_token.as_deref()),
        routes: arc_swap::ArcSwap::from_pointee(routes::Routes::new(&config)),
        sessions: session::Sessions::default(),
        rate_limiter: rate_limit::RateLimiter::default(),
        token_cache: token_cache::TokenCache::new(config.token_cache_size, config.leeway_seconds),
        config,
        keys,
        revocations,
        minter,
        jwks_document,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a reqwest client with static settings builds"),
    }))
}

/// Runs the gateway until `shutdown` fires (use [`RunArgs::default`]'s Unix signal watcher in a
/// binary). Blocks the calling thread; it must not be inside a tokio runtime, since Pingora
/// builds its own.
pub fn run(state: Arc<GatewayState>, shutdown: Box<dyn ShutdownSignalWatch>) {
    let config = &state.config;
    let conf = ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(config.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(config.grace_period_seconds),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(state.clone()),
        "portcullis-proxy",
    );
    proxy.add_tcp(&config.listen.to_string());

    let mut admin = Service::new(
        "portcullis-admin".to_owned(),
        admin::AdminApp::new(state.clone()),
    );
    admin.add_tcp(&config.admin_listen.to_string());

    let refresher = background_service(
        "portcullis-jwks-refresh",
        KeyRefresher {
            keys: state.keys.clone(),
        },
    );

    let follower = background_service(
        "portcullis-revocations",
        RevocationFollower {
            state: state.clone(),
        },
    );

    let shipper = background_service(
        "portcullis-decision-log",
        DecisionShipper {
            state: state.clone(),
        },
    );

    let pin_reloader = background_service(
        "portcullis-pins",
        PinReloader {
            state: state.clone(),
        },
    );

    let reloader = background_service(
        "portcullis-config-reload",
        ConfigReloader {
            state: state.clone(),
        },
    );

    server.add_service(proxy);
    server.add_service(reloader);
    server.add_service(shipper);
    server.add_service(pin_reloader);
    server.add_service(admin);
    server.add_service(refresher);
    server.add_service(follower);
    tracing::info!(
        "gateway listening on {} (admin {}), {} upstream(s)",
        config.listen,
        config.admin_listen,
        config.upstreams.len()
    );
    server.run(RunArgs {
        shutdown_signal: shutdown,
    });
}

/// A gateway running on a thread of its own, stopped on [`RunningGateway::stop`] or drop.
#[derive(Debug)]
pub struct RunningGateway {
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct WatchSignal(tokio::sync::watch::Receiver<bool>);

#[async_trait]
impl ShutdownSignalWatch for WatchSignal {
    async fn recv(&self) -> pingora::server::ShutdownSignal {
        let mut stop = self.0.clone();
        // Either the flag was raised or the sender is gone: both mean stop.
        let _raised_or_gone = stop.wait_for(|stop| *stop).await;
        pingora::server::ShutdownSignal::FastShutdown
    }
}

/// Prepares and runs the gateway on a new thread, for embedding it in another program (the
/// demo, the end-to-end tests). It returns once the gateway is prepared, which includes a first
/// fetch of the issuer's keys: inside a tokio runtime, call it through `spawn_blocking` so the
/// runtime can go on serving (it may be serving that very issuer).
pub fn spawn(config: Config) -> Result<RunningGateway, StartError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("portcullis-gateway".into())
        .spawn(move || {
            let prepared = prepare(config);
            let state = prepared.as_ref().ok().cloned();
            // If the caller stopped waiting, there is nobody to tell and nothing to run for.
            if ready_tx.send(prepared.map(|_| ())).is_ok()
                && let Some(state) = state
            {
                run(state, Box::new(WatchSignal(stopped)));
            }
        })?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(RunningGateway {
            stop,
            thread: Some(thread),
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(StartError::Runtime(std::io::Error::other(
            "the gateway thread exited while starting",
        ))),
    }
}

impl RunningGateway {
    /// Stops the gateway and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // No receiver left means the server loop has already ended.
        let _no_receiver = self.stop.send(true);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the gateway thread panicked");
        }
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        self.shutdown();
    }
}
