//! Memory per idle session: N MCP sessions through the gateway, each holding its standalone
//! event stream open (`GET` after `initialize`), and the growth of resident memory (`VmRSS`)
//! divided by N.
//!
//! With `--gateway-binary`, the gateway runs in a process of its own and only its memory is
//! read: the gateway's cost per session (its two connections, the session table entry, the
//! proxied stream's buffers; kernel socket buffers are not in `VmRSS`). Without it, everything
//! runs in this one process and the figure is the whole stack's cost per session, an upper
//! bound for the gateway's. A first batch of sessions is opened before the baseline is read,
//! so pools and caches that any first session fills are not charged to the others.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::mcp::{self, McpSession};
use crate::world::World;

/// In one process each session costs four descriptors, in the separate gateway two.
pub(crate) const MAX_SESSIONS: usize = 1000;
pub(crate) const MAX_SESSIONS_SEPARATE: usize = 10_000;
/// Sessions opened before the baseline is taken.
const WARM_SESSIONS: usize = 16;
/// Every stream must be open by then.
const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
const WHOLE_PROCESS: &str = "VmRSS of the whole process: load generator, gateway, expenses \
                             server and issuer together; an upper bound for the gateway's own \
                             memory per session, not that figure";
const GATEWAY_PROCESS: &str = "VmRSS of the gateway's own process (portcullis-gateway run), \
                               nothing else";

/// Options of `memory`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct MemoryArgs {
    /// Idle sessions to open (1 to 1000; to 10000 with --gateway-binary), each with an open
    /// event stream.
    #[arg(long, default_value_t = 200)]
    pub(crate) sessions: usize,
    /// Run this `portcullis-gateway` binary in a process of its own and measure only it.
    #[arg(long)]
    pub(crate) gateway_binary: Option<std::path::PathBuf>,
    /// Seconds to let the process settle before each reading.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
}

impl MemoryArgs {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        let max = match self.gateway_binary {
            Some(_) => MAX_SESSIONS_SEPARATE,
            None => MAX_SESSIONS,
        };
        ensure!(
            (1..=max).contains(&self.sessions),
            "--sessions must be 1 to {max}"
        );
        ensure!(
            self.settle.is_finite() && (0.0..=30.0).contains(&self.settle),
            "--settle must be 0 to 30 seconds"
        );
        Ok(())
    }

    /// The longest a run can take once the stack is up.
    pub(crate) fn time_bound(&self) -> Duration {
        2 * OPEN_TIMEOUT + 2 * Duration::from_secs_f64(self.settle)
    }
}

/// The process measured: this one (`self`) or the gateway's (its pid).
fn proc_dir(pid: Option<u32>) -> String {
    pid.map_or_else(|| "/proc/self".to_owned(), |pid| format!("/proc/{pid}"))
}

/// The resident set of a process, in KiB (Linux `/proc/…/status`).
pub(crate) fn rss_kib(pid: Option<u32>) -> anyhow::Result<u64> {
    let path = format!("{}/status", proc_dir(pid));
    let status = std::fs::read_to_string(&path)?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(line.trim().trim_end_matches("kB").trim().parse()?)
}

/// File descriptors a process holds.
pub(crate) fn open_fds(pid: Option<u32>) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("{}/fd", proc_dir(pid)))?.count())
}

/// Opens the session's event stream, says so on `ready`, and holds it until `stop`.
/// Returns whether the stream was still open when told to stop.
async fn hold(
    session: McpSession,
    slots: Arc<Semaphore>,
    ready: mpsc::Sender<Result<(), String>>,
    mut stop: watch::Receiver<bool>,
    limit: Duration,
) -> bool {
    // Held until the stream is open, so only a few open at a time.
    let Ok(slot) = slots.acquire_owned().await else {
        return false;
    };
    let mut response = match session.event_stream().timeout(limit).send().await {
        Ok(response) if response.status().is_success() => response,
        Ok(response) => {
            let _ = ready.send(Err(format!("HTTP {}", response.status()))).await;
            return false;
        }
        Err(error) => {
            let _ = ready.send(Err(error.to_string())).await;
            return false;
        }
    };
    let _ = ready.send(Ok(())).await;
    drop(slot);
    loop {
        tokio::select! {
            chunk = response.chunk() => match chunk {
                // Priming events and keep-alive comments: an idle stream still says something.
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return false,
            },
            _ = stop.wait_for(|stop| *stop) => return true,
        }
    }
}

