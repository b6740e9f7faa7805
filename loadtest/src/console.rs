//! The operator console under a fleet's decision traffic: how fast gateways' decision batches
//! are ingested with and without consoles watching, and how long a decision takes from the
//! moment a gateway ships it to the moment a console's event stream delivers it.
//!
//! Our issuer runs in this process on a fresh SQLite file. Gateways are simulated by their
//! shipping protocol (`POST /audit/decisions`, batches of numbered events, the ingest token),
//! as `portcullis-gateway` sends them; an operator signs in and opens `/console/events` as the
//! console page does. The phases:
//!
//! 1. **Ingest alone**: `--gateways` shippers send batches of `--batch` events in closed loops;
//!    events appended per second.
//! 2. **Ingest with consoles**: the same, with `--consoles` event streams open and read.
//! 3. **Paced**: `--rate` decisions per second in all (every gateway ships a batch every
//!    50 ms), first with no console open, then with the consoles open: how long each batch
//!    takes to be acknowledged in both, and, watched, the time from a batch's send to each of
//!    its decisions' arrival at each console (each decision names its number in `target`).
//!    Every decision must arrive.
//!
//! The delay a browser adds to draw a line is not in the figure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use portcullis_issuer::{Issuer, IssuerConfig, StorageOptions, users};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::stats::{Latencies, LatencySummary};

const PASSWORD: &str = "bench-operator-password";
const INGEST_TOKEN: &str = "bench-gateway-ingest-token";
/// How often a paced gateway ships.
const SHIP_EVERY: Duration = Duration::from_millis(50);

/// Options of `console`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConsoleArgs {
    /// Decisions per second shipped in the paced phase, by all gateways together.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Simulated gateways shipping at once.
    #[arg(long, default_value_t = 4)]
    gateways: usize,
    /// Events per batch in the closed-loop phases.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Consoles watching.
    #[arg(long, default_value_t = 2)]
    consoles: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
}

impl ConsoleArgs {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            (1..=20_000).contains(&self.rate),
            "--rate must be 1 to 20000"
        );
        ensure!(
            (1..=64).contains(&self.gateways),
            "--gateways must be 1 to 64"
        );
        ensure!(
            (1..=1000).contains(&self.batch),
            "--batch must be 1 to 1000"
        );
        ensure!(
            (1..=64).contains(&self.consoles),
            "--consoles must be 1 to 64"
        );
        ensure!(
            self.duration > 0.0 && self.duration <= 600.0,
            "--duration must be more than 0 and at most 600 seconds"
        );
        Ok(())
    }

    pub(crate) fn time_bound(&self) -> Duration {
        Duration::from_secs_f64(self.duration) * 4 + Duration::from_secs(60)
    }

    pub(crate) fn sessions(&self) -> usize {
        self.gateways + self.consoles
    }
}

/// What the run measured.
#[derive(Debug, Serialize)]
pub(crate) struct ConsoleReport {
    rate: u32,
    gateways: usize,
    consoles: usize,
    batch: usize,
    /// Events appended per second, no console open.
    ingest_alone_per_s: f64,
    /// Events appended per second, the consoles open.
    ingest_watched_per_s: f64,
    /// Decisions shipped in the watched paced phase, at this rate, and received by each console.
    paced_sent: u64,
    paced_per_s: f64,
    paced_received_per_console: Vec<u64>,
    /// From a batch's send to each of its decisions' arrival at a console, every console.
    shipped_to_console: LatencySummary,
    /// A paced batch's ingest (send to acknowledgement), no console open.
    ingest_alone: LatencySummary,
    /// The same, the consoles open.
    ingest_watched: LatencySummary,
}

impl ConsoleReport {
    pub(crate) fn render(&self) -> String {
        let l = &self.shipped_to_console;
        format!(
            "console: {gateways} gateways, {consoles} consoles\n\
             ingest, no console:      {alone:.0} decisions/s (batches of {batch})\n\
             ingest, consoles open:   {watched:.0} decisions/s ({ratio:.2}x)\n\
             paced at {rate}/s: {sent} shipped ({paced:.0}/s), received per console {received:?}\n\
             shipped → console: p50 {p50:.1} ms, p90 {p90:.1} ms, p99 {p99:.1} ms, max {max:.1} ms\n\
             paced ingest, no console:    p50 {a50:.1} ms, p99 {a99:.1} ms ({batches} batches)\n\
             paced ingest, consoles open: p50 {w50:.1} ms, p99 {w99:.1} ms\n",
            a50 = self.ingest_alone.p50_us as f64 / 1000.0,
            a99 = self.ingest_alone.p99_us as f64 / 1000.0,
            batches = self.ingest_alone.count,
            w50 = self.ingest_watched.p50_us as f64 / 1000.0,
            w99 = self.ingest_watched.p99_us as f64 / 1000.0,
            gateways = self.gateways,
            consoles = self.consoles,
            alone = self.ingest_alone_per_s,
            batch = self.batch,
            watched = self.ingest_watched_per_s,
            ratio = self.ingest_watched_per_s / self.ingest_alone_per_s,
            rate = self.rate,
            sent = self.paced_sent,
            paced = self.paced_per_s,
            received = self.paced_received_per_console,
            p50 = l.p50_us as f64 / 1000.0,
            p90 = l.p90_us as f64 / 1000.0,
            p99 = l.p99_us as f64 / 1000.0,
            max = l.max_us as f64 / 1000.0,
        )
    }
}

