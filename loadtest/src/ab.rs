//! Interleaved A/B/C load: one MCP request sent straight to an expenses server (`direct`),
//! through a bare Pingora proxy to that server (`passthrough`: the hop alone), and through the
//! gateway with full authorization (`gateway`: verify the delegation token, authorize the
//! call, mint a downstream token that the server verifies in turn).
//!
//! A noisy, shared two-core machine drifts by more than the difference being measured, so the
//! scenarios are not run one after the other: the measured time is cut into short rounds that
//! alternate (A B A B …), and each scenario's figures add up its rounds. Sessions stay open
//! across rounds; only requests are timed.
//!
//! Closed loop (default): each virtual client sends its next request when the previous answer
//! has been read. With `--rate`, each client instead sends on a fixed schedule (the total rate
//! split evenly, clients staggered). A client that fell behind its schedule sends at once and
//! its latency runs from the *scheduled* send time, so a stall shows up in the tail instead of
//! silently lowering the rate (no coordinated omission); a client on schedule is timed from
//! when its timer woke it (tokio's timer is millisecond-grained, which is no server's fault).
//! A client still has one request in flight at a time: a server slower than the schedule makes
//! the achieved rate fall short, which the report shows.
//!
//! Longer than most: the interleaved-rounds engine, its pacing (open and closed loop) and its
//! report are one measurement and are read together.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde::Serialize;
use tokio::task::JoinSet;

use portcullis_examples::agent::DpopKey;

use crate::mcp::{self, McpSession, Message};
use crate::stats::{Latencies, LatencySummary};
use crate::world::World;

/// Requests one client may send in one round, whatever the clock says: a bound on every loop.
const MAX_REQUESTS_PER_ROUND: u64 = 10_000_000;
/// A round shorter than this is mostly ramp-up and ramp-down.
const MIN_ROUND: Duration = Duration::from_millis(200);
const MAX_CLIENTS: usize = 1000;
const MAX_DURATION_SECONDS: f64 = 3600.0;
const MAX_ROUNDS: u32 = 1000;
const MAX_RATE: f64 = 1_000_000.0;
/// Time allowed to open one scenario's sessions.
const OPEN_BOUND: Duration = Duration::from_secs(60);

/// The longest single round or warm-up: delegation tokens are renewed between rounds, so a
/// round must end well before one expires (the stack's issuer runs with the default lifetime).
fn max_round() -> Duration {
    let lifetime = portcullis_issuer::IssuerConfig::new("http://127.0.0.1").delegation_ttl;
    Duration::from_secs(u64::try_from(lifetime).unwrap_or(0) * 3 / 5)
}

/// Which scenarios a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenarios {
    /// Straight to an expenses server that checks no token.
    Direct,
    /// Through a bare Pingora proxy to that server.
    Passthrough,
    /// Through the gateway, with full authorization.
    Gateway,
    /// All three, interleaved, with the comparisons.
    All,
}

/// Options shared by `calls` and `tools-list`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadArgs {
    /// Virtual clients per scenario, each with its own MCP session.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Measured seconds per scenario, split into --rounds rounds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Total requests per second per scenario, paced per client (open loop); default: closed
    /// loop, as fast as answers come.
    #[arg(long)]
    rate: Option<f64>,
    /// Unmeasured seconds per scenario before the first round, to open connections and warm
    /// pools and caches.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// How many rounds the measured time is cut into; scenarios alternate every round.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Which scenarios to run.
    #[arg(long, value_enum, default_value_t = Scenarios::All)]
    scenario: Scenarios,
    /// Also run `gateway+redis`: a replica of the gateway counting rate caps in this Redis
    /// (redis://127.0.0.1:6379), interleaved with the others. The grant then has a cap no run
    /// reaches, so that `gateway` runs the per-replica rate step and `gateway+redis` the
    /// shared one.
    #[arg(long)]
    redis_url: Option<String>,
    /// Also run `gateway+dpop`: the same gateway, with a token bound to a client key of
    /// this algorithm and a fresh DPoP proof on every request, interleaved with the others.
    #[arg(long, value_enum)]
    dpop: Option<DpopAlgorithm>,
}

