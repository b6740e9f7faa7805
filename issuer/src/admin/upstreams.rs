//! `/admin/upstreams`: upstreams with an authorization server of their own, where people link
//! their accounts (`downstream_auth: oauth` at the gateway).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{ErrorBody, created, require_admin};
use crate::oauth_error::OAuthError;
use crate::request::json_body;
use crate::upstream_links::{self, RegisterError, UpstreamOAuth};
use crate::{AppState, now};

impl From<RegisterError> for OAuthError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::Db(e) => e.into(),
            RegisterError::Invalid(_) => OAuthError::InvalidRequest(e.to_string()),
            RegisterError::Upstream(_) | RegisterError::NoRegistration => {
                OAuthError::InvalidTarget(e.to_string())
            }
        }
    }
}

/// An upstream to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUpstream {
    /// The resource grants name for it at the gateway, `{public_url}/mcp/{name}`.
    #[schema(example = "https://gw.example.com/mcp/notes")]
    resource: String,
    /// Its MCP endpoint, whose RFC 9728 metadata names its authorization server.
    #[schema(example = "https://notes.example.com/mcp")]
    upstream_url: String,
}

/// Registers an upstream: reads its metadata and its server's, and registers the issuer
/// there as a client (RFC 7591). People can then link their accounts at `/link`.
#[utoipa::path(post, path = "/admin/upstreams", tag = "upstreams", request_body = NewUpstream,
    responses((status = 201, body = UpstreamOAuth), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
pub(super) async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    require_admin(&state, &headers)?;
    let request: NewUpstream = json_body(&body)?;
    let upstream =
        upstream_links::register(&state, &request.resource, &request.upstream_url, now()).await?;
    Ok(created(upstream))
}
