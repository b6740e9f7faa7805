//! The whole Portcullis stack in one process: an issuer on SQLite (or PostgreSQL), the expenses
//! MCP server, and a gateway in front of it, each on its own loopback port.
//!
//! The demo and the end-to-end tests both start it, so what the tests prove is what the demo
//! shows. The three parts talk only over HTTP, as they would across a cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use portcullis_gateway::RunningGateway;
use portcullis_gateway::config::Config;
use portcullis_issuer::{Issuer, IssuerConfig, StorageOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::expenses::{self, DownstreamAuth, ExpensesConfig, ExpensesState};
use crate::relay::Relay;

/// Where the issuer keeps its state.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Data directory for SQLite and the development key-encryption secret.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL instead of SQLite.
    pub database_url: Option<String>,
    /// Extra lines for the gateway's YAML configuration (e.g. a `revocation:` section).
    pub gateway_extra_yaml: String,
    /// Route the gateway's traffic to the issuer through a [`Relay`] that tests can cut.
    pub issuer_relay: bool,
    /// Log the gateway's decisions in this directory and ship them to the issuer.
    pub audit_dir: Option<PathBuf>,
    /// Run the gateway as this `portcullis-gateway` binary in a process of its own, instead of
    /// on a thread of this one (to measure it alone).
    pub gateway_binary: Option<PathBuf>,
    /// Environment variables of the gateway's process, with `gateway_binary`.
    pub gateway_env: Vec<(String, String)>,
    /// More upstreams for the gateway besides `expenses`, as YAML flow mappings
    /// (`{name: x, url: '…'}`).
    pub extra_upstreams: Vec<String>,
    /// More settings of the `expenses` upstream, as YAML flow-mapping entries
    /// (`incremental_consent: true`).
    pub expenses_settings: Vec<String>,
}

impl StackOptions {
    /// As [`StackOptions::sqlite`], with one more upstream, `name` at `url`.
    pub fn with_upstream(data_dir: &std::path::Path, name: &str, url: &str) -> Self {
        Self {
            extra_upstreams: vec![format!("{{name: {name}, url: '{url}'}}")],
            ..Self::sqlite(data_dir)
        }
    }

    /// SQLite in `data_dir`, nothing else special.
    pub fn sqlite(data_dir: &std::path::Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            database_url: None,
            gateway_extra_yaml: String::new(),
            issuer_relay: false,
            audit_dir: None,
            gateway_binary: None,
            gateway_env: Vec::new(),
            extra_upstreams: Vec::new(),
            expenses_settings: Vec::new(),
        }
    }
}

/// A running stack. Dropping it stops everything.
#[derive(Debug)]
pub struct Stack {
    /// The issuer's base URL.
    pub issuer_url: String,
    /// The gateway's public base URL.
    pub gateway_url: String,
    /// The gateway's admin base URL (`/metrics`, `/readyz`).
    pub gateway_admin_url: String,
    /// The expenses server's own MCP endpoint (behind the gateway).
    pub upstream_url: String,
    /// The resource agents ask tokens for: the gateway's endpoint for the expenses server.
    pub resource: String,
    /// The issuer's admin API token.
    pub admin_token: String,
    /// What reached the expenses server.
    pub expenses: ExpensesState,
    /// The relay between the gateway and the issuer, when asked for.
    pub issuer_relay: Option<Relay>,
    /// The gateway's configuration file; the gateway reloads its upstreams when it changes.
    pub gateway_config: PathBuf,
    gateway: Option<Gateway>,
    gateway_binary: Option<PathBuf>,
    gateway_env: Vec<(String, String)>,
    data_dir: PathBuf,
    stop: watch::Sender<bool>,
}

