//! Upstreams that speak MCP over stdio: a command the gateway starts, not a URL.
//!
//! Many MCP servers are published as programs that read JSON-RPC on stdin and write it on
//! stdout. The gateway puts each behind a [`Bridge`]: a small MCP server over Streamable HTTP
//! on a loopback port of its own, run on a thread of its own, that relays every message to
//! the program and back ([`relay`]). The proxy then treats the upstream as any HTTP upstream
//! (routing, verification, judging, list filtering, pinning, the kill switch and the
//! cancellation it sends are all the same code), so nothing on the request path knows that a
//! program answers.
//!
//! The bridge is reachable only with a random credential made when it starts, which the
//! upstream's configuration carries as its `Authorization` header: another process on the
//! host cannot use the loopback port to bypass the gateway.
//!
//! The program ([`child`]) starts with the environment the configuration lists and nothing
//! else, in its working directory, under its resource limits, in a process group of its own
//! that is killed whole. `instances: pooled` (the default) shares one process among every
//! session and starts it again when it exits; `per_session` starts one per MCP session, with
//! the agent's own client capabilities, and stops it when the session ends.
//!
//! Bridges are kept in a process-wide table by upstream name and command: a reload that keeps
//! an upstream's command keeps its bridge and its sessions; the last route to drop a bridge
//! stops it, and with it its programs.

mod child;
mod progress;
mod relay;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use self::child::Programs;
use crate::secret::Secret;

/// The path the bridge serves MCP at.
pub(crate) const BRIDGE_PATH: &str = "/mcp";

/// How a stdio upstream is started: the validated `command:` section.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct StdioCommand {
    /// The program: a path, or a name looked up in the `PATH` it is given.
    pub(crate) program: String,
    /// Its arguments.
    pub(crate) args: Vec<String>,
    /// Its whole environment: the variables set, and those passed on from the gateway's.
    pub(crate) env: BTreeMap<String, String>,
    /// Its working directory; default: the gateway's.
    pub(crate) working_dir: Option<PathBuf>,
    /// One process for every session, or one per session.
    pub(crate) instances: Instances,
    /// Resource limits of the process.
    pub(crate) limits: Limits,
}

/// How many processes serve an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum Instances {
    /// One process serves every session, and is started again when it exits.
    #[default]
    Pooled,
    /// A process per MCP session, stopped when the session ends.
    PerSession,
}

/// `setrlimit(2)` limits of a stdio upstream's process; `None` leaves the gateway's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct Limits {
    /// Address space, bytes (`RLIMIT_AS`).
    pub(crate) memory_bytes: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub(crate) open_files: Option<u64>,
    /// CPU time, seconds (`RLIMIT_CPU`).
    pub(crate) cpu_seconds: Option<u64>,
}

/// A stdio upstream's loopback MCP endpoint. Dropping the last handle stops it.
#[derive(Debug)]
pub(crate) struct Bridge {
    addr: SocketAddr,
    credential: Secret,
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

/// A bridge shared by the upstreams that use it; equal when it is the same bridge.
#[derive(Debug, Clone)]
pub(crate) struct BridgeHandle(Arc<Bridge>);

impl PartialEq for BridgeHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Why a bridge could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BridgeError {
    /// No loopback port, or no thread.
    #[error("starting the stdio bridge: {0}")]
    Io(#[from] std::io::Error),
}

type Table = HashMap<(String, StdioCommand), Weak<Bridge>>;

/// The running bridges, by upstream name and command.
static BRIDGES: Mutex<Option<Table>> = Mutex::new(None);

impl BridgeHandle {
    /// The bridge of upstream `name` running `command`: the running one, or a new one. It
    /// reads bodies up to `max_body` (the gateway has bounded them already).
    pub(crate) fn for_upstream(
        name: &str,
        command: &StdioCommand,
        max_body: usize,
    ) -> Result<Self, BridgeError> {
        let mut table = BRIDGES.lock().unwrap_or_else(|e| e.into_inner());
        let table = table.get_or_insert_with(HashMap::new);
        table.retain(|_, bridge| bridge.strong_count() > 0);
        let key = (name.to_owned(), command.clone());
        if let Some(bridge) = table.get(&key).and_then(Weak::upgrade) {
            return Ok(Self(bridge));
        }
        let bridge = Arc::new(Bridge::start(name, command.clone(), max_body)?);
        table.insert(key, Arc::downgrade(&bridge));
        Ok(Self(bridge))
    }

