//! A stdio upstream against the same server over HTTP: `@modelcontextprotocol/server-everything`
//! twice behind one gateway, once started by the gateway as a pooled stdio upstream (`command:`,
//! reached through the gateway's loopback bridge) and once in its own process serving
//! Streamable HTTP. Both take the same `tools/call` (`echo`) through the same gateway with the
//! same grant; the rounds alternate between them (see `ab`), on one MCP session per client.
//!
//! The difference is what the bridge costs: one more loopback HTTP hop inside the gateway's
//! process, an rmcp server and client, and the program's pipes, against the server's own HTTP
//! transport.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use portcullis_examples::agent::IssuerClient;
use portcullis_examples::everything::Everything;
use portcullis_examples::stack::{Stack, StackOptions};
use serde::Serialize;
use serde_json::json;
use tokio::task::JoinSet;

use crate::mcp::{self, McpSession, Message};
use crate::stats::{Latencies, LatencySummary};

/// Options of `stdio`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StdioArgs {
    /// Node.js, to run server-everything (default: $PORTCULLIS_NODE, as scripts/test.sh sets it).
    #[arg(long, env = "PORTCULLIS_NODE")]
    node: PathBuf,
    /// server-everything's dist/index.js (default: $PORTCULLIS_EVERYTHING).
    #[arg(long, env = "PORTCULLIS_EVERYTHING")]
    everything: PathBuf,
    /// Clients per path, each with its own session, each sending its next call when the last
    /// is answered.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Rounds per path; the paths alternate round by round.
    #[arg(long, default_value_t = 10)]
    rounds: u32,
    /// Seconds per round.
    #[arg(long, default_value_t = 1.0)]
    round_seconds: f64,
}

impl StdioArgs {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            (1..=64).contains(&self.clients),
            "--clients must be 1 to 64"
        );
        ensure!(
            (1..=100).contains(&self.rounds),
            "--rounds must be 1 to 100"
        );
        ensure!(
            self.round_seconds.is_finite() && (0.2..=10.0).contains(&self.round_seconds),
            "--round-seconds must be 0.2 to 10"
        );
        Ok(())
    }

    pub(crate) fn time_bound(&self) -> Duration {
        Duration::from_secs(60)
            + Duration::from_secs_f64(self.round_seconds * 2.0 * f64::from(self.rounds) * 1.5)
    }

    pub(crate) fn clients(&self) -> usize {
        2 * self.clients
    }
}

/// One path's figures.
#[derive(Debug, Serialize)]
struct PathReport {
    calls: u64,
    calls_per_second: f64,
    latency: LatencySummary,
}

/// What the run measured.
#[derive(Debug, Serialize)]
pub(crate) struct StdioReport {
    clients: usize,
    rounds: u32,
    http: PathReport,
    stdio: PathReport,
}

impl StdioReport {
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "tools/call echo through the gateway to server-everything, {} clients per path, {} \
             alternating rounds",
            self.clients, self.rounds
        );
        for (name, path) in [("over HTTP", &self.http), ("pooled stdio", &self.stdio)] {
            let _ = writeln!(
                out,
                "  {name:13} {:>8.0} calls/s  p50 {:>6} µs  p99 {:>6} µs  ({} calls)",
                path.calls_per_second, path.latency.p50_us, path.latency.p99_us, path.calls
            );
        }
        let _ = writeln!(
            out,
            "  stdio ÷ HTTP: throughput {:.2}, p50 {:.2}",
            self.stdio.calls_per_second / self.http.calls_per_second,
            self.stdio.latency.p50_us as f64 / self.http.latency.p50_us as f64
        );
        out
    }
}

/// Runs the rounds against a stack of its own.
pub(crate) async fn run(args: &StdioArgs) -> anyhow::Result<StdioReport> {
    let data = tempfile::TempDir::new()?;
    let node = args.node.display().to_string();
    let entry = args.everything.display().to_string();
    let everything = Everything::start(&node, &args.everything).await?;
    let stack = Stack::start(&StackOptions {
        extra_upstreams: vec![
            format!("{{name: http, url: '{}'}}", everything.url),
            format!("{{name: stdio, command: {{program: '{node}', args: ['{entry}', 'stdio']}}}}"),
        ],
        ..StackOptions::sqlite(data.path())
    })
    .await
    .context("starting the stack")?;
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer.register_agent("stdio-bench", "Stdio bench").await?;
    let http = mcp::http_client()?;
    let mut lanes = Vec::new();
    for upstream in ["http", "stdio"] {
        let resource = format!("{}/mcp/{upstream}", stack.gateway_url);
        let grant = json!([{"type": "mcp_tools", "tools": [format!("{upstream}/echo")]}]);
        let (_, token) = issuer.delegation(&agent, "alice", &resource, grant).await?;
        let mut sessions = Vec::new();
        for _ in 0..args.clients {
            sessions.push(McpSession::open(&http, &resource, Some(&token)).await?);
        }
        lanes.push(sessions);
    }
    let message = Message::tool_call("echo", &json!({"message": "through the gate"}));
    // One unmeasured round each: the stdio program starts with its first session's call.
    let round = Duration::from_secs_f64(args.round_seconds);
    for lane in &mut lanes {
        round_of(lane, &message, round.min(Duration::from_millis(500))).await?;
    }
    let mut totals = [
        (Latencies::new(), 0u64, Duration::ZERO),
        (Latencies::new(), 0, Duration::ZERO),
    ];
    eprintln!("stdio: {} rounds of {:?} per path", args.rounds, round);
    for _ in 0..args.rounds {
        for (lane, total) in lanes.iter_mut().zip(totals.iter_mut()) {
            let started = Instant::now();
            let (latencies, calls) = round_of(lane, &message, round).await?;
            total.0.merge(&latencies);
            total.1 += calls;
            total.2 += started.elapsed();
        }
    }
    let [http_total, stdio_total] = totals;
    let report = |(latencies, calls, took): (Latencies, u64, Duration)| PathReport {
        calls,
        calls_per_second: calls as f64 / took.as_secs_f64(),
        latency: latencies.summary(),
    };
    stack.stop();
    drop(everything);
    Ok(StdioReport {
        clients: args.clients,
        rounds: args.rounds,
        http: report(http_total),
        stdio: report(stdio_total),
    })
}

/// Every session of `lane` calls for `length`, closed loop; the latencies and the count.
async fn round_of(
    lane: &mut Vec<McpSession>,
    message: &Message,
    length: Duration,
) -> anyhow::Result<(Latencies, u64)> {
    let mut tasks = JoinSet::new();
    for mut session in lane.drain(..) {
        let message = message.clone();
        tasks.spawn(async move {
            let mut latencies = Latencies::new();
            let mut calls = 0u64;
            let until = Instant::now() + length;
            while Instant::now() < until {
                let started = Instant::now();
                session.call(&message).await.map_err(anyhow::Error::msg)?;
                latencies.record(started.elapsed());
                calls += 1;
            }
            anyhow::Ok((session, latencies, calls))
        });
    }
    let mut all = Latencies::new();
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        let (session, latencies, calls) = done??;
        lane.push(session);
        all.merge(&latencies);
        total += calls;
    }
    Ok((all, total))
}
