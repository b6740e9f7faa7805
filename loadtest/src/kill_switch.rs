//! The kill switch under load: N tool calls streaming through the gateway, one grant revoked
//! at the issuer, and how long each stream takes to end.
//!
//! Each stream is a `tools/call slow_report {"seconds": 60}` on its own MCP session, all under
//! delegation tokens of one grant (several tokens, so the revocation must reach every token of
//! the grant, not one `jti`). The call asks for progress, so every stream carries an event a
//! second. Once every stream has received its first event, the grant is revoked with the
//! issuer's admin API; the clock starts just before that call. For each stream the time is
//! taken when its response body ends (EOF), and the stream counts as revoked in-band when its
//! last events carried the gateway's `-31007` error. The revocation travels issuer → push
//! stream → gateway → socket shutdown → in-band error event → client: the figure is the whole
//! path as an agent sees it.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use portcullis_gateway::jsonrpc_error::REVOKED;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::mcp::{self, EventStream, McpSession, Message};
use crate::stats::{Latencies, LatencySummary};
use crate::world::World;

pub(crate) const MAX_SESSIONS: usize = 1000;
/// The report runs this long unless the revocation ends it: far longer than any wait here.
const REPORT_SECONDS: u64 = 60;
const SESSIONS_PER_TOKEN: usize = 100;
/// Every stream must have its first event (rmcp's priming event, or the first progress
/// notification a second in) by then, counted from when the calls are sent.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the upstream may take to see the cancellations the gateway sends.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// Options of `kill-switch`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct KillArgs {
    /// Live streams to open (1 to 1000), each on its own MCP session.
    #[arg(long, default_value_t = 200)]
    pub(crate) sessions: usize,
    /// Seconds to wait, after the revocation, for every stream to end.
    #[arg(long, default_value_t = 20)]
    timeout: u64,
}

impl KillArgs {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            (1..=MAX_SESSIONS).contains(&self.sessions),
            "--sessions must be 1 to {MAX_SESSIONS}"
        );
        ensure!(
            (1..REPORT_SECONDS).contains(&self.timeout),
            "--timeout must be 1 to {} seconds (the calls end by themselves after {REPORT_SECONDS})",
            REPORT_SECONDS - 1
        );
        Ok(())
    }

    /// The longest a run can take once the stack is up.
    pub(crate) fn time_bound(&self) -> Duration {
        START_TIMEOUT + Duration::from_secs(self.timeout) + CANCEL_WAIT
    }
}

/// How one stream ended.
#[derive(Debug)]
struct Ended {
    at: Instant,
    /// It carried the gateway's revocation error (for this revocation's `seq`, checked later).
    revocation_seq: Option<i64>,
    /// It carried the tool's result: the call finished instead of being stopped.
    completed: bool,
    /// The body failed instead of ending cleanly.
    error: Option<String>,
}

/// What one event says, as far as this test cares.
fn classify(event: &str, ended: &mut Ended) {
    let Ok(message) = serde_json::from_str::<Value>(event) else {
        return;
    };
    if message["error"]["code"] == REVOKED {
        ended.revocation_seq = message["error"]["data"]["revocation"].as_i64();
    }
    if message.get("result").is_some() {
        ended.completed = true;
    }
}

/// A stream that has not had its first event yet: it says how it started, once, and then
/// lets the next stream open.
#[derive(Debug)]
struct Starting {
    report: mpsc::Sender<Result<(), String>>,
    _slot: OwnedSemaphorePermit,
}

impl Starting {
    async fn report(self, result: Result<(), String>) {
        // The receiver is gone only when the run already gave up.
        let _ = self.report.send(result).await;
    }
}

/// Sends the call, reports its first event on `started`, and reads until the body ends;
/// `None` when it never started.
async fn stream(
    mut session: McpSession,
    message: Message,
    slots: Arc<Semaphore>,
    started: mpsc::Sender<Result<(), String>>,
    limit: Duration,
) -> Option<Ended> {
    let slot = slots.acquire_owned().await.ok()?;
    let starting = Starting {
        report: started,
        _slot: slot,
    };
    let mut response = match session.post(&message).timeout(limit).send().await {
        Ok(response) if response.status().is_success() => response,
        Ok(response) => {
            starting
                .report(Err(format!("HTTP {}", response.status())))
                .await;
            return None;
        }
        Err(error) => {
            starting.report(Err(error.to_string())).await;
            return None;
        }
    };
    let mut starting = Some(starting);
    let mut events = EventStream::default();
    let mut ended = Ended {
        at: Instant::now(),
        revocation_seq: None,
        completed: false,
        error: None,
    };
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                for event in events.push(&chunk) {
                    if let Some(starting) = starting.take() {
                        starting.report(Ok(())).await;
                    }
                    classify(&event.data, &mut ended);
                }
            }
            Ok(None) => break,
            Err(error) => {
                ended.error = Some(error.to_string());
                break;
            }
        }
    }
    ended.at = Instant::now();
    if let Some(starting) = starting {
        let reason = match ended.error {
            Some(error) => format!("the stream failed before its first event: {error}"),
            None => "the stream ended before its first event".to_owned(),
        };
        starting.report(Err(reason)).await;
        return None;
    }
    Some(ended)
}

