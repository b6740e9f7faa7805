//! `/admin/audit`: the hash-chained audit log, queried and verified.

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ErrorBody, Page, limit, ok, query as read_query, require_admin, seq_cursor};
use crate::AppState;
use crate::audit::{self, Event, EventFilter};
use crate::oauth_error::OAuthError;

/// Which events, and which page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// This kind exactly: `grant.created`, `token.exchanged`, `revocation`,
    /// `gateway.decision`, `approval.approved`, `freeze.set`, …
    kind: Option<String>,
    /// About this user.
    user: Option<String>,
    /// About this agent (acting, or the client).
    agent: Option<String>,
    /// About this grant.
    grant: Option<String>,
    /// At or after, Unix seconds.
    since: Option<i64>,
    /// Before, Unix seconds.
    until: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// Events, newest first. A page reads at most 20 000 events, so a rare match can take
/// several pages (some empty): follow `next_cursor` until it is absent.
#[utoipa::path(get, path = "/admin/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<Event>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
pub(super) async fn query(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let params: AuditQuery = read_query(&uri)?;
    let limit = limit(params.limit)? as usize;
    let before = seq_cursor(params.cursor.as_deref())?;
    let filter = EventFilter {
        kind: params.kind,
        user: params.user,
        agent: params.agent,
        grant: params.grant,
        since: params.since,
        until: params.until,
    };
    let (items, next) = audit::query(&state.db, &filter, before, limit).await?;
    Ok(ok(Page {
        items,
        next_cursor: next.map(|seq| seq.to_string()),
    }))
}

/// The chain checked end to end.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ChainReport {
    /// Whether every event's hash holds and none is missing.
    intact: bool,
    /// The first event checked: 1, or the anchored one after pruning.
    starts_at: i64,
    /// Events checked.
    events: i64,
    /// The hash of the last event, to record elsewhere (a truncated tail shows against it).
    head: String,
    /// Where the chain first breaks, in words.
    first_break: Option<String>,
}

/// Verifies the whole chain, as `portcullis-issuer audit verify` does.
#[utoipa::path(get, path = "/admin/audit/verify", tag = "audit",
    responses((status = 200, body = ChainReport), (status = 401, body = ErrorBody)))]
pub(super) async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let report = audit::verify(&state.db, &state.sealing.anchor_key()).await?;
    Ok(ok(ChainReport {
        intact: report.first_break.is_none(),
        starts_at: report.starts_at,
        events: report.events,
        head: report.head,
        first_break: report.first_break.map(|b| b.to_string()),
    }))
}
