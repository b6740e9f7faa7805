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
        let report = verify(&db).await.unwrap();
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
            verify(&db).await.unwrap().first_break,
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
            verify(&db).await.unwrap().first_break,
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
            verify(&db).await.unwrap().first_break,
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
        let found = verify(&db).await.unwrap().first_break;
        assert!(
            matches!(found, Some(ChainBreak::Modified { seq: 2 })),
            "[{}] {found:?}",
            b.name
        );
    }
}
