//! Soak: many MCP sessions through a gateway in a process of its own for a long while, each
//! holding its event stream open, while active clients make calls and list the tools; the
//! gateway's resident memory and descriptors are sampled throughout.
//!
//! What a leak looks like here: resident memory or descriptors that keep climbing after the
//! warm-up (the first sixth of the run, when pools, caches and allocator arenas fill), or
//! errors. The report gives the samples, the growth after warm-up, and every error.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::ensure;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::mcp::{self, Message};
use crate::memory::{open_fds, open_idle, rss_kib};
use crate::world::World;

/// Clients making calls; each has a session of its own.
const ACTIVE_CLIENTS: usize = 16;
/// Delegation tokens live five minutes: the active clients take fresh ones this often.
const RENEW_EVERY: Duration = Duration::from_secs(120);

/// Options of `soak`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SoakArgs {
    /// Idle sessions, each holding its event stream (1 to 10000).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) sessions: usize,
    /// How long the load runs, in minutes.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Calls and list requests per second, over all active clients.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Seconds between samples of memory and descriptors.
    #[arg(long, default_value_t = 30.0)]
    sample_seconds: f64,
    /// The `portcullis-gateway` binary, run in a process of its own and measured alone.
    #[arg(long)]
    pub(crate) gateway_binary: std::path::PathBuf,
}

impl SoakArgs {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            (1..=crate::memory::MAX_SESSIONS_SEPARATE).contains(&self.sessions),
            "--sessions must be 1 to {}",
            crate::memory::MAX_SESSIONS_SEPARATE
        );
        ensure!(
            self.minutes.is_finite() && (0.1..=120.0).contains(&self.minutes),
            "--minutes must be 0.1 to 120"
        );
        ensure!(
            self.rate.is_finite() && (1.0..=5000.0).contains(&self.rate),
            "--rate must be 1 to 5000"
        );
        ensure!(
            self.sample_seconds.is_finite() && (1.0..=600.0).contains(&self.sample_seconds),
            "--sample-seconds must be 1 to 600"
        );
        Ok(())
    }

    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.minutes * 60.0)
    }

    /// The longest a run can take once the stack is up: opening, the load, closing.
    pub(crate) fn time_bound(&self) -> Duration {
        self.duration() + Duration::from_secs(300)
    }
}

/// One reading of the gateway's process.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    seconds: f64,
    rss_kib: u64,
    fds: usize,
    requests: u64,
}

/// The result of a `soak` run.
#[derive(Debug, Serialize)]
pub(crate) struct SoakReport {
    sessions: usize,
    active_clients: usize,
    seconds: f64,
    requests: u64,
    errors: u64,
    first_errors: Vec<String>,
    /// Streams that ended by themselves before the end (should be 0).
    streams_lost: usize,
    samples: Vec<Sample>,
    /// The last sample's memory over the first sample after warm-up.
    rss_growth_after_warmup: f64,
    /// The last sample's descriptors minus those of the first sample after warm-up.
    fd_growth_after_warmup: i64,
}

/// What the active clients counted.
#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    errors: AtomicU64,
    first_errors: std::sync::Mutex<Vec<String>>,
}

impl Counts {
    fn record(&self, outcome: Result<(), String>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = outcome {
            self.errors.fetch_add(1, Ordering::Relaxed);
            let mut first = self
                .first_errors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if first.len() < 10 {
                first.push(error);
            }
        }
    }
}

/// One active client: calls and `tools/list` in turn, paced, with fresh tokens.
async fn active(
    world: Arc<World>,
    http: reqwest::Client,
    interval: Duration,
    counts: Arc<Counts>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let token = world.delegation_token().await?;
    let mut session = mcp::McpSession::open(&http, world.gateway_endpoint(), Some(&token)).await?;
    let messages = [
        Message::tool_call(
            "submit_expense",
            &json!({"amount": 120, "category": "travel"}),
        ),
        Message::new("tools/list", &json!({})),
        Message::tool_call("list_expenses", &json!({})),
    ];
    let mut tick = tokio::time::interval(interval);
    let mut renewed = Instant::now();
    for i in 0.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        }
        if renewed.elapsed() > RENEW_EVERY {
            session.set_token(&world.delegation_token().await?)?;
            renewed = Instant::now();
        }
        counts.record(session.call(&messages[i % messages.len()]).await);
    }
    Ok(())
}

