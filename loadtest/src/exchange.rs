//! Token exchange throughput at the issuer, ours side by side with a peer.
//!
//! Each target gets N virtual agents in a closed loop, each sending RFC 8693 exchanges with
//! client authentication on every request, in interleaved rounds (A B C A B C …) so every
//! target sees the same machine noise:
//!
//! - `sqlite`, `postgres`: our issuer, in this process, on a fresh SQLite file or a fresh
//!   PostgreSQL schema. The agent exchanges the user's grant token for a delegation token for
//!   one resource (`client_secret_basic`, a 256-bit secret checked against its SHA-256).
//! - `authgent`: `authgent-server` (PyPI), started by the caller. Agent B exchanges agent A's
//!   access token for a delegated one (`client_secret_post`, a 256-bit secret checked against
//!   its bcrypt hash, cost 12). Both issuers refuse an exchange without the client's secret
//!   (authgent only when a secret is sent, so it is always sent).
//!
//! What each exchange costs differs in kind, and the report says so: ours verifies two
//! EdDSA tokens, checks revocations and the grant in the database, attenuates, signs one
//! token and appends an audit event; authgent verifies one ES256 token, signs two and writes
//! two rows, after bcrypt.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use portcullis_examples::agent::{ClientCredentials, IssuerClient};
use portcullis_issuer::{Issuer, IssuerConfig, StorageOptions};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::stats::{Latencies, LatencySummary};

const RESOURCE: &str = "https://gateway.bench/mcp/expenses";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_CLIENTS: usize = 256;

/// Options of `exchange`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ExchangeArgs {
    /// Virtual agents per target, each in a closed loop.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Measured seconds per target, split into --rounds rounds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Rounds the measured time is cut into; targets alternate every round.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Also measure our issuer on PostgreSQL (a fresh schema in this database).
    #[arg(long, env = "PORTCULLIS_BENCH_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// Also measure an authgent-server already running at this loopback URL (open
    /// registration, rate limit raised; see scripts/bench.sh).
    #[arg(long)]
    authgent_url: Option<String>,
    /// Skip our issuer on SQLite.
    #[arg(long)]
    no_sqlite: bool,
}

impl ExchangeArgs {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            (1..=MAX_CLIENTS).contains(&self.clients),
            "--clients must be 1 to {MAX_CLIENTS}"
        );
        ensure!(
            self.duration > 0.0 && self.duration <= 600.0,
            "--duration must be more than 0 and at most 600 seconds"
        );
        ensure!(
            (1..=100).contains(&self.rounds),
            "--rounds must be 1 to 100"
        );
        if let Some(url) = &self.authgent_url {
            ensure!(
                url.starts_with("http://127.0.0.1:"),
                "refusing to send load to {url}: only 127.0.0.1 is a target"
            );
        }
        Ok(())
    }

    pub(crate) fn time_bound(&self) -> Duration {
        let targets = 3;
        Duration::from_secs_f64(self.duration) * targets
            + REQUEST_TIMEOUT * (self.rounds + 1) * targets
    }

    pub(crate) fn clients(&self) -> usize {
        self.clients
    }
}

/// How to make one exchange at one target.
#[derive(Debug, Clone)]
struct Target {
    name: &'static str,
    token_url: String,
    /// Form fields, client authentication included when it travels in the form.
    form: Vec<(String, String)>,
    /// `client_secret_basic` credentials, when used.
    basic: Option<ClientCredentials>,
}

/// Our issuer serving in this process until dropped.
struct OurIssuer {
    task: tokio::task::JoinHandle<()>,
    _data: tempfile::TempDir,
}

impl Drop for OurIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_ours(
    name: &'static str,
    database_url: Option<String>,
) -> anyhow::Result<(OurIssuer, Target)> {
    let data = tempfile::TempDir::new()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let admin = portcullis_examples::random_secret();
    let mut config = IssuerConfig::new(&base);
    config.admin_token = Some(admin.clone());
    let database_url = match database_url {
        Some(url) => Some(fresh_schema(&url).await?),
        None => None,
    };
    let issuer = Issuer::open(
        config,
        &StorageOptions {
            data_dir: data.path().to_owned(),
            database_url,
            key_encryption_secret: Some(portcullis_examples::random_secret()),
        },
    )
    .await
    .with_context(|| format!("starting our issuer ({name})"))?;
    let state = issuer.state().clone();
    let task = tokio::spawn(async move {
        let _ = portcullis_issuer::serve(listener, state, std::future::pending()).await;
    });
    let client = IssuerClient::new(&base, &admin);
    let agent = client.register_agent("bench-agent", "Bench agent").await?;
    let grant = client
        .grant(
            "alice",
            &agent.id,
            RESOURCE,
            json!([{"type": "mcp_tools", "tools": ["expenses/*"], "max_depth": 1}]),
        )
        .await?;
    let subject = client.subject_token(&grant).await?;
    let actor = client.client_token(&agent).await?;
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", subject.as_str()),
        ("subject_token_type", ACCESS_TOKEN),
        ("actor_token", actor.as_str()),
        ("actor_token_type", ACCESS_TOKEN),
        ("resource", RESOURCE),
    ];
    Ok((
        OurIssuer { task, _data: data },
        Target {
            name,
            token_url: format!("{base}/token"),
            form: form
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            basic: Some(agent),
        },
    ))
}

