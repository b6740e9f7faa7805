//! `maintenance prune`, on every backend: what has expired goes, what is in force stays, the
//! newest revocation stays for gateways resuming after it, and with audit pruning the chain
//! still verifies from its anchor, which no one without the key-encryption secret can move.

use portcullis_issuer::audit::{ChainBreak, verify};
use portcullis_issuer::db::Database;
use portcullis_issuer::maintenance::{PruneOptions, prune};
use serde_json::json;

use crate::support::*;

async fn count(db: &Database, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db.pool()).await.unwrap()
}

async fn execute(db: &Database, sql: &'static str) {
    sqlx::query(sql).execute(db.pool()).await.unwrap();
}

/// A world with a delegation and two revocations, and expired rows of every kind beside
/// rows still in force.
async fn aged(b: &Backend) -> Database {
    let w = world(b).await;
    delegation(&w).await;
    revoke(&w.app, "user", "mallory").await;
    revoke(&w.app, "grant", &w.grant_id).await;
    let db = portcullis_issuer::open_database(&b.storage).await.unwrap();
    // Both revocations lapsed long ago; only the older may go.
    execute(&db, "UPDATE revocations SET expires_at = 1").await;
    for sql in [
        "INSERT INTO client_assertions (jti_hash, expires_at) VALUES ('old', 1), ('live', 9999999999)",
        "INSERT INTO grant_mints (grant_id, at) VALUES ('g', 1), ('g', 9999999999)",
        "INSERT INTO sign_in_sessions (id_hash, username, created_at, last_seen_at)
         VALUES ('idle', 'alice', 9999990000, 1), ('live', 'alice', 9999999999, 9999999999)",
        "INSERT INTO authorization_codes (code_hash, grant_id, client_id, redirect_uri,
           code_challenge, resource, expires_at) VALUES ('old', 'g', 'c', 'r', 'x', 'res', 1)",
        "INSERT INTO approvals (id, grant_id, token_id, subject, actors, upstream, tool,
           arguments, digest, valid_for, status, created_at, expires_at)
         VALUES ('spent', 'g', 't', 'alice', '[]', 'u', 'u/t', '{}', 'd', 300, 'spent', 1, 1),
                ('open', 'g', 't', 'alice', '[]', 'u', 'u/t', '{}', 'd', 300, 'pending', 1, 9999999999)",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(db.pool()).await.unwrap();
    }
    db
}

#[tokio::test]
async fn prune_removes_what_expired_and_keeps_what_is_in_force() {
    for b in backends().await {
        let name = b.name;
        let db = aged(&b).await;
        let sealing = b.storage.key_encryption().unwrap().anchor_key();
        let now = portcullis_issuer::now();

        let dry = prune(
            &db,
            &sealing,
            PruneOptions {
                dry_run: true,
                audit_before: None,
            },
            now,
        )
        .await
        .unwrap();
        let would: i64 = dry.removed.iter().map(|(_, n)| *n as i64).sum();
        assert_eq!(would, 6, "[{name}] {:?}", dry.removed);
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM client_assertions").await,
            2,
            "dry run"
        );

        let report = prune(&db, &sealing, PruneOptions::default(), now)
            .await
            .unwrap();
        assert_eq!(
            json!(report.removed),
            json!(dry.removed),
            "[{name}] as the dry run said"
        );
        for (sql, left) in [
            ("SELECT COUNT(*) FROM client_assertions", 1),
            ("SELECT COUNT(*) FROM grant_mints WHERE grant_id = 'g'", 1),
            ("SELECT COUNT(*) FROM sign_in_sessions", 1),
            ("SELECT COUNT(*) FROM authorization_codes", 0),
            ("SELECT COUNT(*) FROM approvals", 1),
            // The newest stays: gateways resume the stream after its number.
            ("SELECT COUNT(*) FROM revocations", 1),
        ] {
            assert_eq!(count(&db, sql).await, left, "[{name}] {sql}");
        }
        let newest = count(&db, "SELECT seq FROM revocations").await;
        assert_eq!(newest, 2, "[{name}]");
        let report = verify(&db, &sealing).await.unwrap();
        assert_eq!(
            (report.starts_at, report.first_break),
            (1, None),
            "[{name}]"
        );
        let pruned = count(
            &db,
            "SELECT COUNT(*) FROM audit_events WHERE kind = 'maintenance.pruned'",
        );
        assert_eq!(pruned.await, 1, "[{name}] the pruning is itself audited");
    }
}

#[tokio::test]
async fn pruned_audit_events_leave_an_anchored_chain_that_still_verifies() {
    for b in backends().await {
        let name = b.name;
        let db = aged(&b).await;
        let sealing = b.storage.key_encryption().unwrap().anchor_key();
        let before = verify(&db, &sealing).await.unwrap();
        // The first four events are made a day old (their hashes no longer hold, which
        // matters only until they are pruned: the anchor then stands in for them).
        execute(
            &db,
            "UPDATE audit_events SET at = at - 86400 WHERE seq <= 4",
        )
        .await;
        let now = portcullis_issuer::now();
        let options = PruneOptions {
            dry_run: false,
            audit_before: Some(now - 3600),
        };
        let report = prune(&db, &sealing, options, now).await.unwrap();
        assert_eq!(report.audit_starts_at, Some(5), "[{name}]");
        assert_eq!(count(&db, "SELECT MIN(seq) FROM audit_events").await, 5);
        let after = verify(&db, &sealing).await.unwrap();
        assert_eq!(
            (after.starts_at, after.first_break.clone()),
            (5, None),
            "[{name}] {after:?}"
        );
        assert_eq!(
            after.events,
            before.events - 4 + 1,
            "[{name}] the rest, and the pruning"
        );

        // Moving the anchor (to hide more deletions) without the secret is found.
        execute(&db, "DELETE FROM audit_events WHERE seq = 5").await;
        execute(&db, "UPDATE audit_anchor SET seq = 6, prev_hash = (SELECT prev_hash FROM audit_events WHERE seq = 6)").await;
        assert_eq!(
            verify(&db, &sealing).await.unwrap().first_break,
            Some(ChainBreak::ForgedAnchor { seq: 6 }),
            "[{name}]"
        );
    }
}