/// Opens the sessions, runs the load, and samples the gateway until the end.
pub(crate) async fn run(world: Arc<World>, args: &SoakArgs) -> anyhow::Result<SoakReport> {
    let http = mcp::http_client()?;
    let token = world.delegation_token().await?;
    let (stop_tx, stop) = watch::channel(false);
    let mut held = JoinSet::new();
    eprintln!(
        "opening {} idle sessions with their event streams",
        args.sessions
    );
    open_idle(
        &world,
        &http,
        &token,
        args.sessions,
        &stop,
        &mut held,
        args.time_bound(),
    )
    .await?;

    let counts = Arc::new(Counts::default());
    let interval = Duration::from_secs_f64(ACTIVE_CLIENTS as f64 / args.rate);
    let mut clients = JoinSet::new();
    for _ in 0..ACTIVE_CLIENTS {
        clients.spawn(active(
            world.clone(),
            http.clone(),
            interval,
            counts.clone(),
            stop.clone(),
        ));
    }
    let pid = world.stack.gateway_pid();
    let started = Instant::now();
    let mut samples = Vec::new();
    let every = Duration::from_secs_f64(args.sample_seconds);
    while started.elapsed() < args.duration() {
        tokio::time::sleep(every.min(args.duration().saturating_sub(started.elapsed()))).await;
        let sample = Sample {
            seconds: started.elapsed().as_secs_f64(),
            rss_kib: rss_kib(pid)?,
            fds: open_fds(pid)?,
            requests: counts.requests.load(Ordering::Relaxed),
        };
        eprintln!(
            "{:>6.0} s: RSS {} KiB, {} descriptors, {} requests, {} errors",
            sample.seconds,
            sample.rss_kib,
            sample.fds,
            sample.requests,
            counts.errors.load(Ordering::Relaxed)
        );
        samples.push(sample);
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    while let Some(client) = clients.join_next().await {
        client??;
    }
    let mut streams_lost = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Some(done)) = tokio::time::timeout_at(deadline, held.join_next()).await {
        streams_lost += usize::from(!done?);
    }
    held.abort_all();

    let warm = samples
        .iter()
        .find(|s| s.seconds >= seconds / 6.0)
        .or(samples.first())
        .cloned();
    let last = samples.last().cloned();
    let (rss_growth_after_warmup, fd_growth_after_warmup) = match (warm, last) {
        (Some(warm), Some(last)) => (
            last.rss_kib as f64 / warm.rss_kib as f64 - 1.0,
            last.fds as i64 - warm.fds as i64,
        ),
        _ => (0.0, 0),
    };
    let first_errors = counts
        .first_errors
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Ok(SoakReport {
        sessions: args.sessions,
        active_clients: ACTIVE_CLIENTS,
        seconds,
        requests: counts.requests.load(Ordering::Relaxed),
        errors: counts.errors.load(Ordering::Relaxed),
        first_errors,
        streams_lost,
        samples,
        rss_growth_after_warmup,
        fd_growth_after_warmup,
    })
}

impl SoakReport {
    /// The report in words.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nsoak: {} idle sessions holding their event streams, {} active clients, {:.0} s",
            self.sessions, self.active_clients, self.seconds
        );
        let _ = writeln!(
            out,
            "{} requests, {} errors; streams that ended early: {}",
            self.requests, self.errors, self.streams_lost
        );
        let _ = writeln!(
            out,
            "gateway after warm-up: VmRSS {:+.1} %, descriptors {:+}",
            self.rss_growth_after_warmup * 100.0,
            self.fd_growth_after_warmup
        );
        for error in &self.first_errors {
            let _ = writeln!(out, "error: {error}");
        }
        out
    }
}
