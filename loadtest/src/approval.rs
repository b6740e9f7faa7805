//! The cost of step-up approvals, as an agent sees it: in each round, on one MCP session, a
//! call that needs no approval, a call that needs one (the gateway asks the issuer, which
//! opens a request: the agent gets the approval URL), and, once a person has approved it on
//! the page (over HTTP, untimed), the same call again (the gateway asks the issuer, which
//! spends the approval, and forwards the call).
//!
//! The difference between the approved retry and the plain call is the round trip the
//! approval adds: gateway → issuer (one SQL transaction) → gateway. The plain call is the
//! reference for what every call that needs no approval costs.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use portcullis_examples::agent::{self, IssuerClient, McpSession, expense_grant};
use portcullis_examples::person::{Person, create_user};
use portcullis_examples::stack::{Stack, StackOptions};
use rmcp::model::CallToolRequestParams;
use serde::Serialize;
use serde_json::{Value, json};

use crate::stats::{Latencies, LatencySummary};

const PASSWORD: &str = "loadtest-approval-password";

/// Options of `approval`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ApprovalArgs {
    /// Rounds (1 to 10 000): each makes a plain call, a held call, and its approved retry.
    #[arg(long, default_value_t = 200)]
    rounds: usize,
}

impl ApprovalArgs {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            (1..=10_000).contains(&self.rounds),
            "--rounds must be 1 to 10000"
        );
        Ok(())
    }

    /// About 20 ms per round at most, on this machine, and room for a slow one.
    pub(crate) fn time_bound(&self) -> Duration {
        Duration::from_secs(60) + Duration::from_millis(100) * self.rounds as u32
    }
}

/// What the run measured.
#[derive(Debug, Serialize)]
pub(crate) struct ApprovalReport {
    rounds: usize,
    /// A call no approval term applies to.
    plain: LatencySummary,
    /// A call held for approval: answered with the approval URL.
    held: LatencySummary,
    /// The approved retry: the approval spent at the issuer, the call forwarded.
    approved: LatencySummary,
}

impl ApprovalReport {
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "approvals: {} rounds, one MCP session (rmcp client), medians and p99 in µs",
            self.rounds
        );
        for (name, s) in [
            ("plain call (no approval applies)", &self.plain),
            ("held call (a request opened)", &self.held),
            ("approved retry (spent, forwarded)", &self.approved),
        ] {
            let _ = writeln!(out, "  {name:36} p50 {:>6}  p99 {:>6}", s.p50_us, s.p99_us);
        }
        let _ = writeln!(
            out,
            "  the approval round trip adds p50 {:+} µs to the call it lets through",
            i128::from(self.approved.p50_us) - i128::from(self.plain.p50_us)
        );
        out
    }
}

async fn timed_call(session: &McpSession, amount: u64) -> (Duration, Result<(), Value>) {
    let arguments = json!({"amount": amount, "category": "travel"});
    let params = CallToolRequestParams::new("submit_expense")
        .with_arguments(arguments.as_object().cloned().unwrap_or_default());
    let started = Instant::now();
    let outcome = session.call_tool(params).await;
    let took = started.elapsed();
    (
        took,
        match outcome {
            Ok(_) => Ok(()),
            Err(rmcp::ServiceError::McpError(error)) => Err(error.data.unwrap_or(Value::Null)),
            Err(other) => Err(json!({"transport": other.to_string()})),
        },
    )
}

/// Runs the rounds against a stack of its own (the gateway ships decisions, so it asks the
/// issuer about approvals).
pub(crate) async fn run(args: &ApprovalArgs) -> anyhow::Result<ApprovalReport> {
    let data = tempfile::TempDir::new()?;
    let stack = Stack::start(&StackOptions {
        audit_dir: Some(data.path().join("audit")),
        ..StackOptions::sqlite(data.path())
    })
    .await
    .context("starting the stack")?;
    create_user(data.path(), "alice", PASSWORD, &stack.resource).await?;
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer
        .register_agent("approval-agent", "Approval agent")
        .await?;
    let mut grant = expense_grant();
    grant[0]["limits"] = json!([]);
    grant[0]["approval"] = json!([{"tool": "expenses/submit_expense",
                                   "when": [{"pointer": "/amount", "min": 200}]}]);
    let (_, token) = issuer
        .delegation(&agent, "alice", &stack.resource, grant)
        .await?;
    let session = agent::connect(&stack.resource, &token).await?;
    let alice = Person::sign_in(&stack.issuer_url, "alice", PASSWORD).await?;
    let (mut plain, mut held, mut approved) =
        (Latencies::new(), Latencies::new(), Latencies::new());
    eprintln!("approvals: {} rounds", args.rounds);
    for round in 0..args.rounds as u64 {
        let (took, outcome) = timed_call(&session, 120).await;
        outcome.map_err(|e| anyhow::anyhow!("the plain call failed: {e}"))?;
        plain.record(took);
        // A new amount each round: every held call is a call of its own.
        let amount = 200 + round;
        let (took, outcome) = timed_call(&session, amount).await;
        let data = outcome.err().context("the call over 200 was not held")?;
        let url = data["approval_url"].as_str().context("no approval_url")?;
        held.record(took);
        let answered = alice
            .answer(url.rsplit('/').next().unwrap_or_default(), true)
            .await?;
        ensure!(
            answered.status == 200,
            "approving failed: {}",
            answered.status
        );
        let (took, outcome) = timed_call(&session, amount).await;
        outcome.map_err(|e| anyhow::anyhow!("the approved retry failed: {e}"))?;
        approved.record(took);
    }
    // The session ends (its DELETE answered) before the stack stops.
    session.cancel().await?;
    stack.stop();
    Ok(ApprovalReport {
        rounds: args.rounds,
        plain: plain.summary(),
        held: held.summary(),
        approved: approved.summary(),
    })
}
