//! `/admin/keys`: the token signing keys (never their secrets).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::{ErrorBody, ok, require_admin};
use crate::keys::{self, KeyInfo, KeyStoreError};
use crate::oauth_error::OAuthError;
use crate::{AppState, now};

/// Stored keys, newest first.
#[utoipa::path(get, path = "/admin/keys", tag = "keys",
    responses((status = 200, body = Vec<KeyInfo>), (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    Ok(ok(keys::list(&state.db).await?))
}

/// Makes a new key the signing one; the old ones stay published for the tokens they signed,
/// and every issuer on the database picks the change up within seconds.
#[utoipa::path(post, path = "/admin/keys/rotate", tag = "keys",
    responses((status = 200, body = Vec<KeyInfo>, description = "The keys after rotation"),
              (status = 401, body = ErrorBody)))]
pub(super) async fn rotate(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    keys::rotate(&state.db, &state.sealing, now())
        .await
        .map_err(|e| match e {
            KeyStoreError::Db(e) => e.into(),
            other => OAuthError::Server(other.to_string()),
        })?;
    Ok(ok(keys::list(&state.db).await?))
}