/// The algorithm of the `gateway+dpop` clients' key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DpopAlgorithm {
    /// ECDSA P-256, what most DPoP clients use.
    Es256,
    /// Ed25519.
    Eddsa,
}

impl LoadArgs {
    pub(crate) fn clients(&self) -> usize {
        self.clients
    }

    /// The longest the load phase can take: each scenario's warm-up and rounds, a straggling
    /// request at the end of each, and time to open its sessions.
    pub(crate) fn time_bound(&self) -> Duration {
        let targets = self.targets().len() as u32;
        let phases = self.rounds + 1;
        targets
            * (Duration::from_secs_f64(self.warmup + self.duration)
                + phases * mcp::REQUEST_TIMEOUT
                + OPEN_BOUND)
    }

    pub(crate) fn needs_direct_server(&self) -> bool {
        self.scenario != Scenarios::Gateway
    }

    /// The Redis of the `gateway+redis` scenario, if it runs.
    pub(crate) fn redis_url(&self) -> Option<&str> {
        self.redis_url.as_deref()
    }

    fn targets(&self) -> Vec<Target> {
        let mut targets = match self.scenario {
            Scenarios::Direct => vec![Target::Direct],
            Scenarios::Passthrough => vec![Target::Passthrough],
            Scenarios::Gateway => vec![Target::Gateway],
            Scenarios::All => vec![Target::Direct, Target::Passthrough, Target::Gateway],
        };
        if self.redis_url.is_some() && targets.contains(&Target::Gateway) {
            targets.push(Target::GatewayRedis);
        }
        if self.dpop.is_some() && targets.contains(&Target::Gateway) {
            targets.push(Target::GatewayDpop);
        }
        targets
    }

    fn round_length(&self) -> Duration {
        Duration::from_secs_f64(self.duration / f64::from(self.rounds))
    }

    /// Checks the options before anything is started.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            (1..=MAX_CLIENTS).contains(&self.clients),
            "--clients must be 1 to {MAX_CLIENTS}"
        );
        ensure!(
            (1..=MAX_ROUNDS).contains(&self.rounds),
            "--rounds must be 1 to {MAX_ROUNDS}"
        );
        ensure!(
            self.duration > 0.0 && self.duration <= MAX_DURATION_SECONDS,
            "--duration must be more than 0 and at most {MAX_DURATION_SECONDS} seconds"
        );
        ensure!(
            (0.0..=MAX_DURATION_SECONDS).contains(&self.warmup),
            "--warmup must be 0 to {MAX_DURATION_SECONDS} seconds"
        );
        if let Some(url) = &self.redis_url {
            ensure!(
                url.starts_with("redis://127.0.0.1:") || url.starts_with("redis://localhost:"),
                "--redis-url must be a Redis on this machine (redis://127.0.0.1:PORT)"
            );
        }
        if let Some(rate) = self.rate {
            ensure!(
                (1.0..=MAX_RATE).contains(&rate),
                "--rate must be 1 to {MAX_RATE} requests per second"
            );
        }
        let round = self.round_length();
        ensure!(
            round >= MIN_ROUND,
            "rounds of {round:?} are too short: use a longer --duration or fewer --rounds"
        );
        let longest = max_round();
        ensure!(
            round <= longest && self.warmup <= longest.as_secs_f64(),
            "a round or warm-up may last at most {longest:?} (delegation tokens are renewed \
             between rounds and must not expire during one): use more --rounds"
        );
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Target {
    Direct,
    Passthrough,
    Gateway,
    /// A replica of the gateway counting rate caps in Redis.
    #[serde(rename = "gateway+redis")]
    GatewayRedis,
    /// The gateway, with DPoP-bound tokens and a proof per request.
    #[serde(rename = "gateway+dpop")]
    GatewayDpop,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Passthrough => "passthrough",
            Target::Gateway => "gateway",
            Target::GatewayRedis => "gateway+redis",
            Target::GatewayDpop => "gateway+dpop",
        }
    }

    /// Whether its sessions need delegation tokens.
    fn gated(self) -> bool {
        matches!(
            self,
            Target::Gateway | Target::GatewayRedis | Target::GatewayDpop
        )
    }
}

