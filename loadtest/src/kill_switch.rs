//! The kill switch under load: N tool calls streaming through the gateway, one grant revoked
//! at the issuer, and how long each stream takes to end.
//!
//! Each stream is a `tools/call slow_report {"seconds": 60}` on its own MCP session, all under
//! delegation tokens of one grant (several tokens, so the revocation must reach every token of
//! the grant, not one `jti`). The call asks for progress, so every stream carries an event a
//! second. Once every stream has received its first event, the grant is revoked with the
//! issuer's admin API; the clock starts just before that call. A stream counts as revoked
//! in-band when its last events carried the gateway's `-31007` error. The revocation travels
//! issuer → push stream → gateway → socket shutdown → in-band error event → client: the figure
//! is the whole path as an agent sees it.
//!
//! Each stream's end is timed twice (see [`crate::timed_stream`]): when its last bytes arrived
//! at the client's socket, stamped by the kernel, and when the client's task read them. On this
//! machine everything shares two cores, so the second also holds how long a thousand client
//! tasks queue for a core. `--gateway-first` lowers this process (clients, issuer, MCP server)
//! to the lowest priority so that a gateway in a process of its own gets the cores first: the
//! arrival figure then shows the gateway as if it had cores of its own, which is how it is
//! deployed.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail, ensure};
use portcullis_gateway::jsonrpc_error::REVOKED;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::mcp::{self, EventStream, McpSession, Message};
use crate::stats::{Latencies, LatencySummary};
use crate::timed_stream::TimedStream;
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
    /// Run this `portcullis-gateway` binary in a process of its own, so that the CPU time it
    /// spends ending the streams is told apart from the rest (clients, issuer, MCP server).
    #[arg(long)]
    pub(crate) gateway_binary: Option<std::path::PathBuf>,
    /// Once the gateway runs, lower this process (clients, issuer, MCP server) to the lowest
    /// CPU priority, so that the gateway gets the cores first (needs --gateway-binary).
    #[arg(long, requires = "gateway_binary")]
    pub(crate) gateway_first: bool,
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
    /// When its last bytes (or the close) arrived at the client's socket.
    arrived: SystemTime,
    /// When the client's task read them.
    read: Instant,
    /// It carried the gateway's revocation error (for this revocation's `seq`, checked later).
    revocation_seq: Option<i64>,
    /// It carried the tool's result: the call finished instead of being stopped.
    completed: bool,
    /// The body failed instead of ending cleanly.
    error: Option<String>,
    /// The agent's connection, held open after the stream's end as an HTTP client's pool
    /// holds it: a thousand agents closing their sockets is no part of the span measured.
    _connection: Option<TimedStream>,
}

impl Ended {
    /// Nothing seen yet; the times are set when the stream ends.
    fn pending() -> Self {
        Self {
            arrived: SystemTime::now(),
            read: Instant::now(),
            revocation_seq: None,
            completed: false,
            error: None,
            _connection: None,
        }
    }
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
    let opened = match session.raw_post(&message) {
        Ok((addr, request)) => tokio::time::timeout(limit, TimedStream::post(addr, &request))
            .await
            .unwrap_or_else(|_| Err(anyhow!("no answer within {limit:?}"))),
        Err(error) => Err(error),
    };
    let mut body = match opened {
        Ok(body) => body,
        Err(error) => {
            starting.report(Err(format!("{error:#}"))).await;
            return None;
        }
    };
    let mut starting = Some(starting);
    let mut events = EventStream::default();
    let mut ended = Ended::pending();
    loop {
        let received = tokio::time::timeout(limit, body.next())
            .await
            .unwrap_or_else(|_| Err(anyhow!("nothing within {limit:?}")));
        match received {
            Ok(received) => {
                for event in events.push(&received.data) {
                    if let Some(starting) = starting.take() {
                        starting.report(Ok(())).await;
                    }
                    classify(&event.data, &mut ended);
                }
                if received.ended {
                    (ended.arrived, ended.read) = (received.arrived, received.seen);
                    break;
                }
            }
            Err(error) => {
                ended.error = Some(format!("{error:#}"));
                (ended.arrived, ended.read) = (SystemTime::now(), Instant::now());
                break;
            }
        }
    }
    ended._connection = Some(body);
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

/// Lowers every thread of this process to nice 19; threads started later inherit it. Lowering
/// one's own priority needs no privilege; the `renice` command does it because the workspace
/// has no `unsafe` for the system call.
fn yield_cores() -> anyhow::Result<()> {
    let threads: Vec<_> = std::fs::read_dir("/proc/self/task")?
        .flatten()
        .map(|task| task.file_name())
        .collect();
    let status = std::process::Command::new("renice")
        .args(["-n", "19", "-p"])
        .args(&threads)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running renice")?;
    ensure!(status.success(), "renice failed: {status}");
    Ok(())
}

/// Time the threads of a process have spent on a core, and runnable but waiting for one
/// (Linux `/proc/…/task/*/schedstat`, in nanoseconds: clock ticks are too coarse for a span of
/// milliseconds).
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct CpuTime {
    ran_us: u64,
    waited_us: u64,
}

impl CpuTime {
    /// So far, for process `pid`, or this one.
    fn of(pid: Option<u32>) -> Self {
        let tasks = pid.map_or_else(
            || "/proc/self/task".to_owned(),
            |pid| format!("/proc/{pid}/task"),
        );
        let (mut ran, mut waited) = (0, 0);
        for stat in std::fs::read_dir(tasks)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        {
            let mut fields = stat
                .split_whitespace()
                .map(|f| f.parse::<u64>().unwrap_or(0));
            ran += fields.next().unwrap_or(0);
            waited += fields.next().unwrap_or(0);
        }
        Self {
            ran_us: ran / 1000,
            waited_us: waited / 1000,
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            ran_us: self.ran_us.saturating_sub(before.ran_us),
            waited_us: self.waited_us.saturating_sub(before.waited_us),
        }
    }
}

impl std::fmt::Display for CpuTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ran {} µs, waited for a core {} µs",
            self.ran_us, self.waited_us
        )
    }
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
    /// Whether this process yielded the cores to the gateway (`--gateway-first`).
    gateway_first: bool,
    /// From just before the revocation call to the arrival of each stream's last bytes at the
    /// client's socket (streams that ended after it).
    time_to_arrival: LatencySummary,
    /// The first of those: the fixed part (revocation committed, pushed and applied), before
    /// the streams' own share of the cores spreads the rest.
    first_arrival_us: u64,
    /// The same span to when each client's task read its stream's end.
    time_to_read: LatencySummary,
    /// `slow_report` calls the expenses server saw cancelled (the gateway tells it).
    upstream_cancelled: u64,
    /// The gateway's process, from the revocation call to the last end, when it runs in a
    /// process of its own.
    gateway_cpu: Option<CpuTime>,
    /// This process (clients, issuer, MCP server; the gateway too, unless separate) in the
    /// same span.
    generator_cpu: CpuTime,
    /// One example of a stream that ended without the revocation event.
    first_unexpected: Option<String>,
}

