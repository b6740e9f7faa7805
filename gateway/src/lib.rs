//! The Portcullis gateway: a Pingora reverse proxy that puts a gate in front of MCP servers.
//!
//! For every request to `/mcp/{upstream}` it verifies the agent's delegation token offline
//! (keys from the issuer's JWKS), authorizes each `tools/call` against the token's constraints
//! before anything is sent upstream, filters `tools/list` results to the tools the token allows,
//! and replaces the agent's token with a short-lived one of its own for that upstream only.
//!
//! The public API is small: a [`Config`](config::Config) is loaded, [`GatewayState::prepare`]
//! builds the shared state and [`run`] serves it (or [`spawn`] does both on a thread of its
//! own). [`run`] starts the proxy (`proxy`), the admin listener (`admin`), and background
//! services that refresh the issuer's keys, follow its revocations and end the live work they
//! cover (`kill`), reload the configuration, and write and ship the decision log. The
//! remaining public modules serve the command line (`pins`, `decision_log`) and the tests
//! and benchmarks of other crates (`jsonrpc_error`, `tools_list`).

mod admin;
mod approvals;
mod body_buffer;
pub mod clock;
pub mod config;
mod controls;
pub mod decision_log;
mod discovery;
mod drain;
mod fleet;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod issuer_keys;
mod jsonrpc;
pub mod jsonrpc_error;
mod kill;
mod list_filter;
mod metrics;
mod origin;
pub mod pins;
mod proxy;
mod rate_limit;
mod routes;
mod secret;
mod services;
mod session;
mod shared_state;
mod sse;
mod state;
mod stdio;
pub mod telemetry;
#[cfg(test)]
mod test_tokens;
mod token_cache;
pub mod tools_list;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

pub use crate::fleet::Fleet;
pub use crate::secret::Secret;
pub use crate::state::GatewayState;
pub use crate::upstream::downstream_token::KeyFileError;
pub use crate::upstream::{DownstreamAuth, Upstream};

use crate::config::Config;
use crate::kill::RevocationFollower;
use crate::proxy::Gateway;
use crate::services::{ConfigReloader, DecisionShipper, KeyRefresher, PinReloader};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The downstream signing key could not be loaded.
    #[error(transparent)]
    SigningKey(#[from] KeyFileError),
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

/// The shutdown signal of a gateway run as a process: SIGINT stops at once, SIGTERM once the
/// requests in flight have ended or the grace period has passed.
pub fn signals(state: &GatewayState) -> Box<dyn ShutdownSignalWatch> {
    Box::new(drain::DrainOnTerm {
        in_flight: state.in_flight.clone(),
        grace: Duration::from_secs(state.settings.grace_period_seconds),
    })
}

/// Runs the gateway until `shutdown` fires ([`signals`] in a binary). Blocks the calling
/// thread; it must not be inside a tokio runtime, since Pingora builds its own.
pub fn run(state: Arc<GatewayState>, shutdown: Box<dyn ShutdownSignalWatch>) {
    let settings = &state.settings;
    let conf = ServerConf {
        threads: settings.threads,
        grace_period_seconds: Some(settings.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(settings.grace_period_seconds),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Gateway::new(state.clone(), &server.configuration),
        "portcullis-proxy",
    );
    proxy.add_tcp(&settings.listen.to_string());

    let mut admin = Service::new(
        "portcullis-admin".to_owned(),
        admin::AdminApp::new(state.clone()),
    );
    admin.add_tcp(&settings.admin_listen.to_string());

    let refresher = background_service(
        "portcullis-jwks-refresh",
        KeyRefresher {
            keys: state.keys.clone(),
        },
    );

    let follower = background_service(
        "portcullis-revocations",
        RevocationFollower {
            revocations: state.revocations.clone(),
            keys: state.keys.clone(),
            sources: settings.revocation_sources.clone(),
            retry_max: settings.revocation_retry_max,
            canceller: state.canceller.clone(),
            controls: state.controls.clone(),
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
        settings.listen,
        settings.admin_listen,
        state.routes.load().upstream_count()
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
            let prepared = GatewayState::prepare(config);
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
