//! Starting a stdio upstream's program, and keeping the pooled one running.
//!
//! The program gets exactly the environment its configuration lists (`env_clear` first), its
//! working directory and its resource limits (`prlimit(2)` the moment it is spawned, before
//! anyone speaks to it), and leads a process group of its own, killed whole when the program is dropped,
//! so a server that starts helpers leaves none behind. Its stderr goes to the gateway's log,
//! line by line, under the upstream's name.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use process_wrap::tokio::{CommandWrap, KillOnDrop, ProcessGroup};
use rmcp::RoleClient;
use rmcp::ServiceExt;
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rustix::process::{Pid, PidfdFlags, Resource, Rlimit, pidfd_open, prlimit};
use tokio::io::AsyncBufReadExt;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::progress::{ProgressRoutes, ProgressTap};
use super::relay::ChildClient;
use super::{Limits, StdioCommand};
use crate::metrics;

/// How long a program may take to answer `initialize`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The least time between two starts of a pooled program that keeps exiting.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);
/// The longest stderr line logged; the rest of it is cut.
const MAX_LOG_LINE: usize = 4096;

/// A running program, initialized, as an MCP client speaks to it.
pub(super) struct Program {
    pub(super) service: RunningService<RoleClient, ChildClient>,
    /// Where its progress notifications go.
    pub(super) progress: Arc<ProgressRoutes>,
}

impl Program {
    /// Whether the program still runs: its MCP connection has not ended.
    pub(super) fn alive(&self) -> bool {
        !self.service.is_closed() && !self.service.is_transport_closed()
    }
}

/// Why a program could not be started.
#[derive(Debug, thiserror::Error)]
pub(super) enum StartError {
    /// It could not be spawned (no such program, no permission, a bad working directory).
    #[error("could not start {program:?}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// It did not complete the MCP handshake.
    #[error("{program:?} did not complete the MCP handshake: {reason}")]
    Handshake { program: String, reason: String },
}

/// The programs of one stdio upstream: the pooled one, and a way to start one per session.
#[derive(Clone)]
pub(super) struct Programs {
    inner: Arc<Inner>,
}

struct Inner {
    upstream: String,
    command: StdioCommand,
    pooled: tokio::sync::Mutex<Pooled>,
}

#[derive(Default)]
struct Pooled {
    program: Option<Arc<Program>>,
    started: Option<Instant>,
}

impl Programs {
    pub(super) fn new(upstream: String, command: StdioCommand) -> Self {
        Self {
            inner: Arc::new(Inner {
                upstream,
                command,
                pooled: tokio::sync::Mutex::default(),
            }),
        }
    }

    /// Whether each session gets a program of its own.
    pub(super) fn per_session(&self) -> bool {
        self.inner.command.instances == super::Instances::PerSession
    }

    /// The pooled program: the running one, or a new one if there is none or it exited.
    pub(super) async fn pooled(&self) -> Result<Arc<Program>, StartError> {
        let mut pooled = self.inner.pooled.lock().await;
        if let Some(program) = &pooled.program {
            if program.alive() {
                return Ok(program.clone());
            }
            tracing::warn!(upstream = %self.inner.upstream, "the stdio server exited; starting it again");
            if let Some(wait) = pooled
                .started
                .and_then(|at| RESTART_BACKOFF.checked_sub(at.elapsed()))
            {
                tokio::time::sleep(wait).await;
            }
        }
        pooled.program = None;
        pooled.started = Some(Instant::now());
        let program = Arc::new(self.start(ChildClient::pooled()).await?);
        pooled.program = Some(program.clone());
        Ok(program)
    }

    /// A program of its own for one session, initialized with that session's client.
    pub(super) async fn for_session(
        &self,
        client: ChildClient,
    ) -> Result<Arc<Program>, StartError> {
        Ok(Arc::new(self.start(client).await?))
    }

    /// Stops the pooled program (programs of sessions stop with their sessions).
    pub(super) async fn stop(&self) {
        self.inner.pooled.lock().await.program = None;
    }