/// The request a run sends, and how it is named in the report.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    pub(crate) label: String,
    pub(crate) message: Message,
}

/// What one client saw in one round.
#[derive(Debug)]
struct Tally {
    latencies: Latencies,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            latencies: Latencies::new(),
            errors: 0,
            first_error: None,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies.merge(&other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// When a client sends.
#[derive(Debug, Clone, Copy)]
enum Pacing {
    /// As soon as the previous answer is read.
    Closed,
    /// On a schedule: the next send is due at `next`, then every `every`.
    Open { next: Instant, every: Duration },
}

/// One client's loop for one round: sends until `end` and hands its session back.
async fn drive(
    mut session: McpSession,
    message: Arc<Message>,
    end: Instant,
    mut pacing: Pacing,
) -> (McpSession, Tally) {
    let mut tally = Tally::new();
    for _ in 0..MAX_REQUESTS_PER_ROUND {
        let due = match &mut pacing {
            Pacing::Closed => Instant::now(),
            Pacing::Open { next, every } => {
                let due = *next;
                *next += *every;
                due
            }
        };
        if due >= end {
            break;
        }
        // A client ahead of its schedule sleeps, and its clock starts when it wakes: the timer
        // fires up to a millisecond late, and that is the generator's lateness, not the
        // server's. A client behind schedule sends at once, and its clock started when the
        // request was due: that wait is the server's doing.
        let sent = if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
            Instant::now()
        } else {
            due
        };
        match session.call(&message).await {
            Ok(()) => tally.latencies.record(sent.elapsed()),
            Err(error) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(error);
            }
        }
    }
    (session, tally)
}

/// One scenario: its sessions and what its rounds added up to.
#[derive(Debug)]
struct Lane {
    target: Target,
    /// The key its tokens are bound to (`gateway+dpop`).
    dpop: Option<Arc<DpopKey>>,
    sessions: Vec<McpSession>,
    tally: Tally,
    measured: Duration,
}

impl Lane {
    /// Gives every gateway session a fresh delegation token, so no round outlives one.
    async fn renew_token(&mut self, world: &World) -> anyhow::Result<()> {
        if self.target.gated() {
            let token = match &self.dpop {
                Some(key) => world.bound_delegation_token(key).await?,
                None => world.delegation_token().await?,
            };
            for session in &mut self.sessions {
                session.set_token(&token)?;
            }
        }
        Ok(())
    }

    /// Runs every client for `length`; counts the results when `measure`.
    async fn round(
        &mut self,
        message: &Arc<Message>,
        length: Duration,
        rate: Option<f64>,
        measure: bool,
    ) -> anyhow::Result<()> {
        let clients = self.sessions.len();
        let start = Instant::now();
        let end = start + length;
        let mut running = JoinSet::new();
        for (i, session) in self.sessions.drain(..).enumerate() {
            let pacing = match rate {
                None => Pacing::Closed,
                Some(rate) => {
                    let every = Duration::from_secs_f64(clients as f64 / rate);
                    // Staggered, so the clients' schedules do not fire all at once.
                    let offset = every.mul_f64(i as f64 / clients as f64);
                    Pacing::Open {
                        next: start + offset,
                        every,
                    }
                }
            };
            running.spawn(drive(session, message.clone(), end, pacing));
        }
        let mut round = Tally::new();
        while let Some(done) = running.join_next().await {
            let (session, tally) = done.context("a client task failed")?;
            self.sessions.push(session);
            round.merge(tally);
        }
        if measure {
            // Until the last answer was read: the final requests started before `end`.
            self.measured += start.elapsed();
            self.tally.merge(round);
        }
        Ok(())
    }