/// Opens `count` sessions with held streams, into `held`; returns once all are open.
pub(crate) async fn open_idle(
    world: &World,
    http: &reqwest::Client,
    token: &str,
    count: usize,
    stop: &watch::Receiver<bool>,
    held: &mut JoinSet<bool>,
    limit: Duration,
) -> anyhow::Result<()> {
    let sessions =
        mcp::open_sessions(http, world.gateway_endpoint(), &[token.to_owned()], count).await?;
    let (ready_tx, mut ready_rx) = mpsc::channel(count);
    let slots = Arc::new(Semaphore::new(mcp::OPEN_CONCURRENCY));
    for session in sessions {
        let (slots, ready, stop) = (slots.clone(), ready_tx.clone(), stop.clone());
        held.spawn(hold(session, slots, ready, stop, limit));
    }
    drop(ready_tx);
    let deadline = tokio::time::Instant::now() + OPEN_TIMEOUT;
    for open in 0..count {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(error))) => bail!("a stream failed to open ({open} open): {error}"),
            Ok(None) => bail!("the streams ended before all were open ({open} of {count})"),
            Err(_) => bail!("only {open} of {count} streams opened in {OPEN_TIMEOUT:?}"),
        }
    }
    Ok(())
}

/// The result of a `memory` run.
#[derive(Debug, Serialize)]
pub(crate) struct MemoryReport {
    sessions: usize,
    warm_sessions: usize,
    rss_before_kib: u64,
    rss_after_kib: u64,
    /// (after − before) / sessions.
    rss_per_session_kib: f64,
    fds_before: usize,
    fds_after: usize,
    /// Streams that ended by themselves before the end of the run (should be 0).
    streams_lost: usize,
    what_is_counted: &'static str,
}

/// Opens the idle sessions and reads the memory before and after.
pub(crate) async fn run(world: &World, args: &MemoryArgs) -> anyhow::Result<MemoryReport> {
    let http = mcp::http_client()?;
    let token = world.delegation_token().await?;
    let settle = Duration::from_secs_f64(args.settle);
    let limit = args.time_bound();
    let (stop_tx, stop) = watch::channel(false);
    let mut held = JoinSet::new();

    eprintln!("opening {WARM_SESSIONS} warm-up sessions");
    open_idle(world, &http, &token, WARM_SESSIONS, &stop, &mut held, limit).await?;
    tokio::time::sleep(settle).await;
    let pid = world.stack.gateway_pid();
    let rss_before = rss_kib(pid)?;
    let fds_before = open_fds(pid)?;

    eprintln!(
        "opening {} idle sessions through the gateway, each with its event stream",
        args.sessions
    );
    open_idle(world, &http, &token, args.sessions, &stop, &mut held, limit).await?;
    tokio::time::sleep(settle).await;
    let rss_after = rss_kib(pid)?;
    let fds_after = open_fds(pid)?;

    let _ = stop_tx.send(true);
    let mut streams_lost = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(done)) = tokio::time::timeout_at(deadline, held.join_next()).await {
        streams_lost += usize::from(!done?);
    }
    held.abort_all();
    Ok(MemoryReport {
        sessions: args.sessions,
        warm_sessions: WARM_SESSIONS,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        rss_per_session_kib: (rss_after as f64 - rss_before as f64) / args.sessions as f64,
        fds_before,
        fds_after,
        streams_lost,
        what_is_counted: if pid.is_some() {
            GATEWAY_PROCESS
        } else {
            WHOLE_PROCESS
        },
    })
}

impl MemoryReport {
    /// The report in words.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nmemory: {} idle MCP sessions through the gateway, each holding its GET event \
             stream ({} warm-up sessions opened before the baseline)",
            self.sessions, self.warm_sessions
        );
        let _ = writeln!(
            out,
            "VmRSS {} KiB -> {} KiB: {:.1} KiB per session; file descriptors {} -> {}",
            self.rss_before_kib,
            self.rss_after_kib,
            self.rss_per_session_kib,
            self.fds_before,
            self.fds_after
        );
        let _ = writeln!(out, "streams that ended early: {}", self.streams_lost);
        let _ = writeln!(out, "NOTE: {}.", self.what_is_counted);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_sessions_stay_open_until_the_reading() {
        let world = World::start(false).await.unwrap();
        let args = MemoryArgs {
            sessions: 4,
            settle: 0.1,
            gateway_binary: None,
        };
        args.validate().unwrap();
        let report = run(&world, &args).await.unwrap();
        assert_eq!(report.streams_lost, 0, "{report:?}");
        // Other tests of this process open and close sockets meanwhile: no exact fd count.
        assert!(
            report.rss_after_kib > 0 && report.fds_after > 0,
            "{report:?}"
        );
    }

    #[test]
    fn this_process_has_a_resident_set() {
        assert!(rss_kib(None).unwrap() > 0);
        assert!(open_fds(None).unwrap() >= 3);
    }
}
