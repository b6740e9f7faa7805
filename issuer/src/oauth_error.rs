//! The one place issuer errors become HTTP: RFC 6749 §5.2 error bodies.
//!
//! Every variant maps to a status and an `error` code; the description is safe to show the
//! client. Internal failures are logged here, once, and reach the client only as
//! `server_error`. All responses carry `Cache-Control: no-store`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An OAuth error response.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// `invalid_request` (400): malformed request, or a subject/actor token that is invalid or
    /// unacceptable (RFC 8693 §2.2.2).
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// `invalid_client` (401): client authentication failed.
    #[error("invalid_client: {0}")]
    InvalidClient(String),
    /// `invalid_grant` (400): the underlying grant is unknown, revoked, expired or not this
    /// client's.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// `unauthorized_client` (400): the client may not do this with this token.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    /// `unsupported_grant_type` (400).
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    /// `invalid_scope` (400): the request asks for more than the parent allows.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// `invalid_target` (400): the `resource` is not one this grant or token may be used at.
    #[error("invalid_target: {0}")]
    InvalidTarget(String),
    /// `invalid_authorization_details` (400, RFC 9396 §5).
    #[error("invalid_authorization_details: {0}")]
    InvalidAuthorizationDetails(String),
    /// `invalid_redirect_uri` (400, RFC 7591 §3.2.2).
    #[error("invalid_redirect_uri: {0}")]
    InvalidRedirectUri(String),
    /// `invalid_client_metadata` (400, RFC 7591 §3.2.2).
    #[error("invalid_client_metadata: {0}")]
    InvalidClientMetadata(String),
    /// `invalid_dpop_proof` (400, RFC 9449 §5): the DPoP proof is invalid, or one was needed.
    #[error("invalid_dpop_proof: {0}")]
    InvalidDpopProof(String),
    /// `temporarily_unavailable` (429): the grant's calls-per-hour cap is reached; retry later.
    #[error("temporarily_unavailable: {0}")]
    RateLimited(String),
    /// `unauthorized` admin call (401, not an OAuth endpoint).
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// `not_found` (404).
    #[error("not_found: {0}")]
    NotFound(String),
    /// `server_error` (500): our fault; details are logged, not sent.
    #[error("server_error: {0}")]
    Server(String),
}

impl OAuthError {
    /// The RFC 6749 `error` code.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    fn parts(&self) -> (StatusCode, &'static str, &str) {
        match self {
            OAuthError::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d),
            OAuthError::InvalidClient(d) => (StatusCode::UNAUTHORIZED, "invalid_client", d),
            OAuthError::InvalidGrant(d) => (StatusCode::BAD_REQUEST, "invalid_grant", d),
            OAuthError::UnauthorizedClient(d) => {
                (StatusCode::BAD_REQUEST, "unauthorized_client", d)
            }
            OAuthError::UnsupportedGrantType(d) => {
                (StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
            }
            OAuthError::InvalidScope(d) => (StatusCode::BAD_REQUEST, "invalid_scope", d),
            OAuthError::InvalidTarget(d) => (StatusCode::BAD_REQUEST, "invalid_target", d),
            OAuthError::InvalidDpopProof(d) => (StatusCode::BAD_REQUEST, "invalid_dpop_proof", d),
            OAuthError::InvalidAuthorizationDetails(d) => {
                (StatusCode::BAD_REQUEST, "invalid_authorization_details", d)
            }
            OAuthError::InvalidRedirectUri(d) => {
                (StatusCode::BAD_REQUEST, "invalid_redirect_uri", d)
            }
            OAuthError::InvalidClientMetadata(d) => {
                (StatusCode::BAD_REQUEST, "invalid_client_metadata", d)
            }
            OAuthError::RateLimited(d) => {
                (StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable", d)
            }
            OAuthError::Unauthorized(d) => (StatusCode::UNAUTHORIZED, "unauthorized", d),
            OAuthError::NotFound(d) => (StatusCode::NOT_FOUND, "not_found", d),
            OAuthError::Server(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the issuer failed; see its log",
            ),
        }
    }
}

impl From<crate::audit::AuditError> for OAuthError {
    fn from(e: crate::audit::AuditError) -> Self {
        OAuthError::Server(e.to_string())
    }
}

impl From<sqlx::Error> for OAuthError {
    fn from(e: sqlx::Error) -> Self {
        OAuthError::Server(format!("database: {e}"))
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let (status, code, description) = self.parts();
        if let OAuthError::Server(detail) = &self {
            tracing::error!(%detail, "request failed");
        } else {
            tracing::debug!(code, description, "request refused");
        }
        let mut response = (
            status,
            Json(json!({"error": code, "error_description": description})),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if matches!(self, OAuthError::InvalidClient(_)) {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="portcullis-issuer""#),
            );
        }
        if matches!(self, OAuthError::RateLimited(_)) {
            // The window rolls; a minute is a fair guess without tracking the oldest mint.
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        }
        if matches!(self, OAuthError::Unauthorized(_)) {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="portcullis-admin""#),
            );
        }
        response
    }
}
