//! The issuer binary killed with SIGKILL while it answers revocations and token requests:
//! after a restart every revocation it acknowledged is in its database and in the signed feed
//! gateways read, the audit chain verifies, and nothing is half-written.

use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_policy::revocation::{RevocationKind, target_hash, verify_feed};
use portcullis_policy::{JwkSet, KeySet, Verifier};
use serde_json::{Value, json};

use crate::support::*;

/// `portcullis-issuer serve` on `backend`'s storage, at a free loopback port.
struct Serving {
    child: Child,
    url: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(backend: &Backend, port: u16) -> Serving {
    let url = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis-issuer"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&backend.storage.data_dir)
        .args(["--issuer-url", &url])
        .env_clear()
        .env("PORTCULLIS_ADMIN_TOKEN", ADMIN)
        .stderr(std::process::Stdio::null());
    if let Some(db) = &backend.storage.database_url {
        command.arg("--database-url").arg(db);
    }
    if let Some(secret) = &backend.storage.key_encryption_secret {
        command.env("PORTCULLIS_KEY_ENCRYPTION_SECRET", secret);
    }
    let child = command.spawn().unwrap();
    let serving = Serving { child, url };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http.get(format!("{}/readyz", serving.url)).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return serving;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] the issuer never became ready",
            backend.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_killed_under_load_keeps_every_revocation_it_acknowledged() {
    for b in backends().await {
        let port = free_port();
        let mut issuer = serve(&b, port).await;
        let http = reqwest::Client::new();
        let client: Value = http
            .post(format!("{}/admin/clients", issuer.url))
            .bearer_auth(ADMIN)
            .json(&json!({"client_id": "agent", "name": "Agent"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let secret = client["client_secret"].as_str().unwrap().to_owned();

        // Load: revocations of tokens by id, and token requests (each signed and audited),
        // from four tasks each, until the process dies under them.
        let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
        let mut load = Vec::new();
        for worker in 0..4 {
            let (revoker, url, acknowledged) =
                (http.clone(), issuer.url.clone(), acknowledged.clone());
            load.push(tokio::spawn(async move {
                for i in 0.. {
                    let jti = format!("jti-{worker}-{i}");
                    let response = revoker
                        .post(format!("{url}/admin/revocations"))
                        .bearer_auth(ADMIN)
                        .json(&json!({"kind": "token", "value": jti}))
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status().is_success() => {
                            acknowledged.lock().unwrap().insert(jti);
                        }
                        _ => return,
                    }
                }
            }));
            let (requester, url, secret) = (http.clone(), issuer.url.clone(), secret.clone());
            load.push(tokio::spawn(async move {
                loop {
                    let response = requester
                        .post(format!("{url}/token"))
                        .basic_auth("agent", Some(&secret))
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .await;
                    if !response.is_ok_and(|r| r.status().is_success()) {
                        return;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        issuer.child.kill().unwrap();
        issuer.child.wait().unwrap();
        for task in load {
            task.await.unwrap();
        }
        let acknowledged = acknowledged.lock().unwrap().clone();
        assert!(
            acknowledged.len() > 10,
            "[{}] too little load to mean anything: {}",
            b.name,
            acknowledged.len()
        );

        // Restarted on the same storage: every acknowledged revocation is in the signed feed.
        let issuer = serve(&b, port).await;
        let jwks: JwkSet = http
            .get(format!("{}/.well-known/jwks.json", issuer.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let verifier = Verifier::new(issuer.url.clone(), KeySet::from_jwks(&jwks).unwrap());
        let feed = http
            .get(format!("{}/.well-known/revoked", issuer.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let feed = verify_feed(feed.trim(), &verifier, portcullis_issuer::now(), 300).unwrap();
        let in_feed: BTreeSet<String> = feed.entries.iter().map(|e| e.target.clone()).collect();
        for jti in &acknowledged {
            assert!(
                in_feed.contains(&target_hash(RevocationKind::Token, jti)),
                "[{}] revocation of {jti} was acknowledged, then lost",
                b.name
            );
        }
        let seqs: Vec<i64> = feed.entries.iter().map(|e| e.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "[{}] {seqs:?}",
            b.name
        );

        // The audit chain is whole, and SQLite's file is sound.
        drop(issuer);
        let db = portcullis_issuer::open_database(&b.storage).await.unwrap();
        assert_eq!(
            portcullis_issuer::audit::verify(
                &db,
                &b.storage.key_encryption().unwrap().anchor_key()
            )
            .await
            .unwrap()
            .first_break,
            None,
            "[{}]",
            b.name
        );
        if b.storage.database_url.is_none() {
            let check: String = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_one(db.pool())
                .await
                .unwrap();
            assert_eq!(check, "ok");
        }
    }
}