    fn summary(&self) -> ScenarioSummary {
        let latency = self.tally.latencies.summary();
        let seconds = self.measured.as_secs_f64();
        ScenarioSummary {
            scenario: self.target,
            requests: latency.count + self.tally.errors,
            errors: self.tally.errors,
            seconds,
            throughput_rps: latency.count as f64 / seconds,
            latency,
            first_error: self.tally.first_error.clone(),
        }
    }
}

/// One scenario's figures. Latencies are of successful requests only.
#[derive(Debug, Serialize)]
struct ScenarioSummary {
    scenario: Target,
    requests: u64,
    errors: u64,
    /// Measured time, summed over rounds.
    seconds: f64,
    /// Successful requests per second.
    throughput_rps: f64,
    latency: LatencySummary,
    first_error: Option<String>,
}

/// One scenario's cost, as the difference from a baseline.
#[derive(Debug, Serialize)]
struct Comparison {
    /// Throughput / the baseline's throughput.
    throughput_ratio: f64,
    p50_added_us: i64,
    p99_added_us: i64,
}

/// The result of a `calls` or `tools-list` run.
#[derive(Debug, Serialize)]
pub(crate) struct AbReport {
    workload: String,
    clients: usize,
    /// Requests per second per scenario when paced; `null` for closed loop.
    rate: Option<f64>,
    rounds: u32,
    round_seconds: f64,
    warmup_seconds: f64,
    scenarios: Vec<ScenarioSummary>,
    gateway_vs_direct: Option<Comparison>,
    /// What Portcullis adds on top of Pingora's hop.
    gateway_vs_passthrough: Option<Comparison>,
    /// Pingora's hop alone.
    passthrough_vs_direct: Option<Comparison>,
    /// What counting rate caps in Redis costs over counting them per replica.
    redis_vs_gateway: Option<Comparison>,
    /// What DPoP-bound tokens, with a proof per request, cost over bearer tokens.
    dpop_vs_gateway: Option<Comparison>,
}

fn signed(micros: u64) -> i64 {
    i64::try_from(micros).unwrap_or(i64::MAX)
}