/// The result of a `kill-switch` run.
#[derive(Debug, Serialize)]
pub(crate) struct KillReport {
    sessions: usize,
    /// Streams that had their first event; only these are measured.
    live: usize,
    /// Streams refused or cut before their first event.
    failed_to_start: usize,
    first_start_error: Option<String>,
    delegation_tokens: usize,
    revocation_seq: i64,
    /// How long the admin API took to accept the revocation.
    revoke_call_us: u64,
    /// Streams whose body ended within the timeout.
    ended: usize,
    /// Of those, how many ended with the gateway's in-band `-31007` event for this revocation.
    ended_with_revocation_error: usize,
    /// Ended without it: cut, failed, or finished with the tool's result.
    ended_without_revocation_error: usize,
    /// Of all ended, how many carried the tool's result (the call was not stopped in time).
    completed_normally: usize,
    /// Ended (counted above) before the revocation was even sent: broken, not revoked.
    ended_before_revocation: usize,
    /// Still open when the timeout ran out.
    still_open: usize,
    /// From just before the revocation call to each stream's EOF (streams that ended after it).
    time_to_eof: LatencySummary,
    /// `slow_report` calls the expenses server saw cancelled (the gateway tells it).
    upstream_cancelled: u64,
    /// One example of a stream that ended without the revocation event.
    first_unexpected: Option<String>,
}

/// Opens the streams, revokes the grant, and times the ends.
pub(crate) async fn run(world: &World, args: &KillArgs) -> anyhow::Result<KillReport> {
    let count = args.sessions;
    let http = mcp::http_client()?;
    let token_count = count.div_ceil(SESSIONS_PER_TOKEN);
    let mut tokens = Vec::with_capacity(token_count);
    for _ in 0..token_count {
        tokens.push(world.delegation_token().await?);
    }
    eprintln!(
        "opening {count} MCP sessions through the gateway ({token_count} delegation tokens of \
         grant {})",
        world.grant_id
    );
    let sessions = mcp::open_sessions(&http, world.gateway_endpoint(), &tokens, count).await?;

    let message = Message::new(
        "tools/call",
        &json!({
            "name": "slow_report",
            "arguments": {"seconds": REPORT_SECONDS},
            "_meta": {"progressToken": "loadtest"}
        }),
    );
    // The request's own bound: beyond every wait below, so it is the run that gives up first.
    let limit = args.time_bound() + Duration::from_secs(REPORT_SECONDS);
    let (started_tx, mut started_rx) = mpsc::channel(count);
    let slots = Arc::new(Semaphore::new(mcp::OPEN_CONCURRENCY));
    let mut streams = JoinSet::new();
    for session in sessions {
        let (slots, started) = (slots.clone(), started_tx.clone());
        streams.spawn(stream(session, message.clone(), slots, started, limit));
    }
    drop(started_tx);
    eprintln!("sending {count} slow_report calls; waiting for each stream's first event");
    let start_deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let (mut live, mut failed, mut first_start_error) = (0, 0, None);
    while live + failed < count {
        match tokio::time::timeout_at(start_deadline, started_rx.recv()).await {
            Ok(Some(Ok(()))) => live += 1,
            Ok(Some(Err(error))) => {
                failed += 1;
                first_start_error.get_or_insert(error);
            }
            Ok(None) => bail!("stream tasks ended without saying how they started"),
            Err(_) => bail!(
                "after {START_TIMEOUT:?}, {live} of {count} streams had their first event and \
                 {failed} had failed"
            ),
        }
    }
    ensure!(
        live > 0,
        "no stream started: {}",
        first_start_error.unwrap_or_default()
    );
    if failed > 0 {
        eprintln!(
            "WARNING: {failed} of {count} streams failed to start (first: {}); measuring the \
             {live} live ones",
            first_start_error.as_deref().unwrap_or_default()
        );
    }

    eprintln!("{live} streams are live; revoking grant {}", world.grant_id);
    let revoked_at = Instant::now();
    let seq = world.revoke_grant(&http).await?;
    let revoke_call = revoked_at.elapsed();
    let end_deadline =
        tokio::time::Instant::from_std(revoked_at) + Duration::from_secs(args.timeout);
    let mut outcomes = Vec::with_capacity(count);
    while let Ok(Some(done)) = tokio::time::timeout_at(end_deadline, streams.join_next()).await {
        if let Some(ended) = done? {
            outcomes.push(ended);
        }
    }
    let still_open = live - outcomes.len();
    streams.abort_all();

    let mut time_to_eof = Latencies::new();
    let mut in_band = 0;
    let mut early = 0;
    let mut first_unexpected = None;
    for ended in &outcomes {
        if ended.at < revoked_at {
            early += 1;
        } else {
            time_to_eof.record(ended.at - revoked_at);
        }
        if ended.revocation_seq == Some(seq) {
            in_band += 1;
        } else if first_unexpected.is_none() {
            first_unexpected = Some(format!(
                "revocation event: {:?}, result: {}, error: {:?}",
                ended.revocation_seq, ended.completed, ended.error
            ));
        }
    }
    // The gateway's cancellations travel on after the streams end; give them a moment.
    let cancel_deadline = Instant::now() + CANCEL_WAIT;
    while world.stack.expenses.cancelled_reports() < live as u64 && Instant::now() < cancel_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(KillReport {
        sessions: count,
        live,
        failed_to_start: failed,
        first_start_error,
        delegation_tokens: token_count,
        revocation_seq: seq,
        revoke_call_us: u64::try_from(revoke_call.as_micros()).unwrap_or(u64::MAX),
        ended: outcomes.len(),
        ended_with_revocation_error: in_band,
        ended_without_revocation_error: outcomes.len() - in_band,
        completed_normally: outcomes.iter().filter(|e| e.completed).count(),
        ended_before_revocation: early,
        still_open,
        time_to_eof: time_to_eof.summary(),
        upstream_cancelled: world.stack.expenses.cancelled_reports(),
        first_unexpected,
    })
}

