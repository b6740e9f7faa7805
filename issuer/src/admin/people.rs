//! `/admin/users`: people who sign in at the issuer (consent, approvals, their account page)
//! and operators (the console).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{ErrorBody, created, ok, require_admin};
use crate::oauth_error::OAuthError;
use crate::request::json_body;
use crate::users::{self, NewUser, User, UserError};
use crate::{AppState, now};

impl From<UserError> for OAuthError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Db(e) => e.into(),
            UserError::Unknown(_) => OAuthError::NotFound(e.to_string()),
            UserError::InvalidName
            | UserError::WeakPassword
            | UserError::InvalidResources
            | UserError::Exists(_) => OAuthError::InvalidRequest(e.to_string()),
        }
    }
}

/// Every person, by name.
#[utoipa::path(get, path = "/admin/users", tag = "people",
    responses((status = 200, body = Vec<User>), (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    Ok(ok(users::list(&state.db).await?))
}

/// A new person.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewPerson {
    /// 1-64 characters of `[A-Za-z0-9._@-]`; the `sub` of their tokens.
    #[schema(pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    username: String,
    /// At least 12 characters.
    #[schema(min_length = 12)]
    password: String,
    /// Resources they may delegate access to (absolute http(s) URIs).
    resources: Vec<String>,
    /// The most they may delegate: RFC 9396 `authorization_details` with one `mcp_tools` entry.
    #[schema(value_type = Vec<Object>)]
    authorization_details: Vec<serde_json::Value>,
    /// Whether they may open the operator console.
    #[serde(default)]
    operator: bool,
}

/// Creates a person.
#[utoipa::path(post, path = "/admin/users", tag = "people", request_body = NewPerson,
    responses((status = 201, body = User), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let person: NewPerson = json_body(&body)?;
    let allowance =
        portcullis_policy::Constraints::from_authorization_details(&person.authorization_details)
            .map_err(|e| OAuthError::InvalidAuthorizationDetails(e.to_string()))?;
    let new = NewUser {
        username: &person.username,
        password: &person.password,
        resources: person.resources,
        allowance,
        operator: person.operator,
    };
    Ok(created(users::create(&state.db, new, now()).await?))
}

/// One person.
#[utoipa::path(get, path = "/admin/users/{username}", tag = "people",
    params(("username" = String, Path, description = "Their sign-in name")),
    responses((status = 200, body = User), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(super) async fn get(
    State(state): State<AppState>,
    Path(username): Path<String>,
    headers: HeaderMap,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let user = users::get(&state.db, &username)
        .await?
        .ok_or_else(|| OAuthError::NotFound(format!("no user {username:?}")))?;
    Ok(ok(user))
}

/// The operator role, given or taken.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct OperatorRole {
    /// Whether they may open the console.
    operator: bool,
}

/// Gives or takes the operator role; takes effect at the person's next request.
#[utoipa::path(put, path = "/admin/users/{username}/operator", tag = "people",
    params(("username" = String, Path, description = "Their sign-in name")),
    request_body = OperatorRole,
    responses((status = 200, body = User), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn set_operator(
    State(state): State<AppState>,
    Path(username): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let role: OperatorRole = json_body(&body)?;
    Ok(ok(users::set_operator(
        &state.db,
        &username,
        role.operator,
        now(),
    )
    .await?))
}