/// Runs `workload` as `args` says and adds up the results.
pub(crate) async fn run(
    world: &World,
    workload: Workload,
    args: &LoadArgs,
) -> anyhow::Result<AbReport> {
    let http = mcp::http_client()?;
    let mut lanes = Vec::new();
    for target in args.targets() {
        let url = match target {
            Target::Direct => world.direct_endpoint()?,
            Target::Passthrough => world.passthrough_endpoint()?,
            Target::Gateway => world.gateway_endpoint(),
            Target::GatewayRedis => world.gateway_redis_endpoint()?,
            Target::GatewayDpop => world.gateway_endpoint(),
        };
        let dpop = args
            .dpop
            .filter(|_| target == Target::GatewayDpop)
            .map(|algorithm| {
                Arc::new(DpopKey::generate_as(match algorithm {
                    DpopAlgorithm::Es256 => portcullis_policy::Algorithm::Es256,
                    DpopAlgorithm::Eddsa => portcullis_policy::Algorithm::EdDsa,
                }))
            });
        let tokens = match (target.gated(), &dpop) {
            (true, Some(key)) => vec![world.bound_delegation_token(key).await?],
            (true, None) => vec![world.delegation_token().await?],
            (false, _) => Vec::new(),
        };
        eprintln!(
            "{}: opening {} MCP sessions at {url}",
            target.name(),
            args.clients
        );
        let sessions =
            mcp::open_sessions_with(&http, url, &tokens, args.clients, dpop.clone()).await?;
        lanes.push(Lane {
            target,
            dpop,
            sessions,
            tally: Tally::new(),
            measured: Duration::ZERO,
        });
    }
    let message = Arc::new(workload.message);
    if args.warmup > 0.0 {
        let warmup = Duration::from_secs_f64(args.warmup);
        for lane in &mut lanes {
            eprintln!("{}: warming up for {warmup:?}", lane.target.name());
            lane.renew_token(world).await?;
            lane.round(&message, warmup, args.rate, false).await?;
        }
    }
    let length = args.round_length();
    for round in 1..=args.rounds {
        for lane in &mut lanes {
            eprintln!(
                "round {round}/{}: {} for {length:?}",
                args.rounds,
                lane.target.name()
            );
            lane.renew_token(world).await?;
            lane.round(&message, length, args.rate, true).await?;
        }
    }

    let scenarios: Vec<ScenarioSummary> = lanes.iter().map(Lane::summary).collect();
    let compare = |measured: Target, baseline: Target| {
        let find = |target| scenarios.iter().find(|s| s.scenario == target);
        match (find(measured), find(baseline)) {
            (Some(m), Some(b)) if b.throughput_rps > 0.0 => Some(Comparison {
                throughput_ratio: m.throughput_rps / b.throughput_rps,
                p50_added_us: signed(m.latency.p50_us) - signed(b.latency.p50_us),
                p99_added_us: signed(m.latency.p99_us) - signed(b.latency.p99_us),
            }),
            _ => None,
        }
    };
    let gateway_vs_direct = compare(Target::Gateway, Target::Direct);
    let gateway_vs_passthrough = compare(Target::Gateway, Target::Passthrough);
    let passthrough_vs_direct = compare(Target::Passthrough, Target::Direct);
    let redis_vs_gateway = compare(Target::GatewayRedis, Target::Gateway);
    let dpop_vs_gateway = compare(Target::GatewayDpop, Target::Gateway);
    Ok(AbReport {
        workload: workload.label,
        clients: args.clients,
        rate: args.rate,
        rounds: args.rounds,
        round_seconds: length.as_secs_f64(),
        warmup_seconds: args.warmup,
        scenarios,
        gateway_vs_direct,
        gateway_vs_passthrough,
        passthrough_vs_direct,
        redis_vs_gateway,
        dpop_vs_gateway,
    })
}

