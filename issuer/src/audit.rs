//! The audit log: a hash chain of everything that changes who may do what.
//!
//! Each event's hash is `SHA-256(prev_hash ‖ canonical JSON of {seq, at, kind, data})`, so
//! changing, deleting or reordering any row breaks every hash after it, and `audit verify`
//! names the first row where the chain no longer holds. Events are appended inside the
//! transaction of the change they record: a grant, an exchange or a revocation is never
//! committed without its event, nor an event without its change. The chain is shared by every
//! process on the database (sequence numbers are taken under the primary key, see the
//! migration), so it stays continuous across restarts and replicas.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{Any, Row, Transaction};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};

use crate::db::Database;

/// Agent chains (from the grant's own agent to the one that acted), each with when a token was
/// last exchanged for it, most recent first.
pub type Delegations = Vec<(Vec<String>, i64)>;

/// The agent chains tokens of `grant_id` were exchanged for, each from the grant's own agent
/// to the one that acted (the reverse of `act`'s order), with when it last was, most recent
/// first: who acts under the grant, and through whom.
pub async fn delegations_of(db: &Database, grant_id: &str) -> Result<Delegations, sqlx::Error> {
    // A prefilter on the canonical JSON; each row is then read and matched exactly.
    let pattern = format!(
        "%{}%",
        json!({"grant_id": grant_id})
            .to_string()
            .trim_matches(['{', '}'])
    );
    let rows = sqlx::query(
        "SELECT at, data FROM audit_events WHERE kind = 'token.exchanged' AND data LIKE $1
         ORDER BY seq DESC LIMIT 1000",
    )
    .bind(pattern)
    .fetch_all(db.pool())
    .await?;
    let mut by_grant = fold_delegations(&rows, |gid| gid == grant_id)?;
    Ok(by_grant.remove(grant_id).unwrap_or_default())
}

/// [`delegations_of`] for every grant in `grant_ids` at once, from the most recent
/// `token.exchanged` events (one read, however many grants).
pub async fn delegations_of_each(
    db: &Database,
    grant_ids: &std::collections::HashSet<&str>,
) -> Result<HashMap<String, Delegations>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT at, data FROM audit_events WHERE kind = 'token.exchanged'
         ORDER BY seq DESC LIMIT 20000",
    )
    .fetch_all(db.pool())
    .await?;
    fold_delegations(&rows, |gid| grant_ids.contains(gid))
}

/// The distinct agent chains of `token.exchanged` rows (newest first), by grant, for the
/// grants `wanted` keeps.
fn fold_delegations(
    rows: &[sqlx::any::AnyRow],
    wanted: impl Fn(&str) -> bool,
) -> Result<HashMap<String, Delegations>, sqlx::Error> {
    let mut by_grant: HashMap<String, Delegations> = HashMap::new();
    for row in rows {
        let Ok(data) = serde_json::from_str::<Value>(row.try_get("data")?) else {
            continue;
        };
        let Some(gid) = data["grant_id"].as_str().filter(|gid| wanted(gid)) else {
            continue;
        };
        let chain = chain_of(&data["act"]);
        let chains = by_grant.entry(gid.to_owned()).or_default();
        if !chains.iter().any(|(known, _)| *known == chain) {
            chains.push((chain, row.try_get("at")?));
        }
    }
    Ok(by_grant)
}

/// An event's `act` (current actor first, as in the token) as a chain from the grant's own
/// agent to the one that acted.
pub(crate) fn chain_of(act: &Value) -> Vec<String> {
    act.as_array()
        .into_iter()
        .flatten()
        .rev()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

/// One event of the chain, as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Event {
    /// Position in the chain.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// What happened: `grant.created`, `token.exchanged`, `revocation`, `gateway.decision`, …
    pub kind: String,
    /// The event's details.
    pub data: Value,
    /// Its chain hash.
    pub hash: String,
}

