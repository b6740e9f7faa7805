//! The issuer binary on PostgreSQL while PostgreSQL restarts under load: requests fail while
//! the database is down (a clean OAuth error, never a hang), and the issuer recovers by itself,
//! without a restart of its own, as soon as the database is back.
//!
//! A test binary of its own: it restarts the machine's PostgreSQL, which no other test may be
//! using meanwhile (cargo runs test binaries one after another). It runs when
//! `PORTCULLIS_TEST_POSTGRES_URL` is set and `pg_ctlcluster` can restart the cluster (as CI
//! does); otherwise it says so and passes.

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ADMIN: &str = "admin-token-for-the-restart-test";

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The cluster `pg_ctlcluster` knows: (version, name).
fn cluster() -> Option<(String, String)> {
    let output = Command::new("pg_lsclusters")
        .arg("--no-header")
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let mut fields = text.lines().next()?.split_whitespace();
    Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issuer_recovers_by_itself_when_postgresql_restarts_under_load() {
    let (Ok(base), Some((version, name))) =
        (std::env::var("PORTCULLIS_TEST_POSTGRES_URL"), cluster())
    else {
        eprintln!("skipped: needs PORTCULLIS_TEST_POSTGRES_URL and a local cluster to restart");
        return;
    };
    let schema = format!("t_restart_{}", std::process::id());
    let db = portcullis_issuer::db::Database::connect(&base)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(db.pool())
        .await
        .unwrap();
    drop(db);
    let sep = if base.contains('?') { '&' } else { '?' };
    let database_url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let dir = tempfile::TempDir::new().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let _issuer = Serving(
        Command::new(env!("CARGO_BIN_EXE_portcullis-issuer"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--issuer-url", &url, "--database-url", &database_url])
            .env_clear()
            .env("PORTCULLIS_ADMIN_TOKEN", ADMIN)
            .env(
                "PORTCULLIS_KEY_ENCRYPTION_SECRET",
                "a-test-key-encryption-secret-of-enough-length",
            )
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::builder()
        // Longer than the issuer's wait for a database connection (5 s): an answer is expected.
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{url}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "the issuer never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client: Value = http
        .post(format!("{url}/admin/clients"))
        .bearer_auth(ADMIN)
        .json(&json!({"client_id": "agent", "name": "Agent"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = client["client_secret"].as_str().unwrap().to_owned();

    // Load: token requests in a loop, each outcome with its time.
    let outcomes: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let load = {
        let (http, url, outcomes, stop) =
            (http.clone(), url.clone(), outcomes.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let response = http
                    .post(format!("{url}/token"))
                    .basic_auth("agent", Some(&secret))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await;
                // 0: no answer at all (the request timed out or the connection failed).
                let status = response.map_or(0, |r| r.status().as_u16());
                outcomes.lock().unwrap().push((Instant::now(), status));
                tokio::select! {
                    () = stop.notified() => return,
                    () = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restart = Instant::now();
    let restarted = tokio::task::spawn_blocking(move || {
        Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &version, &name, "restart"])
            .status()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(restarted.success(), "pg_ctlcluster restart failed");
    let back = Instant::now();
    // Recovered: a token request succeeds again, within ten seconds of the database's return.
    let recovered = loop {
        let last_ok = outcomes
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(at, status)| *at > back && *status == 200)
            .map(|(at, _)| *at);
        if let Some(at) = last_ok {
            break at;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "no token request succeeded in the 10 s after PostgreSQL came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.notify_one();
    load.await.unwrap();
    let outcomes = outcomes.lock().unwrap().clone();
    let failed: Vec<u16> = outcomes
        .iter()
        .filter(|(at, status)| *at >= restart && *status != 200)
        .map(|(_, status)| *status)
        .collect();
    println!(
        "PostgreSQL restart took {:?}; {} requests during it failed (statuses {:?}); recovered \
         {:?} after the database was back",
        back - restart,
        failed.len(),
        failed.iter().collect::<std::collections::BTreeSet<_>>(),
        recovered - back
    );
    assert!(
        failed.iter().all(|status| *status >= 500),
        "a failure while the database was down must be the server's (5xx): {failed:?}"
    );
    // And the rest of the issuer works too: a revocation is durable again.
    let revoked = http
        .post(format!("{url}/admin/revocations"))
        .bearer_auth(ADMIN)
        .json(&json!({"kind": "token", "value": "after-the-restart"}))
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
}
