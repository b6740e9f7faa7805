//! The gateway's memory under many large requests at once: N clients each send one
//! `tools/call` of about M MiB (`attach_receipt` with a receipt of that size) at the same
//! moment, through a gateway in a process of its own, and the gateway's resident memory is
//! sampled every 10 ms until every call is answered.
//!
//! Every body is held whole while it is judged, so without a bound N bodies would cost at
//! least N × M MiB; `body_buffer_bytes` bounds what is held at once, and bodies beyond it wait
//! for room. The report gives the peak growth over the idle gateway beside that bound, and
//! how long the calls took (waiting included).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use portcullis_examples::agent::{IssuerClient, expense_grant};
use portcullis_examples::stack::{Stack, StackOptions};
use serde::Serialize;
use serde_json::json;
use tokio::task::JoinSet;

use crate::mcp::{self, McpSession, Message};
use crate::memory::rss_kib;
use crate::stats::{Latencies, LatencySummary};

const MIB: usize = 1024 * 1024;

/// Options of `large-bodies`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LargeBodiesArgs {
    /// The `portcullis-gateway` binary, run in a process of its own so that only its memory
    /// is read.
    #[arg(long)]
    pub(crate) gateway_binary: PathBuf,
    /// Concurrent calls, each with a body of --body-mib.
    #[arg(long, default_value_t = 100)]
    bodies: usize,
    /// Size of each body, MiB (under the gateway's max_body_bytes of 4 MiB by default; the
    /// gateway is configured for it).
    #[arg(long, default_value_t = 4)]
    body_mib: usize,
    /// The gateway's body_buffer_bytes, MiB (its default is 256).
    #[arg(long, default_value_t = 256)]
    buffer_mib: usize,
}

impl LargeBodiesArgs {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            (1..=1000).contains(&self.bodies),
            "--bodies must be 1 to 1000"
        );
        ensure!(
            (1..=64).contains(&self.body_mib),
            "--body-mib must be 1 to 64"
        );
        ensure!(
            self.buffer_mib > self.body_mib && self.buffer_mib <= 16 * 1024,
            "--buffer-mib must hold one body (more than --body-mib) and be at most 16384"
        );
        Ok(())
    }

    pub(crate) fn time_bound(&self) -> Duration {
        Duration::from_secs(120)
    }

    pub(crate) fn sessions(&self) -> usize {
        self.bodies
    }
}

/// What the run measured.
#[derive(Debug, Serialize)]
pub(crate) struct LargeBodiesReport {
    bodies: usize,
    body_bytes: usize,
    buffer_bytes: usize,
    answered: usize,
    idle_rss_kib: u64,
    peak_rss_kib: u64,
    /// Peak growth over the idle gateway.
    peak_growth_kib: u64,
    /// Every body at once, were none held back.
    all_bodies_kib: u64,
    latency: LatencySummary,
    took_ms: u128,
}

impl LargeBodiesReport {
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let mib = |kib: u64| kib as f64 / 1024.0;
        let _ = writeln!(
            out,
            "{} concurrent tools/call of {:.1} MiB each ({:.0} MiB in all), body_buffer_bytes {} MiB",
            self.bodies,
            self.body_bytes as f64 / MIB as f64,
            mib(self.all_bodies_kib),
            self.buffer_bytes / MIB
        );
        let _ = writeln!(
            out,
            "  gateway VmRSS idle {:.0} MiB, peak {:.0} MiB: growth {:.0} MiB",
            mib(self.idle_rss_kib),
            mib(self.peak_rss_kib),
            mib(self.peak_growth_kib)
        );
        let _ = writeln!(
            out,
            "  {} of {} answered in {} ms; per call p50 {} ms, p99 {} ms, max {} ms",
            self.answered,
            self.bodies,
            self.took_ms,
            self.latency.p50_us / 1000,
            self.latency.p99_us / 1000,
            self.latency.max_us / 1000
        );
        out
    }
}

/// Runs the burst against a stack of its own.
pub(crate) async fn run(args: &LargeBodiesArgs) -> anyhow::Result<LargeBodiesReport> {
    let data = tempfile::TempDir::new()?;
    let body_bytes = args.body_mib * MIB;
    let stack = Stack::start(&StackOptions {
        gateway_binary: Some(args.gateway_binary.clone()),
        // Room for the envelope around the receipt.
        gateway_extra_yaml: format!(
            "max_body_bytes: {}\nbody_buffer_bytes: {}\n",
            body_bytes + 4096,
            args.buffer_mib * MIB
        ),
        ..StackOptions::sqlite(data.path())
    })
    .await
    .context("starting the stack")?;
    let pid = stack
        .gateway_pid()
        .context("the gateway runs in a process of its own")?;
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer
        .register_agent("bodies-bench", "Large bodies")
        .await?;
    let mut grant = expense_grant();
    grant[0]["tools"] = json!(["expenses/attach_receipt"]);
    grant[0]["limits"] =
        json!([{"tool": "expenses/attach_receipt", "pointer": "/expense", "max": 1000}]);
    let (_, token) = issuer
        .delegation(&agent, "alice", &stack.resource, grant)
        .await?;
    let http = mcp::http_client()?;
    let mut sessions = Vec::new();
    for _ in 0..args.bodies {
        sessions.push(McpSession::open(&http, &stack.resource, Some(&token)).await?);
    }
    let receipt = "r".repeat(body_bytes);
    let message = Message::tool_call("attach_receipt", &json!({"expense": 1, "content": receipt}));
    drop(receipt);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(Some(pid))?;
    eprintln!(
        "large-bodies: {} calls of {} MiB at once",
        args.bodies, args.body_mib
    );

    let started = Instant::now();
    let mut calls = JoinSet::new();
    for mut session in sessions {
        let message = message.clone();
        calls.spawn(async move {
            let sent = Instant::now();
            let outcome = session.call(&message).await;
            (sent.elapsed(), outcome)
        });
    }
    drop(message);
    let mut peak = idle;
    let mut latencies = Latencies::new();
    let mut answered = 0;
    let mut failures = Vec::new();
    let mut sampler = tokio::time::interval(Duration::from_millis(10));
    while !calls.is_empty() {
        tokio::select! {
            _ = sampler.tick() => peak = peak.max(rss_kib(Some(pid))?),
            Some(done) = calls.join_next() => {
                let (took, outcome) = done?;
                latencies.record(took);
                match outcome {
                    Ok(()) => answered += 1,
                    Err(e) => failures.push(e),
                }
            }
        }
    }
    let took = started.elapsed();
    peak = peak.max(rss_kib(Some(pid))?);
    stack.stop();
    if let Some(first) = failures.first() {
        eprintln!("{} calls failed; the first: {first}", failures.len());
    }
    Ok(LargeBodiesReport {
        bodies: args.bodies,
        body_bytes,
        buffer_bytes: args.buffer_mib * MIB,
        answered,
        idle_rss_kib: idle,
        peak_rss_kib: peak,
        peak_growth_kib: peak.saturating_sub(idle),
        all_bodies_kib: (args.bodies * body_bytes / 1024) as u64,
        latency: latencies.summary(),
        took_ms: took.as_millis(),
    })
}