/// Opens the streams, revokes the grant, and times the ends.
pub(crate) async fn run(world: &World, args: &KillArgs) -> anyhow::Result<KillReport> {
    let count = args.sessions;
    if args.gateway_first {
        ensure!(
            world.stack.gateway_pid().is_some(),
            "--gateway-first needs the gateway in a process of its own"
        );
        yield_cores()?;
    }
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
    let gateway_pid = world.stack.gateway_pid();
    let cpu_before = (
        gateway_pid.map(|pid| CpuTime::of(Some(pid))),
        CpuTime::of(None),
    );
    let revoked_at = Instant::now();
    let revoked_at_wall = SystemTime::now();
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
    let gateway_cpu = cpu_before
        .0
        .zip(gateway_pid)
        .map(|(before, pid)| CpuTime::of(Some(pid)).since(before));
    let generator_cpu = CpuTime::of(None).since(cpu_before.1);

    let (mut time_to_arrival, mut time_to_read) = (Latencies::new(), Latencies::new());
    let mut first_arrival = Duration::MAX;
    let mut in_band = 0;
    let mut early = 0;
    let mut first_unexpected = None;
    for ended in &outcomes {
        match ended.arrived.duration_since(revoked_at_wall) {
            Ok(arrival) => {
                time_to_arrival.record(arrival);
                time_to_read.record(ended.read.saturating_duration_since(revoked_at));
                first_arrival = first_arrival.min(arrival);
            }
            Err(_) => early += 1,
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
        gateway_first: args.gateway_first,
        time_to_arrival: time_to_arrival.summary(),
        first_arrival_us: u64::try_from(first_arrival.as_micros()).unwrap_or(u64::MAX),
        time_to_read: time_to_read.summary(),
        upstream_cancelled: world.stack.expenses.cancelled_reports(),
        gateway_cpu,
        generator_cpu,
        first_unexpected,
    })
}

impl KillReport {
    /// The report in words.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
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
        let (a, r) = (&self.time_to_arrival, &self.time_to_read);
        let _ = writeln!(
            out,
            "time from revoke call to each stream's end arriving at its client: first {} µs, \
             p50 {} µs, p90 {} µs, p99 {} µs, max {} µs",
            self.first_arrival_us, a.p50_us, a.p90_us, a.p99_us, a.max_us
        );
        let _ = writeln!(
            out,
            "… and to the client's task reading it{}: p50 {} µs, p90 {} µs, p99 {} µs, max {} µs",
            if self.gateway_first {
                " (at the lowest priority)"
            } else {
                ""
            },
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.max_us
        );
        let _ = writeln!(
            out,
            "threads from the revoke call to the last end: gateway {}; the rest {}",
            self.gateway_cpu
                .map_or_else(|| "(in this process)".to_owned(), |cpu| cpu.to_string()),
            self.generator_cpu
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
            gateway_binary: None,
            gateway_first: false,
        };
        args.validate().unwrap();
        let report = run(&world, &args).await.unwrap();
        assert_eq!(report.live, 3, "{report:?}");
        assert_eq!(report.ended_with_revocation_error, 3, "{report:?}");
        assert_eq!(report.still_open, 0);
        assert_eq!(report.time_to_arrival.count, 3);
        assert_eq!(report.time_to_read.count, 3);
        assert!(report.time_to_arrival.max_us <= report.time_to_read.max_us + 1000);
    }

    #[test]
    fn the_revocation_event_and_a_result_are_told_apart_from_progress() {
        let mut ended = Ended::pending();
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
