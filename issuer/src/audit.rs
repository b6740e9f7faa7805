//! The audit log: a hash chain of everything that changes who may do what.
//!
//! Each event's hash is `SHA-256(prev_hash ‖ canonical JSON of {seq, at, kind, data})`, so
//! changing, deleting or reordering any row breaks every hash after it, and `audit verify`
//! names the first row where the chain no longer holds. Events are appended inside the
//! transaction of the change they record: a grant, an exchange or a revocation is never
//! committed without its event, nor an event without its change. The chain is shared by every
//! process on the database (sequence numbers are taken under the primary key, see the
//! migration), so it stays continuous across restarts and replicas.

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{Any, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::db::Database;

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
}

/// The result of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Events checked.
    pub events: i64,
    /// The hash of the last event (the chain's head), to record elsewhere.
    pub head: String,
    /// The first break, if any.
    pub first_break: Option<ChainBreak>,
}

/// Walks the chain from the first event and reports the first break.
pub async fn verify(db: &Database) -> Result<Verification, sqlx::Error> {
    let rows =
        sqlx::query("SELECT seq, at, kind, data, prev_hash, hash FROM audit_events ORDER BY seq")
            .fetch_all(db.pool())
            .await?;
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_owned();
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
        events,
        head: prev,
        first_break: None,
    })
}
