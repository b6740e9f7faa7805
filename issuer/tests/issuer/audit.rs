//! The audit chain: every change recorded, and `audit verify` finding each kind of tampering.

use axum::http::StatusCode;
use portcullis_issuer::audit::{ChainBreak, verify};

use crate::support::*;

async fn populated(b: &Backend) -> portcullis_issuer::db::Database {
    let w = world(b).await;
    delegation(&w).await;
    let (status, _) = revoke(&w.app, "grant", &w.grant_id).await;
    assert_eq!(status, StatusCode::CREATED);
    portcullis_issuer::open_database(&b.storage).await.unwrap()
}

async fn execute(db: &portcullis_issuer::db::Database, sql: &'static str) {
    sqlx::query(sql).execute(db.pool()).await.unwrap();
}

#[tokio::test]
async fn every_change_is_in_an_unbroken_chain() {
    for b in backends().await {
        let db = populated(&b).await;
        let report = verify(&db, &b.storage.key_encryption().unwrap().anchor_key())
            .await
            .unwrap();
        assert_eq!(report.events, 6, "[{}]", b.name);
        assert_eq!(report.first_break, None);
        let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM audit_events ORDER BY seq")
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert_eq!(
            kinds,
            [
                "client.registered",
                "grant.created",
                "token.minted", // alice's subject token
                "token.minted", // the agent's client token
                "token.exchanged",
                "revocation"
            ]
        );
    }
}

#[tokio::test]
async fn a_modified_event_is_found() {
    for b in backends().await {
        let db = populated(&b).await;
        execute(&db, r#"UPDATE audit_events SET data = '{"client_id":"someone-else","name":"x"}' WHERE seq = 1"#).await;
        assert_eq!(
            verify(&db, &b.storage.key_encryption().unwrap().anchor_key())
                .await
                .unwrap()
                .first_break,
            Some(ChainBreak::Modified { seq: 1 }),
            "[{}]",
            b.name
        );
    }
}

#[tokio::test]
async fn a_deleted_event_is_found() {
    for b in backends().await {
        let db = populated(&b).await;
        execute(&db, "DELETE FROM audit_events WHERE seq = 2").await;
        assert_eq!(
            verify(&db, &b.storage.key_encryption().unwrap().anchor_key())
                .await
                .unwrap()
                .first_break,
            Some(ChainBreak::Deleted {
                expected: 2,
                found: 3
            }),
            "[{}]",
            b.name
        );
    }
}

#[tokio::test]
async fn reordered_events_are_found() {
    for b in backends().await {
        let db = populated(&b).await;
        execute(&db, "UPDATE audit_events SET seq = 100 WHERE seq = 2").await;
        execute(&db, "UPDATE audit_events SET seq = 2 WHERE seq = 3").await;
        execute(&db, "UPDATE audit_events SET seq = 3 WHERE seq = 100").await;
        assert_eq!(
            verify(&db, &b.storage.key_encryption().unwrap().anchor_key())
                .await
                .unwrap()
                .first_break,
            Some(ChainBreak::Reordered { seq: 2 }),
            "[{}]",
            b.name
        );
    }
}

#[tokio::test]
async fn a_rewritten_chain_tail_is_found_by_its_link_to_the_untouched_part() {
    for b in backends().await {
        let db = populated(&b).await;
        // Recomputing one row's hash after editing it does not help: the next row's prev_hash
        // still names the original.
        execute(&db, "UPDATE audit_events SET hash = 'f00d' WHERE seq = 2").await;
        let found = verify(&db, &b.storage.key_encryption().unwrap().anchor_key())
            .await
            .unwrap()
            .first_break;
        assert!(
            matches!(found, Some(ChainBreak::Modified { seq: 2 })),
            "[{}] {found:?}",
            b.name
        );
    }
}

#[tokio::test]
async fn gateway_decisions_join_the_chain_exactly_once() {
    use axum::body::Body;
    use axum::http::{Request, header};
    use serde_json::{Value, json};

    const INGEST: &str = "ingest-token-for-tests-only";
    for b in backends().await {
        let mut config = portcullis_issuer::IssuerConfig::new(ISSUER);
        config.audit_ingest_token = Some(INGEST.into());
        let issuer = portcullis_issuer::Issuer::open(config, &b.storage)
            .await
            .unwrap();
        let app = portcullis_issuer::app(issuer.state().clone());
        let ship = |token: &'static str, seqs: Vec<i64>| {
            let app = app.clone();
            let events: Vec<Value> = seqs
                .iter()
                .map(|seq| json!({"seq": seq, "at": 1_700_000_000 + seq, "decision": if seq % 2 == 0 {"deny"} else {"allow"},
                                  "sub": "alice", "act": ["expense-agent"], "upstream": "expenses",
                                  "method": "tools/call", "target": "submit_expense",
                                  "arguments_digest": "9f86d081884c7d65", "rule": "limit_exceeded"}))
                .collect();
            async move {
                send(
                    &app,
                    Request::post("/audit/decisions")
                        .header(header::AUTHORIZATION, format!("Bearer {token}"))
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Body::from(
                            json!({"gateway": "gw-0", "events": events}).to_string(),
                        ))
                        .unwrap(),
                )
                .await
            }
        };
        let (status, ack) = ship(INGEST, vec![1, 2, 3]).await;
        assert_eq!(status, StatusCode::OK, "[{}] {ack}", b.name);
        assert_eq!(
            (ack["accepted_through"].as_i64(), ack["appended"].as_i64()),
            (Some(3), Some(3))
        );
        // The answer was lost and the gateway retries, with more events: only the new ones land.
        let (_, ack) = ship(INGEST, vec![2, 3, 4, 5]).await;
        assert_eq!(
            (ack["accepted_through"].as_i64(), ack["appended"].as_i64()),
            (Some(5), Some(2)),
            "[{}]",
            b.name
        );
        let (_, ack) = ship(INGEST, vec![1, 2]).await;
        assert_eq!(ack["appended"], 0);

        let (status, _) = ship("not-the-ingest-token", vec![6]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = ship(INGEST, vec![7, 6]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

        let db = issuer.state().db.clone();
        let report = verify(&db, &b.storage.key_encryption().unwrap().anchor_key())
            .await
            .unwrap();
        assert_eq!(report.first_break, None);
        let decisions: Vec<String> = sqlx::query_scalar(
            "SELECT data FROM audit_events WHERE kind = 'gateway.decision' ORDER BY seq",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        let seqs: Vec<i64> = decisions
            .iter()
            .map(|d| {
                serde_json::from_str::<Value>(d).unwrap()["seq"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            seqs,
            [1, 2, 3, 4, 5],
            "[{}] each event once, in order",
            b.name
        );

        // Without an ingest token configured, the endpoint does not exist.
        let closed = open(&b).await;
        let (status, _) = send(
            &closed,
            Request::post("/audit/decisions")
                .header(header::AUTHORIZATION, format!("Bearer {INGEST}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({"gateway": "gw-0", "events": []}).to_string(),
                ))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