    async fn start(&self, client: ChildClient) -> Result<Program, StartError> {
        let command = &self.inner.command;
        let upstream = &self.inner.upstream;
        let spawn_error = |source| StartError::Spawn {
            program: command.program.clone(),
            source,
        };
        let (transport, stderr) = TokioChildProcess::builder(wrapped(command))
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        let pid = transport
            .id()
            .and_then(|id| Pid::from_raw(id.try_into().ok()?));
        limit(pid, command.limits).map_err(spawn_error)?;
        metrics::stdio_started(upstream);
        if let Some(stderr) = stderr {
            tokio::spawn(log_stderr(upstream.clone(), stderr));
        }
        let progress = Arc::new(ProgressRoutes::default());
        let transport = ProgressTap::new(transport, progress.clone());
        let handshake = tokio::time::timeout(START_TIMEOUT, client.serve(transport)).await;
        let service = match handshake {
            Ok(Ok(service)) => service,
            Ok(Err(e)) => {
                return Err(StartError::Handshake {
                    program: command.program.clone(),
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(StartError::Handshake {
                    program: command.program.clone(),
                    reason: format!("no answer to initialize in {START_TIMEOUT:?}"),
                });
            }
        };
        if let Some(pid) = pid {
            watch_exit(upstream, pid, &service);
        }
        tracing::info!(%upstream, program = %command.program, "stdio server started");
        Ok(Program { service, progress })
    }
}

/// Ends the program's MCP connection the moment its process exits. rmcp notices a closed
/// pipe only after draining for seconds; until then the next request would be sent to the
/// dead program instead of starting a new one.
#[expect(
    deprecated,
    reason = "AsyncFd::with_interest is deprecated for types whose descriptor can change under \
              it; an OwnedFd cannot, and its replacement is unsafe, which this workspace forbids"
)]
fn watch_exit(upstream: &str, pid: Pid, service: &RunningService<RoleClient, ChildClient>) {
    let token = service.cancellation_token();
    let watched = pidfd_open(pid, PidfdFlags::empty())
        .map_err(std::io::Error::from)
        .and_then(|fd| AsyncFd::with_interest(fd, Interest::READABLE));
    match watched {
        Ok(exit) => {
            tokio::spawn(async move {
                // A pidfd becomes readable when its process exits.
                let _ = exit.readable().await;
                token.cancel();
            });
        }
        Err(error) => {
            tracing::warn!(%upstream, %error, "cannot watch the stdio server's process; a crash is noticed late");
        }
    }
}

/// The command, with its environment and directory, in a process group of its own that is
/// killed when the program is dropped.
fn wrapped(command: &StdioCommand) -> CommandWrap {
    let mut cmd = tokio::process::Command::new(&command.program);
    cmd.args(&command.args).env_clear().envs(&command.env);
    if let Some(dir) = &command.working_dir {
        cmd.current_dir(dir);
    }
    let mut wrapped = CommandWrap::from(cmd);
    wrapped.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
    wrapped
}

/// Sets each configured limit of process `pid`, soft and hard.
fn limit(pid: Option<Pid>, limits: Limits) -> std::io::Result<()> {
    let wanted = [
        (Resource::As, limits.memory_bytes),
        (Resource::Nofile, limits.open_files),
        (Resource::Cpu, limits.cpu_seconds),
    ];
    for (resource, value) in wanted {
        if let Some(value) = value {
            let pid = pid.ok_or_else(|| std::io::Error::other("the process has no id"))?;
            let bound = Rlimit {
                current: Some(value),
                maximum: Some(value),
            };
            prlimit(Some(pid), resource, bound)?;
        }
    }
    Ok(())
}

/// Logs what the program writes on stderr, a line at a time.
async fn log_stderr(upstream: String, stderr: tokio::process::ChildStderr) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(mut line)) = lines.next_line().await {
        if line.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        tracing::info!(%upstream, "stdio server: {line}");
    }
}