/// Which events to find: all given filters must hold.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// This kind exactly.
    pub kind: Option<String>,
    /// About this user (`sub`, `subject`, `user` or `username`).
    pub user: Option<String>,
    /// About this agent (in `act`, or `client_id`).
    pub agent: Option<String>,
    /// About this grant (`gid`, `grant_id` or `grant`).
    pub grant: Option<String>,
    /// At or after, Unix seconds.
    pub since: Option<i64>,
    /// Before, Unix seconds.
    pub until: Option<i64>,
}

impl EventFilter {
    fn matches(&self, kind: &str, at: i64, data: &Value) -> bool {
        let is = |field: &str, wanted: &str| data[field].as_str() == Some(wanted);
        // A revocation names what it revokes by kind and value.
        let revokes = |what: &str, wanted: &str| {
            kind == "revocation"
                && is("kind", what)
                && (is("value", wanted)
                    || (what == "branch"
                        && data["value"]
                            .as_str()
                            .is_some_and(|v| v.split_once('/').is_some_and(|(g, _)| g == wanted))))
        };
        self.kind.as_deref().is_none_or(|k| k == kind)
            && self.since.is_none_or(|t| at >= t)
            && self.until.is_none_or(|t| at < t)
            && self.user.as_deref().is_none_or(|u| {
                ["sub", "subject", "user", "username"]
                    .iter()
                    .any(|f| is(f, u))
                    || revokes("user", u)
            })
            && self.agent.as_deref().is_none_or(|a| {
                is("client_id", a)
                    || revokes("agent", a)
                    || data["act"]
                        .as_array()
                        .is_some_and(|act| act.iter().any(|x| x.as_str() == Some(a)))
            })
            && self.grant.as_deref().is_none_or(|g| {
                ["gid", "grant_id", "grant"].iter().any(|f| is(f, g))
                    || revokes("grant", g)
                    || revokes("branch", g)
            })
    }
}

/// Most rows one query reads looking for matches; the caller pages on from where it stopped.
const SCAN_LIMIT: i64 = 20_000;

/// Up to `limit` events matching `filter`, newest first, before sequence number `before`; and
/// where to continue (`None` at the chain's start). One call reads at most [`SCAN_LIMIT`] rows,
/// so a rare match may need several pages, some of them empty.
pub async fn query(
    db: &Database,
    filter: &EventFilter,
    before: Option<i64>,
    limit: usize,
) -> Result<(Vec<Event>, Option<i64>), sqlx::Error> {
    let mut before = before.unwrap_or(i64::MAX);
    let mut found = Vec::new();
    let mut scanned = 0;
    while scanned < SCAN_LIMIT {
        let rows = sqlx::query(
            "SELECT seq, at, kind, data, hash FROM audit_events
             WHERE seq < $1 AND ($2 = '' OR kind = $2) ORDER BY seq DESC LIMIT 1000",
        )
        .bind(before)
        .bind(filter.kind.clone().unwrap_or_default())
        .fetch_all(db.pool())
        .await?;
        if rows.is_empty() {
            return Ok((found, None));
        }
        for row in rows {
            scanned += 1;
            let seq: i64 = row.try_get("seq")?;
            before = seq;
            let (at, kind): (i64, String) = (row.try_get("at")?, row.try_get("kind")?);
            let data = serde_json::from_str(row.try_get("data")?).unwrap_or(Value::Null);
            if filter.matches(&kind, at, &data) {
                found.push(Event {
                    seq,
                    at,
                    kind,
                    data,
                    hash: row.try_get("hash")?,
                });
                if found.len() == limit {
                    return Ok((found, Some(seq)));
                }
            }
        }
    }
    Ok((found, Some(before)))
}