/// One simulated gateway: its name and the number of its last shipped event.
struct Gateway {
    name: String,
    seq: i64,
}

impl Gateway {
    /// Ships `count` decisions numbered from `first` (their `target`), one batch.
    async fn ship(
        &mut self,
        http: &reqwest::Client,
        base: &str,
        first: u64,
        count: usize,
    ) -> anyhow::Result<()> {
        let at = portcullis_issuer::now();
        let events: Vec<Value> = (0..count as u64)
            .map(|i| {
                self.seq += 1;
                json!({"seq": self.seq, "at": at, "decision": "allow", "sub": "alice",
                       "act": ["bench-agent"], "gid": "gr_bench", "jti": "j",
                       "upstream": "expenses", "method": "tools/call",
                       "target": format!("d{}", first + i), "rule": "permit"})
            })
            .collect();
        let response = http
            .post(format!("{base}/audit/decisions"))
            .bearer_auth(INGEST_TOKEN)
            .json(&json!({"gateway": self.name, "events": events}))
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "ingest answered {}",
            response.status()
        );
        Ok(())
    }
}

/// Send times of paced decisions, by number.
type Sent = Arc<Mutex<HashMap<u64, Instant>>>;

/// A console's event stream, read until aborted: counts lines and records the delay of those
/// whose send time is known.
async fn watch(
    http: reqwest::Client,
    url: String,
    cookie: String,
    sent: Sent,
    latencies: Arc<Mutex<Latencies>>,
    received: Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<()> {
    let mut response = http
        .get(url)
        .header("cookie", cookie)
        .send()
        .await?
        .error_for_status()?;
    let mut buffer = String::new();
    while let Some(chunk) = response.chunk().await? {
        let arrived = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue;
            };
            let Ok(line) = serde_json::from_str::<Value>(data.trim()) else {
                continue;
            };
            let Some(number) = line["what"]
                .as_str()
                .and_then(|w| w.strip_prefix('d'))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let at = sent.lock().expect("not poisoned").get(&number).copied();
            if let Some(at) = at {
                received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                latencies
                    .lock()
                    .expect("not poisoned")
                    .record(arrived.duration_since(at));
            }
        }
    }
    Ok(())
}

