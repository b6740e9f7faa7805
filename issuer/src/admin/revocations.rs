//! `/admin/revocations`: revoke a token, grant, agent, user, session or sub-agent branch; the
//! revocation log.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use portcullis_policy::RevocationKind;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{ErrorBody, Page, created, limit, ok, query, require_admin, seq_cursor};
use crate::oauth_error::OAuthError;
use crate::request::json_body;
use crate::revocation::{self, Revocation, RevokeError, RevokeRequest};
use crate::{AppState, now};

/// What to revoke.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewRevocation {
    /// `token` (a jti), `grant`, `agent` (a client_id), `user`, `session` or `branch`
    /// (`GRANT_ID/AGENT`: one sub-agent under a grant).
    kind: String,
    /// What is named.
    value: String,
    /// Why, for the audit log.
    #[serde(default)]
    reason: Option<String>,
}

/// Commits a revocation (pushed to every gateway at once) and returns it as the log keeps it.
pub(super) async fn revoke(
    state: &AppState,
    kind: RevocationKind,
    value: String,
    reason: Option<String>,
) -> Result<Revocation, OAuthError> {
    let reason = reason.unwrap_or_else(|| "revoked through the admin API".into());
    let entry = revocation::revoke(
        &state.db,
        &state.hub,
        RevokeRequest {
            kind,
            value: value.clone(),
            reason: reason.clone(),
            token_expires_at: None,
        },
        state.config.max_token_lifetime(),
        now(),
    )
    .await
    .map_err(|e| match e {
        RevokeError::UnknownGrant(_) | RevokeError::UnknownClient(_) => {
            OAuthError::NotFound(e.to_string())
        }
        RevokeError::InvalidValue | RevokeError::InvalidBranch => {
            OAuthError::InvalidRequest(e.to_string())
        }
        RevokeError::Db(e) => e.into(),
    })?;
    state.console.poke();
    Ok(Revocation {
        seq: entry.seq,
        kind,
        value: value.trim().to_owned(),
        reason,
        revoked_at: entry.revoked_at,
        issued_before: entry.issued_before,
        expires_at: entry.expires_at,
    })
}

/// Revokes a token, grant, agent, user, session or branch; every gateway ends its live work.
#[utoipa::path(post, path = "/admin/revocations", tag = "revocations",
    request_body = NewRevocation,
    responses((status = 201, body = Revocation), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let request: NewRevocation = json_body(&body)?;
    let kind = RevocationKind::from_name(&request.kind).ok_or_else(|| {
        OAuthError::InvalidRequest(
            "kind must be token, grant, agent, user, session or branch".into(),
        )
    })?;
    Ok(created(
        revoke(&state, kind, request.value, request.reason).await?,
    ))
}

/// Where to read the log from.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RevocationsQuery {
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// The revocation log, oldest first (kept until no token an entry covers can be valid).
#[utoipa::path(get, path = "/admin/revocations", tag = "revocations",
    params(RevocationsQuery),
    responses((status = 200, body = Page<Revocation>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let params: RevocationsQuery = query(&uri)?;
    let limit = limit(params.limit)?;
    let after = seq_cursor(params.cursor.as_deref())?.unwrap_or(0);
    let items = revocation::list(&state.db, after, limit).await?;
    let next_cursor = (items.len() as i64 == limit)
        .then(|| items.last().map(|r| r.seq.to_string()))
        .flatten();
    Ok(ok(Page { items, next_cursor }))
}