/// A new, empty schema in `url`'s database; the URL that uses it.
async fn fresh_schema(url: &str) -> anyhow::Result<String> {
    let db = portcullis_issuer::db::Database::connect(url).await?;
    let schema = format!("bench_{}", std::process::id());
    for statement in [
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(db.pool())
            .await?;
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{sep}options=-c%20search_path%3D{schema}"))
}

async fn authgent_target(http: &reqwest::Client, base: &str) -> anyhow::Result<Target> {
    let register = |name: &'static str| async move {
        let response = http
            .post(format!("{base}/agents"))
            .json(&json!({"name": name, "owner": "bench", "allowed_scopes": ["read", "write"]}))
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "registering {name} at authgent: {}",
            response.status()
        );
        let body: Value = response.json().await?;
        Ok::<_, anyhow::Error>((
            body["client_id"]
                .as_str()
                .context("no client_id")?
                .to_owned(),
            body["client_secret"]
                .as_str()
                .context("no client_secret")?
                .to_owned(),
        ))
    };
    let (a_id, a_secret) = register("bench-agent-a").await?;
    let (b_id, b_secret) = register("bench-agent-b").await?;
    let response = http
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &a_id),
            ("client_secret", &a_secret),
            ("scope", "read write"),
        ])
        .send()
        .await?;
    let body: Value = response.json().await?;
    let subject = body["access_token"]
        .as_str()
        .with_context(|| format!("authgent client_credentials: {body}"))?
        .to_owned();
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("client_id", b_id.as_str()),
        ("client_secret", b_secret.as_str()),
        ("subject_token", subject.as_str()),
        ("subject_token_type", ACCESS_TOKEN),
        ("audience", RESOURCE),
        ("scope", "read"),
    ];
    Ok(Target {
        name: "authgent",
        token_url: format!("{base}/token"),
        form: form
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        basic: None,
    })
}

async fn exchange(http: &reqwest::Client, target: &Target) -> anyhow::Result<()> {
    let mut request = http.post(&target.token_url).form(&target.form);
    if let Some(client) = &target.basic {
        request = request.basic_auth(&client.id, Some(&client.secret));
    }
    let response = request.timeout(REQUEST_TIMEOUT).send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if !status.is_success() || body["access_token"].as_str().is_none() {
        bail!("{status}: {body}");
    }
    Ok(())
}

/// One target's figures.
#[derive(Debug, Serialize)]
struct TargetSummary {
    target: &'static str,
    exchanges: u64,
    errors: u64,
    seconds: f64,
    exchanges_per_second: f64,
    latency: LatencySummary,
    first_error: Option<String>,
}

/// The result of an `exchange` run.
#[derive(Debug, Serialize)]
pub(crate) struct ExchangeReport {
    clients: usize,
    rounds: u32,
    targets: Vec<TargetSummary>,
    /// Our issuer on SQLite / authgent, exchanges per second.
    sqlite_vs_authgent: Option<f64>,
}

struct Lane {
    target: Target,
    latencies: Latencies,
    errors: u64,
    first_error: Option<String>,
    measured: Duration,
}