/// The `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn chain_hash(prev_hash: &str, seq: i64, at: i64, kind: &str, data: &Value) -> String {
    // serde_json's maps are ordered by key, so this is a canonical form.
    let body = json!({"seq": seq, "at": at, "kind": kind, "data": data}).to_string();
    Sha256::new()
        .chain_update(prev_hash.as_bytes())
        .chain_update(body.as_bytes())
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Appends an event in `tx`. A concurrent writer's event that took the same sequence number
/// makes the insert fail with a unique violation; the caller's transaction is then retried
/// (see [`crate::db::Database::retry_on_conflict`]).
pub async fn append(
    tx: &mut Transaction<'static, Any>,
    kind: &str,
    data: Value,
    at: i64,
) -> Result<i64, sqlx::Error> {
    let last = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await?;
    let (seq, prev_hash) = match last {
        Some(row) => (
            row.try_get::<i64, _>("seq")? + 1,
            row.try_get::<String, _>("hash")?,
        ),
        None => (1, GENESIS.to_owned()),
    };
    let hash = chain_hash(&prev_hash, seq, at, kind, &data);
    sqlx::query(
        "INSERT INTO audit_events (seq, at, kind, data, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(seq)
    .bind(at)
    .bind(kind)
    .bind(data.to_string())
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut **tx)
    .await?;
    Ok(seq)
}

/// Events from the hot path (exchanges, mints) are written by one task in batches: under load
/// many requests share one transaction and one disk sync, and each request still waits until
/// its event is committed before it answers (a token is never handed out unaudited).
#[derive(Debug, Clone)]
pub struct AuditLog {
    sender: mpsc::Sender<Pending>,
}

#[derive(Debug)]
struct Pending {
    kind: &'static str,
    data: Value,
    at: i64,
    done: oneshot::Sender<Result<(), String>>,
}

/// The most events committed in one transaction.
const MAX_BATCH: usize = 256;

/// Why an event could not be recorded.
#[derive(Debug, thiserror::Error)]
#[error("audit log: {0}")]
pub struct AuditError(String);

impl AuditLog {
    /// Starts the writer task.
    pub fn start(db: Database) -> Self {
        let (sender, mut receiver) = mpsc::channel::<Pending>(4 * MAX_BATCH);
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let events: Vec<(&'static str, Value, i64)> = batch
                    .iter()
                    .map(|p| (p.kind, p.data.clone(), p.at))
                    .collect();
                let written = db
                    .write(|tx| {
                        let events = events.clone();
                        Box::pin(async move {
                            for (kind, data, at) in events {
                                append(tx, kind, data, at).await?;
                            }
                            Ok(())
                        })
                    })
                    .await
                    .map_err(|e| e.to_string());
                for pending in batch {
                    // A request that gave up waiting needs no answer.
                    let _gone = pending.done.send(written.clone());
                }
            }
        });
        Self { sender }
    }

    /// Records an event and waits until it is committed.
    pub async fn record(&self, kind: &'static str, data: Value, at: i64) -> Result<(), AuditError> {
        let (done, committed) = oneshot::channel();
        self.sender
            .send(Pending {
                kind,
                data,
                at,
                done,
            })
            .await
            .map_err(|_| AuditError("the writer has stopped".into()))?;
        committed
            .await
            .map_err(|_| AuditError("the writer has stopped".into()))?
            .map_err(AuditError)
    }
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ChainBreak {
    /// A row's content no longer matches its hash.
    #[error("event {seq} was modified: its hash does not match its content")]
    Modified {
        /// The row.
        seq: i64,
    },
    /// Sequence numbers skip: rows were deleted.
    #[error("events {expected} to {} are missing (deleted)", found - 1)]
    Deleted {
        /// The first missing sequence number.
        expected: i64,
        /// The next one present.
        found: i64,
    },
    /// A row's `prev_hash` is not the hash of the row before it.
    #[error("event {seq} does not follow event {}: rows were reordered or replaced", seq - 1)]
    Reordered {
        /// The row.
        seq: i64,
    },
    /// A row's data is not JSON.
    #[error("event {seq} holds data that is not JSON")]
    Unreadable {
        /// The row.
        seq: i64,
    },
    /// The anchor of a pruned chain is not the issuer's own: its MAC does not hold under the
    /// key-encryption secret.
    #[error("the anchor at event {seq} was not written by this issuer (its MAC does not match)")]
    ForgedAnchor {
        /// Where it says the chain starts.
        seq: i64,
    },
}