impl AbReport {
    /// The report as a table.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let pacing = match self.rate {
            None => "closed loop".to_owned(),
            Some(rate) => format!("paced at {rate} req/s per scenario"),
        };
        let _ = writeln!(
            out,
            "\n{} — {} clients per scenario, {pacing}, {} rounds of {:.2} s per scenario \
             (interleaved), warm-up {} s",
            self.workload, self.clients, self.rounds, self.round_seconds, self.warmup_seconds
        );
        let _ = writeln!(
            out,
            "{:<13} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "scenario", "requests", "errors", "req/s", "p50 µs", "p90 µs", "p99 µs", "max µs"
        );
        for s in &self.scenarios {
            let _ = writeln!(
                out,
                "{:<13} {:>9} {:>7} {:>10.1} {:>9} {:>9} {:>9} {:>9}",
                s.scenario.name(),
                s.requests,
                s.errors,
                s.throughput_rps,
                s.latency.p50_us,
                s.latency.p90_us,
                s.latency.p99_us,
                s.latency.max_us
            );
        }
        for s in &self.scenarios {
            if let Some(error) = &s.first_error {
                let _ = writeln!(out, "{}: first error: {error}", s.scenario.name());
            }
        }
        for (label, comparison) in [
            ("passthrough vs direct", &self.passthrough_vs_direct),
            ("gateway vs passthrough", &self.gateway_vs_passthrough),
            ("gateway vs direct", &self.gateway_vs_direct),
            ("gateway+redis vs gateway", &self.redis_vs_gateway),
            ("gateway+dpop vs gateway", &self.dpop_vs_gateway),
        ] {
            if let Some(c) = comparison {
                let _ = writeln!(
                    out,
                    "{label}: throughput x{:.3}, p50 {:+} µs, p99 {:+} µs",
                    c.throughput_ratio, c.p50_added_us, c.p99_added_us
                );
            }
        }
        if self.gateway_vs_direct.is_some() {
            let _ = writeln!(
                out,
                "(the gateway path includes the expenses server verifying the gateway's \
                 downstream token, which the direct and passthrough paths skip)"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn args(rate: Option<f64>) -> LoadArgs {
        let args = LoadArgs {
            clients: 2,
            duration: 0.4,
            rate,
            warmup: 0.0,
            rounds: 2,
            scenario: Scenarios::All,
            redis_url: None,
            dpop: None,
        };
        args.validate().unwrap();
        args
    }

    fn submit(amount: u32) -> Workload {
        Workload {
            label: "test".to_owned(),
            message: Message::tool_call(
                "submit_expense",
                &json!({"amount": amount, "category": "travel"}),
            ),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_scenario_gets_every_call_answered() {
        let world = World::start(true).await.unwrap();
        let report = run(&world, submit(120), &args(None)).await.unwrap();
        assert_eq!(report.scenarios.len(), 3);
        for s in &report.scenarios {
            assert!(s.latency.count > 0, "{s:?}");
            assert_eq!(s.errors, 0, "{:?}", s.first_error);
        }
        assert!(report.gateway_vs_direct.is_some());
        assert!(report.gateway_vs_passthrough.is_some());
        let rendered = report.render();
        assert!(rendered.contains("gateway vs passthrough"), "{rendered}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_counting_in_redis_is_measured_beside_the_gateway() {
        let with_redis = LoadArgs {
            scenario: Scenarios::Gateway,
            redis_url: Some(
                std::env::var("PORTCULLIS_TEST_REDIS_URL")
                    .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            ),
            ..args(None)
        };
        let world = World::start_with(false, None, with_redis.redis_url())
            .await
            .unwrap();
        let report = run(&world, submit(120), &with_redis).await.unwrap();
        assert_eq!(report.scenarios.len(), 2);
        for s in &report.scenarios {
            assert!(s.latency.count > 0, "{s:?}");
            assert_eq!(s.errors, 0, "{:?}", s.first_error);
        }
        assert!(report.render().contains("gateway+redis vs gateway"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dpop_bound_sessions_are_measured_beside_bearer_ones() {
        let world = World::start(false).await.unwrap();
        let with_dpop = LoadArgs {
            scenario: Scenarios::Gateway,
            dpop: Some(DpopAlgorithm::Eddsa),
            ..args(None)
        };
        let report = run(&world, submit(120), &with_dpop).await.unwrap();
        assert_eq!(report.scenarios.len(), 2);
        for s in &report.scenarios {
            assert!(s.latency.count > 0, "{s:?}");
            assert_eq!(s.errors, 0, "{:?}", s.first_error);
        }
        assert!(report.render().contains("gateway+dpop vs gateway"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_the_gateway_denies_counts_as_an_error() {
        let world = World::start(false).await.unwrap();
        let paced = LoadArgs {
            scenario: Scenarios::Gateway,
            ..args(Some(50.0))
        };
        let report = run(&world, submit(620), &paced).await.unwrap();
        let gateway = &report.scenarios[0];
        assert_eq!(gateway.latency.count, 0);
        // 50 req/s for 0.4 s, give or take the schedule's ends and a busy machine.
        assert!((10..=30).contains(&gateway.errors), "{gateway:?}");
        assert!(
            gateway.first_error.as_deref().unwrap().contains("-31001"),
            "{gateway:?}"
        );
    }
}