/// The gateway binary the workspace's tests are built with (`cargo test --workspace` builds it).
pub fn gateway_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("portcullis-gateway");
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p portcullis-gateway`",
        binary.display()
    );
    binary
}

/// Starts `binary` on `config`, its output appended to `gateway.log` in `data_dir`.
fn spawn_gateway(
    binary: &std::path::Path,
    config: &std::path::Path,
    data_dir: &std::path::Path,
    env: &[(String, String)],
) -> anyhow::Result<std::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("gateway.log"))?;
    std::process::Command::new(binary)
        .args(["run", "-c"])
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// The gateway, on a thread of this process or in a child process.
#[derive(Debug)]
enum Gateway {
    Thread(RunningGateway),
    Process(std::process::Child),
}

/// A loopback port nobody is listening on right now (for Pingora, which binds by itself).
///
/// Between this call and the gateway's bind, the port is free, and tests start stacks in
/// parallel. Two things could take it meanwhile: another caller of this function (so every
/// port given out in this process is remembered and never given twice), and any listener bound
/// to port 0, which gets the kernel's next ephemeral port (so ports are drawn below the
/// ephemeral range, from 20000–32767, where the kernel never assigns one by itself).
pub fn free_port() -> anyhow::Result<SocketAddr> {
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_768;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..1000 {
        let mut random = [0u8; 2];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
        let port = LOW + u16::from_le_bytes(random) % SPAN;
        if given.contains(&port) {
            continue;
        }
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            given.push(port);
            return Ok(listener.local_addr()?);
        }
    }
    bail!("no unused loopback port found")
}

/// Waits until the gateway at `admin_url` says it is ready and its proxy port at `proxy_url`
/// accepts connections (the two listeners start independently; under a slow start, such as
/// valgrind's, the admin one can answer first).
pub(crate) async fn wait_ready(admin_url: &str, proxy_url: &str) -> anyhow::Result<()> {
    let url = format!("{admin_url}/readyz");
    let proxy = proxy_url.trim_start_matches("http://").to_owned();
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(response) = client.get(&url).send().await
            && response.status().is_success()
            && tokio::net::TcpStream::connect(&proxy).await.is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the gateway did not become ready at {url}")
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _closed = stop.wait_for(|stop| *stop).await;
}

impl Stack {
    /// Starts the issuer, the expenses server and the gateway, and waits until the gateway is
    /// ready (it has the issuer's keys).
    pub async fn start(options: &StackOptions) -> anyhow::Result<Self> {
        let (stop, stop_rx) = watch::channel(false);

        let issuer_listener = TcpListener::bind("127.0.0.1:0").await?;
        let issuer_addr = issuer_listener.local_addr()?;
        let issuer_url = format!("http://{issuer_addr}");
        let admin_token = crate::random_secret();
        let mut config = IssuerConfig::new(&issuer_url);
        config.admin_token = Some(admin_token.clone());
        let ingest_token = crate::random_secret();
        config.audit_ingest_token = Some(ingest_token.clone());
        let storage = StorageOptions {
            data_dir: options.data_dir.clone(),
            database_url: options.database_url.clone(),
            key_encryption_secret: None,
        };
        let issuer = Issuer::open(config, &storage)
            .await
            .context("starting the issuer")?;
        tokio::spawn(portcullis_issuer::serve(
            issuer_listener,
            issuer.state().clone(),
            stopped(stop_rx.clone()),
        ));

        let gateway_addr = free_port()?;
        let gateway_admin = free_port()?;
        let gateway_url = format!("http://{gateway_addr}");
        let resource = format!("{gateway_url}/mcp/expenses");

        let upstream_listener = TcpListener::bind("127.0.0.1:0").await?;
        let upstream_url = format!("http://{}/mcp", upstream_listener.local_addr()?);
        let expenses = ExpensesState::default();
        let upstream_config = ExpensesConfig {
            auth: Some(DownstreamAuth {
                issuer: gateway_url.clone(),
                jwks_url: format!("{gateway_url}/.well-known/jwks.json"),
                audience: upstream_url.clone(),
            }),
        };
        let upstream_stop = stopped(stop_rx.clone());
        let upstream_state = expenses.clone();
        tokio::spawn(async move {
            tokio::select! {
                result = expenses::serve(upstream_listener, upstream_config, upstream_state) => {
                    if let Err(e) = result {
                        tracing::error!("expenses server failed: {e}");
                    }
                }
                () = upstream_stop => {}
            }
        });

        let issuer_relay = match options.issuer_relay {
            true => Some(Relay::start(issuer_addr).await?),
            false => None,
        };
        // The issuer's identity stays its own URL; only the gateway's connections go through
        // the relay.
        let reach = issuer_relay
            .as_ref()
            .map_or_else(|| issuer_url.clone(), |r| format!("http://{}", r.addr()));
        let audit_yaml = match &options.audit_dir {
            Some(dir) => {
                let token_file = options.data_dir.join("audit-ingest-token");
                std::fs::write(&token_file, &ingest_token)?;
                format!(
                    "audit: {{dir: '{}', gateway_id: gw-test, ingest_token_file: '{}'}}\n",
                    dir.display(),
                    token_file.display()
                )
            }
            None => String::new(),
        };
        let yaml = format!(
            "listen: {gateway_addr}\nadmin_listen: {gateway_admin}\npublic_url: {gateway_url}\n\
             threads: 2\ngrace_period_seconds: 0\n\
             issuer: {{url: '{reach}', issuer: '{issuer_url}'}}\n\
             upstreams:\n  - {{name: expenses, url: '{upstream_url}'{}}}\n{}{audit_yaml}{}",
            options
                .expenses_settings
                .iter()
                .map(|s| format!(", {s}"))
                .collect::<String>(),
            options
                .extra_upstreams
                .iter()
                .map(|u| format!("  - {u}\n"))
                .collect::<String>(),
            options.gateway_extra_yaml
        );
        // From a file in both cases, so the gateway reloads it when it changes.
        let gateway_config = options.data_dir.join("gateway.yaml");
        std::fs::write(&gateway_config, &yaml)?;
        let gateway = match &options.gateway_binary {
            Some(binary) => Gateway::Process(spawn_gateway(
                binary,
                &gateway_config,
                &options.data_dir,
                &options.gateway_env,
            )?),
            None => {
                let config = Config::load(&gateway_config).context("gateway configuration")?;
                // Starting blocks on a first fetch of the issuer's keys, which this runtime
                // serves: keep its thread free meanwhile.
                let gateway =
                    tokio::task::spawn_blocking(move || portcullis_gateway::spawn(config))
                        .await?
                        .context("starting the gateway")?;
                Gateway::Thread(gateway)
            }
        };
        let stack = Stack {
            issuer_url,
            gateway_admin_url: format!("http://{gateway_admin}"),
            gateway_url,
            upstream_url,
            resource,
            admin_token,
            expenses,
            issuer_relay,
            gateway_config,
            gateway: Some(gateway),
            gateway_binary: options.gateway_binary.clone(),
            gateway_env: options.gateway_env.clone(),
            data_dir: options.data_dir.clone(),
            stop,
        };
        wait_ready(&stack.gateway_admin_url, &stack.gateway_url).await?;
        Ok(stack)
    }

    /// The gateway's Prometheus metrics, as text.
    pub async fn gateway_metrics(&self) -> anyhow::Result<String> {
        let url = format!("{}/metrics", self.gateway_admin_url);
        let response = reqwest::get(&url).await?.error_for_status()?;
        Ok(response.text().await?)
    }

    /// The gateway's process id, when it runs in a process of its own.
    pub fn gateway_pid(&self) -> Option<u32> {
        match &self.gateway {
            Some(Gateway::Process(child)) => Some(child.id()),
            _ => None,
        }
    }

    /// Kills the gateway's process with SIGKILL, as a crash would. Only for a gateway run as a
    /// binary; [`Stack::restart_gateway`] starts it again.
    pub fn crash_gateway(&mut self) -> anyhow::Result<()> {
        let Some(Gateway::Process(child)) = self.gateway.as_mut() else {
            bail!("only a gateway in a process of its own can crash");
        };
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Starts a crashed gateway again on the same configuration (and so the same decision
    /// log), and returns once it is ready.
    pub async fn restart_gateway(&mut self) -> anyhow::Result<()> {
        let (Some(Gateway::Process(child)), Some(binary)) =
            (self.gateway.as_mut(), &self.gateway_binary)
        else {
            bail!("only a gateway in a process of its own can be restarted");
        };
        *child = spawn_gateway(
            binary,
            &self.gateway_config,
            &self.data_dir,
            &self.gateway_env,
        )?;
        wait_ready(&self.gateway_admin_url, &self.gateway_url).await
    }

    /// Stops every part.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // Receivers gone means the servers already stopped.
        let _no_receivers = self.stop.send(true);
        match self.gateway.take() {
            Some(Gateway::Thread(gateway)) => gateway.stop(),
            Some(Gateway::Process(mut child)) => {
                let _already_gone = child.kill();
                let _status = child.wait();
            }
            None => {}
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown();
    }
}