/// The result of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// The first event of the chain: 1, or after pruning the anchored one.
    pub starts_at: i64,
    /// Events checked.
    pub events: i64,
    /// The hash of the last event (the chain's head), to record elsewhere.
    pub head: String,
    /// The first break, if any.
    pub first_break: Option<ChainBreak>,
}

/// The key that authenticates the anchor of a pruned chain, derived from the key-encryption
/// secret (`KeyEncryption::anchor_key`): whoever can
/// write the database but lacks the secret cannot move the start of the chain.
#[derive(Clone)]
pub struct AnchorKey([u8; 32]);

impl std::fmt::Debug for AnchorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnchorKey(..)")
    }
}

impl AnchorKey {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        Self(key)
    }

    /// HMAC-SHA256 of `message`, hex.
    fn mac(&self, message: &[u8]) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(message);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// What the anchor's MAC covers.
fn anchor_message(seq: i64, prev_hash: &str, pruned_at: i64) -> Vec<u8> {
    format!("portcullis audit anchor v1\n{seq}\n{prev_hash}\n{pruned_at}").into_bytes()
}

/// Records, in `tx`, that the chain now starts at event `seq`, which chains from `prev_hash`.
pub(crate) async fn anchor(
    tx: &mut Transaction<'static, Any>,
    key: &AnchorKey,
    seq: i64,
    prev_hash: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let mac = key.mac(&anchor_message(seq, prev_hash, now));
    sqlx::query("DELETE FROM audit_anchor")
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO audit_anchor (id, seq, prev_hash, pruned_at, mac) VALUES (1, $1, $2, $3, $4)",
    )
    .bind(seq)
    .bind(prev_hash)
    .bind(now)
    .bind(mac)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Walks the chain from its first event (the anchored one, once pruned, whose MAC is checked
/// with `key`) and reports the first break.
pub async fn verify(db: &Database, key: &AnchorKey) -> Result<Verification, sqlx::Error> {
    let anchor = sqlx::query("SELECT seq, prev_hash, pruned_at, mac FROM audit_anchor")
        .fetch_optional(db.pool())
        .await?;
    let (mut expected_seq, mut prev) = match anchor {
        None => (1, GENESIS.to_owned()),
        Some(row) => {
            let seq: i64 = row.try_get("seq")?;
            let prev_hash: String = row.try_get("prev_hash")?;
            let expected = key.mac(&anchor_message(seq, &prev_hash, row.try_get("pruned_at")?));
            let mac: String = row.try_get("mac")?;
            if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
                return Ok(Verification {
                    starts_at: seq,
                    events: 0,
                    head: prev_hash,
                    first_break: Some(ChainBreak::ForgedAnchor { seq }),
                });
            }
            (seq, prev_hash)
        }
    };
    let starts_at = expected_seq;
    let rows =
        sqlx::query("SELECT seq, at, kind, data, prev_hash, hash FROM audit_events ORDER BY seq")
            .fetch_all(db.pool())
            .await?;
    let mut events = 0;
    for row in rows {
        let seq: i64 = row.try_get("seq")?;
        let stored_prev: String = row.try_get("prev_hash")?;
        let hash: String = row.try_get("hash")?;
        let verdict = if seq != expected_seq {
            Some(ChainBreak::Deleted {
                expected: expected_seq,
                found: seq,
            })
        } else if stored_prev != prev {
            Some(ChainBreak::Reordered { seq })
        } else {
            match serde_json::from_str::<Value>(row.try_get("data")?) {
                Err(_) => Some(ChainBreak::Unreadable { seq }),
                Ok(data) => {
                    let kind: String = row.try_get("kind")?;
                    let recomputed = chain_hash(&prev, seq, row.try_get("at")?, &kind, &data);
                    (recomputed != hash).then_some(ChainBreak::Modified { seq })
                }
            }
        };
        if let Some(first_break) = verdict {
            return Ok(Verification {
                starts_at,
                events,
                head: prev,
                first_break: Some(first_break),
            });
        }
        events += 1;
        expected_seq = seq + 1;
        prev = hash;
    }
    Ok(Verification {
        starts_at,
        events,
        head: prev,
        first_break: None,
    })
}