    /// Where the proxy reaches it.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// The `Authorization` value it requires.
    pub(crate) fn credential(&self) -> &Secret {
        &self.0.credential
    }
}

impl Bridge {
    /// Binds a loopback port and serves it from a thread of its own. The program starts with
    /// the first session.
    fn start(name: &str, command: StdioCommand, max_body: usize) -> Result<Self, BridgeError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).expect("the OS random source is available");
        let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let credential = Secret::new(format!("Bearer {token}"));
        let (stop, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("stdio-{name}"))
            .enable_all()
            .build()?;
        let upstream = name.to_owned();
        let required = credential.clone();
        std::thread::Builder::new()
            .name(format!("stdio-bridge-{name}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let programs = Programs::new(upstream.clone(), command);
                    let served = (programs.clone(), max_body);
                    let result = serve(listener, required, served, stopped).await;
                    if let Err(error) = result {
                        tracing::error!(%upstream, %error, "the stdio bridge stopped");
                    }
                    programs.stop().await;
                });
            })?;
        tracing::info!(upstream = %name, %addr, "stdio bridge listening on loopback");
        Ok(Self {
            addr,
            credential,
            stop: Mutex::new(Some(stop)),
        })
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop.send(());
        }
    }
}

/// Serves MCP over Streamable HTTP at [`BRIDGE_PATH`] to whoever holds the credential, until
/// `stopped`.
async fn serve(
    listener: std::net::TcpListener,
    credential: Secret,
    (programs, max_body): (Programs, usize),
    stopped: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    // Answers and progress are small writes; Nagle's algorithm against the proxy's delayed
    // ACKs would hold each one back some 40 ms.
    let listener = tokio::net::TcpListener::from_std(listener)?.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%error, "could not set TCP_NODELAY on the stdio bridge");
        }
    });
    let mcp = StreamableHttpService::new(
        move || Ok(relay::Relay::new(programs.clone())),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_max_request_body_bytes(max_body),
    );
    let app = axum::Router::new().nest_service(BRIDGE_PATH, mcp).layer(
        axum::middleware::from_fn_with_state(Arc::new(credential), require_credential),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
}

/// Refuses every request without the bridge's credential.
async fn require_credential(
    State(credential): State<Arc<Secret>>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if bool::from(given.ct_eq(credential.expose().as_bytes())) {
        next.run(request).await
    } else {
        http::StatusCode::UNAUTHORIZED.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> StdioCommand {
        StdioCommand {
            program: "/bin/cat".to_owned(),
            args: Vec::new(),
            env: BTreeMap::new(),
            working_dir: None,
            instances: Instances::Pooled,
            limits: Limits::default(),
        }
    }

    #[tokio::test]
    async fn the_bridge_serves_only_the_holder_of_its_credential() {
        let bridge = BridgeHandle::for_upstream("bridge-test", &command(), 1 << 20).unwrap();
        let url = format!("http://{}{BRIDGE_PATH}", bridge.addr());
        let http = reqwest::Client::new();
        let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
        for credential in [None, Some("Bearer guessed"), Some("")] {
            let mut request = http
                .post(&url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(initialize);
            if let Some(credential) = credential {
                request = request.header("authorization", credential);
            }
            let status = request.send().await.unwrap().status();
            assert_eq!(status, 401, "{credential:?}");
        }
        let held = http
            .delete(&url)
            .header("authorization", bridge.credential().expose())
            .send()
            .await
            .unwrap()
            .status();
        assert_ne!(held, 401, "the gateway's own credential is let through");
    }

    #[test]
    fn an_unchanged_command_keeps_its_bridge_and_the_last_handle_stops_it() {
        let first = BridgeHandle::for_upstream("bridge-keep", &command(), 1 << 20).unwrap();
        let again = BridgeHandle::for_upstream("bridge-keep", &command(), 1 << 20).unwrap();
        assert_eq!(first, again);
        let mut other = command();
        other.args.push("-u".to_owned());
        let changed = BridgeHandle::for_upstream("bridge-keep", &other, 1 << 20).unwrap();
        assert_ne!(first, changed);
        let addr = first.addr();
        drop((first, again));
        let replaced = BridgeHandle::for_upstream("bridge-keep", &command(), 1 << 20).unwrap();
        assert_ne!(
            replaced.addr(),
            addr,
            "a dropped bridge is not handed out again"
        );
    }
}