impl Lane {
    async fn round(
        &mut self,
        http: &reqwest::Client,
        clients: usize,
        length: Duration,
        measure: bool,
    ) {
        let start = Instant::now();
        let end = start + length;
        let mut running = JoinSet::new();
        for _ in 0..clients {
            let (http, target) = (http.clone(), self.target.clone());
            running.spawn(async move {
                let mut latencies = Latencies::new();
                let (mut errors, mut first_error) = (0u64, None);
                while Instant::now() < end {
                    let sent = Instant::now();
                    match exchange(&http, &target).await {
                        Ok(()) => latencies.record(sent.elapsed()),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                (latencies, errors, first_error)
            });
        }
        while let Some(done) = running.join_next().await {
            let Ok((latencies, errors, first_error)) = done else {
                continue;
            };
            if measure {
                self.latencies.merge(&latencies);
                self.errors += errors;
                if self.first_error.is_none() {
                    self.first_error = first_error;
                }
            }
        }
        if measure {
            self.measured += start.elapsed();
        }
    }
}

/// Runs every configured target.
pub(crate) async fn run(args: &ExchangeArgs) -> anyhow::Result<ExchangeReport> {
    let http = crate::mcp::http_client()?;
    let mut keep = Vec::new();
    let mut targets = Vec::new();
    if !args.no_sqlite {
        let (issuer, target) = start_ours("sqlite", None).await?;
        keep.push(issuer);
        targets.push(target);
    }
    if let Some(url) = &args.postgres_url {
        let (issuer, target) = start_ours("postgres", Some(url.clone())).await?;
        keep.push(issuer);
        targets.push(target);
    }
    if let Some(url) = &args.authgent_url {
        targets.push(authgent_target(&http, url).await?);
    }
    ensure!(
        !targets.is_empty(),
        "no target: drop --no-sqlite or add one"
    );
    let mut lanes: Vec<Lane> = targets
        .into_iter()
        .map(|target| Lane {
            target,
            latencies: Latencies::new(),
            errors: 0,
            first_error: None,
            measured: Duration::ZERO,
        })
        .collect();
    let length = Duration::from_secs_f64(args.duration / f64::from(args.rounds));
    for lane in &mut lanes {
        eprintln!("{}: warming up", lane.target.name);
        lane.round(&http, args.clients, Duration::from_secs(1), false)
            .await;
    }
    for round in 1..=args.rounds {
        for lane in &mut lanes {
            eprintln!(
                "round {round}/{}: {} for {length:?}",
                args.rounds, lane.target.name
            );
            lane.round(&http, args.clients, length, true).await;
        }
    }
    drop(keep);
    let targets: Vec<TargetSummary> = lanes
        .iter()
        .map(|lane| {
            let latency = lane.latencies.summary();
            let seconds = lane.measured.as_secs_f64();
            TargetSummary {
                target: lane.target.name,
                exchanges: latency.count,
                errors: lane.errors,
                seconds,
                exchanges_per_second: latency.count as f64 / seconds,
                latency,
                first_error: lane.first_error.clone(),
            }
        })
        .collect();
    let rate = |name: &str| {
        targets
            .iter()
            .find(|t| t.target == name)
            .map(|t| t.exchanges_per_second)
    };
    let sqlite_vs_authgent = match (rate("sqlite"), rate("authgent")) {
        (Some(ours), Some(peer)) if peer > 0.0 => Some(ours / peer),
        _ => None,
    };
    Ok(ExchangeReport {
        clients: args.clients,
        rounds: args.rounds,
        targets,
        sqlite_vs_authgent,
    })
}

impl ExchangeReport {
    pub(crate) fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nRFC 8693 token exchange — {} agents per target, closed loop, {} interleaved rounds",
            self.clients, self.rounds
        );
        let _ = writeln!(
            out,
            "{:<9} {:>10} {:>7} {:>12} {:>9} {:>9} {:>9}",
            "target", "exchanges", "errors", "exchanges/s", "p50 µs", "p99 µs", "max µs"
        );
        for t in &self.targets {
            let _ = writeln!(
                out,
                "{:<9} {:>10} {:>7} {:>12.1} {:>9} {:>9} {:>9}",
                t.target,
                t.exchanges,
                t.errors,
                t.exchanges_per_second,
                t.latency.p50_us,
                t.latency.p99_us,
                t.latency.max_us
            );
            if let Some(error) = &t.first_error {
                let _ = writeln!(out, "{}: first error: {error}", t.target);
            }
        }
        if let Some(ratio) = self.sqlite_vs_authgent {
            let _ = writeln!(
                out,
                "ours (SQLite) vs authgent: x{ratio:.1} exchanges per second"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn our_issuer_answers_every_exchange() {
        let args = ExchangeArgs {
            clients: 2,
            duration: 0.4,
            rounds: 2,
            postgres_url: None,
            authgent_url: None,
            no_sqlite: false,
        };
        args.validate().unwrap();
        let report = run(&args).await.unwrap();
        let sqlite = &report.targets[0];
        assert!(sqlite.exchanges > 0, "{sqlite:?}");
        assert_eq!(sqlite.errors, 0, "{:?}", sqlite.first_error);
        assert!(report.render().contains("sqlite"));
    }
}
