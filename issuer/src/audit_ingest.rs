//! `POST /audit/decisions`: gateways ship their allow and deny decisions into the issuer's
//! hash-chained audit log, so one chain tells who was allowed what, where, and why.
//!
//! A gateway numbers its events (`seq`, strictly increasing) and ships them in batches,
//! retrying until a batch is acknowledged. The issuer keeps, per gateway, the highest number
//! it has appended, in the same transaction as the events: a batch sent twice (the answer was
//! lost) appends nothing the second time, and the answer always says how far the issuer has
//! got (`accepted_through`), which is where the gateway resumes. Delivery is at least once on
//! the wire and exactly once in the chain.
//!
//! The endpoint needs its own bearer token (`--audit-ingest-token-file`), not the admin token:
//! gateways should hold no power over grants.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AppState;
use crate::oauth_error::OAuthError;

/// Most events in one batch.
pub const MAX_BATCH: usize = 1000;

/// One decision, as a gateway reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionEvent {
    /// The gateway's number for it; strictly increasing.
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// `allow` or `deny`.
    pub decision: String,
    /// The user (`sub`).
    #[serde(default)]
    pub sub: Option<String>,
    /// The agents acting, current actor first (as in `act`).
    #[serde(default)]
    pub act: Vec<String>,
    /// The grant (`gid`).
    #[serde(default)]
    pub gid: Option<String>,
    /// The token (`jti`).
    #[serde(default)]
    pub jti: Option<String>,
    /// The upstream.
    pub upstream: String,
    /// The JSON-RPC method.
    pub method: String,
    /// The tool, resource or prompt named.
    #[serde(default)]
    pub target: Option<String>,
    /// SHA-256 of the canonical arguments (never the arguments themselves).
    #[serde(default)]
    pub arguments_digest: Option<String>,
    /// The rule that decided (`tool_not_granted`, `limit_exceeded`, … or `allowed`).
    pub rule: String,
    /// The approval a person gave for this call, when it needed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// The gateway's own chain hash for this event, so both chains can be compared.
    #[serde(default)]
    pub hash: Option<String>,
    /// The OpenTelemetry trace of the request, when the gateway exports traces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// A batch from one gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// The gateway's stable name (its replica id).
    pub gateway: String,
    /// Events in `seq` order.
    pub events: Vec<DecisionEvent>,
}

/// The answer: every event up to this number is in the chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ack {
    /// The highest `seq` appended for this gateway (0 before the first).
    pub accepted_through: i64,
    /// How many events of this batch were new.
    pub appended: usize,
}

fn check(batch: &Batch) -> Result<(), OAuthError> {
    let bad = |why: String| Err(OAuthError::InvalidRequest(why));
    let name_ok = !batch.gateway.is_empty()
        && batch.gateway.len() <= 128
        && batch
            .gateway
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if !name_ok {
        return bad("gateway must be 1-128 characters of [A-Za-z0-9._:-]".into());
    }
    if batch.events.len() > MAX_BATCH {
        return bad(format!("at most {MAX_BATCH} events per batch"));
    }
    for pair in batch.events.windows(2) {
        if pair[1].seq <= pair[0].seq {
            return bad(format!(
                "seq must increase ({} after {})",
                pair[1].seq, pair[0].seq
            ));
        }
    }
    if let Some(event) = batch
        .events
        .iter()
        .find(|e| e.seq < 1 || !matches!(e.decision.as_str(), "allow" | "deny"))
    {
        return bad(format!(
            "event {}: seq must be positive and decision allow or deny",
            event.seq
        ));
    }
    Ok(())
}

/// Appends the batch's new events to the chain.
pub async fn ingest(state: &AppState, batch: Batch) -> Result<Ack, OAuthError> {
    check(&batch)?;
    let ack = state
        .db
        .write(|tx| {
            let batch = batch.clone();
            Box::pin(async move {
                let last: i64 = sqlx::query_scalar(
                    "SELECT last_seq FROM gateway_audit_cursors WHERE gateway = $1",
                )
                .bind(&batch.gateway)
                .fetch_optional(&mut **tx)
                .await?
                .unwrap_or(0);
                let mut appended = 0;
                let mut through = last;
                for event in batch.events.iter().filter(|e| e.seq > last) {
                    let mut data: Value = serde_json::to_value(event).expect("events serialise");
                    data["gateway"] = Value::String(batch.gateway.clone());
                    crate::audit::append(tx, "gateway.decision", data, event.at).await?;
                    appended += 1;
                    through = event.seq;
                }
                if through != last {
                    sqlx::query(
                        "INSERT INTO gateway_audit_cursors (gateway, last_seq) VALUES ($1, $2)
                         ON CONFLICT (gateway) DO UPDATE SET last_seq = excluded.last_seq",
                    )
                    .bind(&batch.gateway)
                    .bind(through)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(Ack {
                    accepted_through: through,
                    appended,
                })
            })
        })
        .await?;
    if ack.appended > 0 {
        state.console.poke();
    }
    Ok(ack)
}