impl KillReport {
    /// The report in words.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let t = &self.time_to_eof;
        let _ = writeln!(
            out,
            "\nkill switch — {} SSE tool calls through the gateway on their own sessions (one \
             grant, delegation tokens: {}), grant revoked at the issuer (revocation #{})",
            self.sessions, self.delegation_tokens, self.revocation_seq
        );
        if self.failed_to_start > 0 {
            let _ = writeln!(
                out,
                "WARNING: {} streams failed to start (first: {}); {} were live and measured",
                self.failed_to_start,
                self.first_start_error.as_deref().unwrap_or_default(),
                self.live
            );
        }
        let _ = writeln!(out, "revoke call accepted in {} µs", self.revoke_call_us);
        let _ = writeln!(
            out,
            "ended: {} of {} live ({} with the in-band -31007 event, {} without; {} finished \
             normally, {} before the revocation); still open at the timeout: {}",
            self.ended,
            self.live,
            self.ended_with_revocation_error,
            self.ended_without_revocation_error,
            self.completed_normally,
            self.ended_before_revocation,
            self.still_open
        );
        let _ = writeln!(
            out,
            "time from revoke call to EOF: p50 {} µs, p90 {} µs, p99 {} µs, max {} µs",
            t.p50_us, t.p90_us, t.p99_us, t.max_us
        );
        let _ = writeln!(
            out,
            "upstream saw {} of {} reports cancelled",
            self.upstream_cancelled, self.live
        );
        if let Some(example) = &self.first_unexpected {
            let _ = writeln!(out, "a stream that ended without the event: {example}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revoking_the_grant_ends_every_stream_in_band() {
        let world = World::start(false).await.unwrap();
        let args = KillArgs {
            sessions: 3,
            timeout: 10,
        };
        args.validate().unwrap();
        let report = run(&world, &args).await.unwrap();
        assert_eq!(report.live, 3, "{report:?}");
        assert_eq!(report.ended_with_revocation_error, 3, "{report:?}");
        assert_eq!(report.still_open, 0);
        assert_eq!(report.time_to_eof.count, 3);
    }

    fn blank() -> Ended {
        Ended {
            at: Instant::now(),
            revocation_seq: None,
            completed: false,
            error: None,
        }
    }

    #[test]
    fn the_revocation_event_and_a_result_are_told_apart_from_progress() {
        let mut ended = blank();
        classify(
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#,
            &mut ended,
        );
        classify("", &mut ended);
        assert_eq!((ended.revocation_seq, ended.completed), (None, false));
        classify(
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-31007,"message":"revoked","data":{"revocation":4}}}"#,
            &mut ended,
        );
        assert_eq!(ended.revocation_seq, Some(4));
        classify(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, &mut ended);
        assert!(ended.completed);
    }
}
