//! `/admin/grants`: what users allow agents.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use portcullis_policy::RevocationKind;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ErrorBody, Page, created, limit, ok, parse_cursor, query, require_admin};
use crate::grants::{self, Grant, GrantError, GrantFilter, GrantRequest, GrantStatus};
use crate::oauth_error::OAuthError;
use crate::request::json_body;
use crate::revocation::Revocation;
use crate::{AppState, now, token};

/// Which grants, and which page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct GrantsQuery {
    /// Given by this user.
    user: Option<String>,
    /// Given to this agent (client_id).
    agent: Option<String>,
    /// In this state now.
    status: Option<GrantStatus>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// A page of grants starts after the last grant's `created_at` and id: `{created_at}:{id}`.
struct GrantCursor(i64, String);

impl std::str::FromStr for GrantCursor {
    type Err = ();

    fn from_str(cursor: &str) -> Result<Self, ()> {
        let (at, id) = cursor.split_once(':').ok_or(())?;
        Ok(Self(at.parse().map_err(|_| ())?, id.to_owned()))
    }
}

/// Grants, newest first, filtered and paged.
#[utoipa::path(get, path = "/admin/grants", tag = "grants", params(GrantsQuery),
    responses((status = 200, body = Page<Grant>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let params: GrantsQuery = query(&uri)?;
    let limit = limit(params.limit)?;
    let before = params
        .cursor
        .as_deref()
        .map(parse_cursor::<GrantCursor>)
        .transpose()?
        .map(|GrantCursor(at, id)| (at, id));
    let filter = GrantFilter {
        user: params.user,
        agent: params.agent,
        status: params.status,
    };
    let items = grants::page(&state.db, &filter, before, limit, now()).await?;
    let next_cursor = (items.len() as i64 == limit)
        .then(|| items.last().map(|g| format!("{}:{}", g.created_at, g.id)))
        .flatten();
    Ok(ok(Page { items, next_cursor }))
}

/// Gives an agent bounded authority on behalf of a user.
#[utoipa::path(post, path = "/admin/grants", tag = "grants", request_body = GrantRequest,
    responses((status = 201, body = Grant), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let request: GrantRequest = json_body(&body)?;
    let grant = grants::create(&state.db, request, now())
        .await
        .map_err(|e| match e {
            GrantError::UnknownClient(_) | GrantError::Invalid(_) => {
                OAuthError::InvalidRequest(e.to_string())
            }
            GrantError::Db(e) => e.into(),
        })?;
    Ok(created(grant))
}

async fn find(state: &AppState, id: &str) -> Result<Grant, OAuthError> {
    grants::get(&state.db, id)
        .await?
        .ok_or_else(|| OAuthError::NotFound(format!("no grant {id:?}")))
}

/// One grant.
#[utoipa::path(get, path = "/admin/grants/{id}", tag = "grants",
    params(("id" = String, Path, description = "The grant id (gid)")),
    responses((status = 200, body = Grant), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(super) async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    Ok(ok(find(&state, &id).await?))
}

/// Why a grant is revoked.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RevokeGrant {
    /// For the audit log.
    #[serde(default)]
    reason: Option<String>,
}

/// Revokes a grant: every token under it stops at every gateway, live calls included.
#[utoipa::path(post, path = "/admin/grants/{id}/revoke", tag = "grants",
    params(("id" = String, Path, description = "The grant id (gid)")),
    request_body(content = Option<RevokeGrant>, description = "Optional: why"),
    responses((status = 201, body = Revocation), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let request: RevokeGrant = if body.is_empty() {
        RevokeGrant::default()
    } else {
        json_body(&body)?
    };
    let grant = find(&state, &id).await?;
    let revocation =
        super::revocations::revoke(&state, RevocationKind::Grant, grant.id, request.reason).await?;
    Ok(created(revocation))
}

/// The user's token for a grant, to be exchanged by its agent.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SubjectToken {
    /// A JWT whose only use is as the `subject_token` of the agent's first exchange.
    subject_token: String,
    /// `urn:ietf:params:oauth:token-type:access_token`.
    subject_token_type: String,
    /// Seconds.
    expires_in: i64,
}

/// Mints the user's token for an active grant.
#[utoipa::path(post, path = "/admin/grants/{id}/subject-token", tag = "grants",
    params(("id" = String, Path, description = "The grant id (gid)")),
    responses((status = 200, body = SubjectToken), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn subject_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let grant = find(&state, &id).await?;
    let now = now();
    if !grant.is_active(now) {
        return Err(OAuthError::InvalidGrant(
            "the grant is revoked or expired".into(),
        ));
    }
    let ttl = state.config.subject_token_ttl;
    let token = grants::mint_subject_token(&state, &grant, now).await?;
    Ok(ok(SubjectToken {
        subject_token: token,
        subject_token_type: token::ACCESS_TOKEN_TYPE.to_owned(),
        expires_in: (now + ttl).min(grant.expires_at) - now,
    }))
}