/// Ships in closed loops for `duration`; events appended per second.
async fn closed_loop(
    http: &reqwest::Client,
    base: &str,
    gateways: &mut Vec<Gateway>,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for mut gateway in gateways.drain(..) {
        let (http, base) = (http.clone(), base.to_owned());
        tasks.spawn(async move {
            let mut shipped = 0u64;
            while started.elapsed() < duration {
                // Closed-loop events are numbered out of the paced range.
                gateway.ship(&http, &base, u64::MAX / 2, batch).await?;
                shipped += batch as u64;
            }
            anyhow::Ok((gateway, shipped))
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        let (gateway, shipped) = done??;
        gateways.push(gateway);
        total += shipped;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Where the watched paced phase numbers its decisions (the unwatched one starts at 0).
const PACED_FROM: u64 = 1 << 40;

/// Ships `args.rate` decisions a second for `args.duration`, each gateway its share every
/// [`SHIP_EVERY`], numbered from `from`, their send times in `sent`. Returns how many were
/// shipped, at what rate, and how long each batch took to be acknowledged.
async fn paced(
    http: &reqwest::Client,
    base: &str,
    gateways: &mut Vec<Gateway>,
    args: &ConsoleArgs,
    sent: &Sent,
    from: u64,
) -> anyhow::Result<(u64, f64, Latencies)> {
    let phase = Duration::from_secs_f64(args.duration);
    let ticks = (phase.as_secs_f64() / SHIP_EVERY.as_secs_f64()).ceil() as u64;
    let per_tick = (f64::from(args.rate) * SHIP_EVERY.as_secs_f64()).round() as usize;
    let share = per_tick.div_ceil(args.gateways).max(1);
    let mut next = from;
    let mut acks = Latencies::new();
    let mut interval = tokio::time::interval(SHIP_EVERY);
    let started = Instant::now();
    for _ in 0..ticks {
        interval.tick().await;
        let mut shipping = JoinSet::new();
        for mut gateway in gateways.drain(..) {
            let (http, base, sent) = (http.clone(), base.to_owned(), sent.clone());
            let first = next;
            next += share as u64;
            shipping.spawn(async move {
                let now = Instant::now();
                {
                    let mut sent = sent.lock().expect("not poisoned");
                    for n in first..first + share as u64 {
                        sent.insert(n, now);
                    }
                }
                gateway.ship(&http, &base, first, share).await?;
                anyhow::Ok((gateway, now.elapsed()))
            });
        }
        while let Some(done) = shipping.join_next().await {
            let (gateway, took) = done??;
            acks.record(took);
            gateways.push(gateway);
        }
    }
    let shipped = next - from;
    Ok((
        shipped,
        shipped as f64 / started.elapsed().as_secs_f64(),
        acks,
    ))
}

pub(crate) async fn run(args: &ConsoleArgs) -> anyhow::Result<ConsoleReport> {
    let data = tempfile::TempDir::new()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let mut config = IssuerConfig::new(&base);
    config.audit_ingest_token = Some(INGEST_TOKEN.into());
    let issuer = Issuer::open(
        config,
        &StorageOptions {
            data_dir: data.path().to_owned(),
            database_url: None,
            key_encryption_secret: Some(portcullis_examples::random_secret()),
        },
    )
    .await
    .context("starting the issuer")?;
    let allowance = portcullis_policy::Constraints::from_authorization_details(&[
        json!({"type": "mcp_tools", "tools": ["*"]}),
    ])?;
    users::create(
        &issuer.state().db,
        users::NewUser {
            username: "olivia",
            password: PASSWORD,
            resources: vec!["https://gateway.bench/mcp/expenses".into()],
            allowance,
            operator: true,
        },
        portcullis_issuer::now(),
    )
    .await?;
    let state = issuer.state().clone();
    let server = tokio::spawn(async move {
        let _ = portcullis_issuer::serve(listener, state, std::future::pending()).await;
    });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let signed_in = http
        .post(format!("{base}/sign-in"))
        .form(&[
            ("username", "olivia"),
            ("password", PASSWORD),
            ("next", "/console"),
        ])
        .send()
        .await?;
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("signing in set no cookie")?
        .to_owned();

    let phase = Duration::from_secs_f64(args.duration);
    let mut gateways: Vec<Gateway> = (0..args.gateways)
        .map(|i| Gateway {
            name: format!("gw-{i}"),
            seq: 0,
        })
        .collect();
    let alone = closed_loop(&http, &base, &mut gateways, args.batch, phase).await?;
    // The unwatched paced phase's numbers are recorded nowhere a console reads.
    let (_, _, ingest_alone) =
        paced(&http, &base, &mut gateways, args, &Sent::default(), 0).await?;

    let sent: Sent = Arc::default();
    let latencies = Arc::new(Mutex::new(Latencies::new()));
    let mut counters = Vec::new();
    let mut consoles = JoinSet::new();
    for _ in 0..args.consoles {
        let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
        counters.push(received.clone());
        consoles.spawn(watch(
            http.clone(),
            format!("{base}/console/events"),
            cookie.clone(),
            sent.clone(),
            latencies.clone(),
            received,
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let watched = closed_loop(&http, &base, &mut gateways, args.batch, phase).await?;

    let (next, paced_per_s, ingest_watched) =
        paced(&http, &base, &mut gateways, args, &sent, PACED_FROM).await?;
    // Every decision has a second to arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    consoles.abort_all();
    server.abort();
    let received: Vec<u64> = counters
        .iter()
        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    let shipped_to_console = latencies.lock().expect("not poisoned").summary();
    Ok(ConsoleReport {
        rate: args.rate,
        gateways: args.gateways,
        consoles: args.consoles,
        batch: args.batch,
        ingest_alone_per_s: alone,
        ingest_watched_per_s: watched,
        paced_sent: next,
        ingest_alone: ingest_alone.summary(),
        ingest_watched: ingest_watched.summary(),
        paced_per_s,
        paced_received_per_console: received,
        shipped_to_console,
    })
}
