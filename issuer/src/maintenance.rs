//! Retention: `maintenance prune` removes what has expired, so the database holds what is in
//! force, and (opt-in) audit events older than a bound.
//!
//! What goes, and why it is safe to let it go:
//!
//! | what | when |
//! |---|---|
//! | pending authorization requests, authorization codes, refresh tokens | past their expiry (a replayed code or refresh token is refused as unknown instead of revoking its grant, but it is expired by then anyway) |
//! | spent client-assertion and DPoP `jti`s | past their expiry, when a replay is refused for its age |
//! | mints counted for a grant's hourly rate | older than an hour |
//! | revocations | past the expiry of every token they cover; the newest is always kept, because gateways resume the stream after its number |
//! | sign-in sessions | idle or past their absolute lifetime |
//! | failed sign-in counts | once their window has passed |
//! | approval requests | answered, spent, expired or voided, and older than [`APPROVAL_RETENTION`] |
//! | audit events (with `--audit-older-than-days`) | older than the bound; the newest is always kept, and the first kept one is anchored ([`crate::audit::verify`] starts there) |
//!
//! Everything is removed in one transaction, with an audit event that says what went; with
//! `dry_run` nothing is, and the counts say what would.

use serde::Serialize;
use serde_json::json;
use sqlx::Row;

use crate::audit::{self, AnchorKey};
use crate::db::Database;
use crate::sign_in::{ABSOLUTE_TIMEOUT, IDLE_TIMEOUT};

/// How long answered approval requests stay, for the people and operators who look back.
pub const APPROVAL_RETENTION: i64 = 30 * 86_400;

/// One kind of row that expires: its name, and the SQL that counts and deletes it (`$1` = now).
struct Rule {
    what: &'static str,
    count: &'static str,
    delete: &'static str,
}

macro_rules! rule {
    ($what:literal, $table:literal, $expired:literal) => {
        Rule {
            what: $what,
            count: concat!("SELECT COUNT(*) FROM ", $table, " WHERE ", $expired),
            delete: concat!("DELETE FROM ", $table, " WHERE ", $expired),
        }
    };
}

const RULES: &[Rule] = &[
    rule!(
        "authorization requests",
        "authorization_requests",
        "expires_at < $1"
    ),
    rule!(
        "authorization codes",
        "authorization_codes",
        "expires_at < $1"
    ),
    rule!("refresh tokens", "refresh_tokens", "expires_at < $1"),
    rule!("spent one-time ids", "client_assertions", "expires_at < $1"),
    rule!("rate-cap mints", "grant_mints", "at < $1 - 3600"),
    rule!(
        "revocations",
        "revocations",
        "expires_at < $1 AND seq < (SELECT MAX(seq) FROM revocations)"
    ),
    rule!(
        "sign-in sessions",
        "sign_in_sessions",
        "last_seen_at <= $1 - 1800 OR created_at <= $1 - 43200"
    ),
    rule!(
        "sign-in failure counts",
        "sign_in_failures",
        "window_start <= $1 - 900"
    ),
    rule!(
        "approval requests",
        "approvals",
        "status NOT IN ('pending', 'approved') AND created_at < $1 - 2592000"
    ),
];

// The rules spell the timeouts out (static SQL); these keep them in step.
const _: () = assert!(IDLE_TIMEOUT == 1800 && ABSOLUTE_TIMEOUT == 43_200);
const _: () = assert!(APPROVAL_RETENTION == 2_592_000);
const _: () = assert!(crate::throttle::WINDOW == 900);

/// What to prune.
#[derive(Debug, Clone, Copy, Default)]
pub struct PruneOptions {
    /// Count, remove nothing.
    pub dry_run: bool,
    /// Also remove audit events older than this (Unix seconds), anchoring the first kept one.
    pub audit_before: Option<i64>,
}

/// What was (or, in a dry run, would be) removed.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// Rows per kind.
    pub removed: Vec<(&'static str, u64)>,
    /// The event the audit chain now starts at, when old events were pruned.
    pub audit_starts_at: Option<i64>,
    /// Nothing was removed.
    pub dry_run: bool,
}

/// Prunes `db` as `options` say.
pub async fn prune(
    db: &Database,
    anchor_key: &AnchorKey,
    options: PruneOptions,
    now: i64,
) -> Result<PruneReport, sqlx::Error> {
    if options.dry_run {
        let mut removed = Vec::new();
        for rule in RULES {
            let count: i64 = sqlx::query_scalar(rule.count)
                .bind(now)
                .fetch_one(db.pool())
                .await?;
            removed.push((rule.what, count.unsigned_abs()));
        }
        if let Some(before) = options.audit_before {
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM audit_events
                 WHERE at < $1 AND seq < (SELECT MAX(seq) FROM audit_events)",
            )
            .bind(before)
            .fetch_one(db.pool())
            .await?;
            removed.push(("audit events", count.unsigned_abs()));
        }
        return Ok(PruneReport {
            removed,
            audit_starts_at: None,
            dry_run: true,
        });
    }
    db.write(|tx| {
        // Each attempt owns its copy: the future may only borrow the transaction.
        let anchor_key = anchor_key.clone();
        Box::pin(async move {
            let mut removed = Vec::new();
            for rule in RULES {
                let done = sqlx::query(rule.delete).bind(now).execute(&mut **tx).await?;
                removed.push((rule.what, done.rows_affected()));
            }
            let mut audit_starts_at = None;
            if let Some(before) = options.audit_before {
                let first_kept = sqlx::query(
                    "SELECT seq, prev_hash FROM audit_events
                     WHERE at >= $1 OR seq = (SELECT MAX(seq) FROM audit_events)
                     ORDER BY seq LIMIT 1",
                )
                .bind(before)
                .fetch_optional(&mut **tx)
                .await?;
                if let Some(row) = first_kept {
                    let seq: i64 = row.try_get("seq")?;
                    let done = sqlx::query("DELETE FROM audit_events WHERE seq < $1")
                        .bind(seq)
                        .execute(&mut **tx)
                        .await?;
                    if done.rows_affected() > 0 {
                        let prev_hash: String = row.try_get("prev_hash")?;
                        audit::anchor(tx, &anchor_key, seq, &prev_hash, now).await?;
                        audit_starts_at = Some(seq);
                    }
                    removed.push(("audit events", done.rows_affected()));
                }
            }
            let data = json!({
                "removed": removed.iter().map(|(what, n)| json!({"what": what, "rows": n})).collect::<Vec<_>>(),
                "audit_starts_at": audit_starts_at,
            });
            audit::append(tx, "maintenance.pruned", data, now).await?;
            Ok(PruneReport {
                removed,
                audit_starts_at,
                dry_run: false,
            })
        })
    })
    .await
}
