//! `/admin/freezes`: change freezes in force at every gateway.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{ACTOR, ErrorBody, created, ok, require_admin};
use crate::freezes::{self, Freeze, FreezeError};
use crate::oauth_error::OAuthError;
use crate::request::json_body;
use crate::{AppState, now};

impl From<FreezeError> for OAuthError {
    fn from(e: FreezeError) -> Self {
        match e {
            FreezeError::Db(e) => e.into(),
            FreezeError::NotFrozen(_) => OAuthError::NotFound(e.to_string()),
            FreezeError::InvalidPattern(_) | FreezeError::InvalidReason => {
                OAuthError::InvalidRequest(e.to_string())
            }
        }
    }
}

/// Freezes in force, oldest first.
#[utoipa::path(get, path = "/admin/freezes", tag = "freezes",
    responses((status = 200, body = Vec<Freeze>), (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    Ok(ok(freezes::list(&state.db).await?))
}

/// A freeze to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewFreeze {
    /// `upstream/tool`, `*` matching any run of characters: `[A-Za-z0-9_./-]` and `*`.
    #[schema(example = "k8s/*delete*", pattern = "^[A-Za-z0-9_./*-]{1,256}$")]
    pattern: String,
    /// Why, 1 to 512 characters.
    #[schema(min_length = 1, max_length = 512, pattern = "\\S")]
    reason: String,
}

/// Sets a freeze: every gateway refuses each matching `tools/call` within a second.
#[utoipa::path(post, path = "/admin/freezes", tag = "freezes", request_body = NewFreeze,
    responses((status = 201, body = Freeze), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
pub(super) async fn set(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let request: NewFreeze = json_body(&body)?;
    let freeze = freezes::set(&state.db, &request.pattern, &request.reason, ACTOR, now()).await?;
    state.hub.poke().await;
    state.console.poke();
    Ok(created(freeze))
}

/// The freeze to lift.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LiftFreeze {
    /// Exactly as set.
    pattern: String,
}

/// Lifts a freeze.
#[utoipa::path(post, path = "/admin/freezes/lift", tag = "freezes", request_body = LiftFreeze,
    responses((status = 204, description = "Lifted"), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn lift(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let request: LiftFreeze = json_body(&body)?;
    freezes::lift(&state.db, &request.pattern, ACTOR, now()).await?;
    state.hub.poke().await;
    state.console.poke();
    Ok(StatusCode::NO_CONTENT.into_response())
}
