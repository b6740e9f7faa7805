//! Why an authorization request failed, and the one mapping to how the answer travels.
//!
//! Until the client and its `redirect_uri` are known good, an error is shown on a page and
//! never redirected: an open redirector would otherwise be one bad `redirect_uri` away. After
//! that, refusals go back to the client ([`AuthorizeError::Refused`]) as RFC 6749 §4.1.2.1
//! redirects, with an `error` code fixed by the [`Refusal`]'s variant. Our own failures are
//! logged here, once, and shown as a page that says nothing more.
//!
//! | variants | answer |
//! |---|---|
//! | `Refused` | 303 to the client's `redirect_uri`: `error`, `error_description`, `state`, `iss` |
//! | `CsrfMismatch`, `NotSignedIn` | 403 page |
//! | every other request error | 400 page |
//! | `Db`, `Audit`, `StoredRequest`, `ApprovalInvalid`, `ApprovalWider`, `Grant` | 500 page, detail logged |

use axum::http::StatusCode;
use axum::response::Response;
use portcullis_policy::strict_json::StrictJsonError;
use portcullis_policy::{AttenuationError, ConstraintError};

use crate::audit::AuditError;
use crate::authorize::page;
use crate::authorize::redirect::ReturnTo;
use crate::client_metadata::MetadataError;
use crate::grants::GrantError;
use crate::oauth_error::OAuthError;

/// Why an authorization request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthorizeError {
    /// Sent back to the client, which can be trusted with the answer.
    #[error("{reason}")]
    Refused {
        /// Where the answer goes.
        to: ReturnTo,
        /// Why (boxed: refusals carry the policy's errors, and every result carries this).
        reason: Box<Refusal>,
    },
    /// The query or form is malformed (e.g. a repeated parameter).
    #[error(transparent)]
    MalformedParams(OAuthError),
    /// No `client_id`.
    #[error("client_id is required")]
    MissingClientId,
    /// No such client, or it is disabled.
    #[error("unknown client {0}")]
    UnknownClient(String),
    /// The client's metadata document could not be used.
    #[error("client {client_id}: {source}")]
    ClientMetadata {
        /// The client id URL.
        client_id: String,
        /// Why.
        source: MetadataError,
    },
    /// The client has nowhere to send answers.
    #[error("client {0} has no redirect URIs registered")]
    NoRedirectUris(String),
    /// The `redirect_uri` is not one the client registered.
    #[error("redirect_uri is not registered for this client (exact match required)")]
    UnregisteredRedirectUri,
    /// No `redirect_uri`, and the client registered several.
    #[error("redirect_uri is required")]
    MissingRedirectUri,
    /// A form without the pending request's handle.
    #[error("the form has no request handle")]
    MissingHandle,
    /// A form without its CSRF token.
    #[error("the form has no CSRF token")]
    MissingCsrf,
    /// The handle names no live pending request.
    #[error("this authorization request is unknown or expired; start again from the application")]
    UnknownRequest,
    /// The form's CSRF token is not this browser's.
    #[error(
        "the form's CSRF token does not match this browser's; start again from the application"
    )]
    CsrfMismatch,
    /// A consent posted before signing in.
    #[error("sign in before answering")]
    NotSignedIn,
    /// A second answer to the same request.
    #[error("this request was already answered")]
    AlreadyAnswered,
    /// A tool ticked that the consent page did not offer.
    #[error("{0} was not on offer")]
    NotOnOffer(String),
    /// Ours: the database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Ours: the audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// Ours: a stored request could not be read back.
    #[error("stored request: {0}")]
    StoredRequest(serde_json::Error),
    /// Ours: fewer tools of an offer did not make valid constraints.
    #[error("narrowing a consent: {0}")]
    ApprovalInvalid(ConstraintError),
    /// Ours: fewer tools of an offer were not within it.
    #[error("narrowing a consent: {0}")]
    ApprovalWider(AttenuationError),
    /// Ours: the grant could not be created.
    #[error(transparent)]
    Grant(#[from] GrantError),
}

/// Why the client's request is refused, told to the client itself.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// `response_type` other than `code`.
    #[error("only response_type=code is supported")]
    UnsupportedResponseType,
    /// No `response_type`.
    #[error("response_type is required")]
    MissingResponseType,
    /// `code_challenge_method` other than `S256`.
    #[error("code_challenge_method must be S256")]
    UnsupportedChallengeMethod,
    /// No PKCE.
    #[error("PKCE is required: code_challenge_method=S256")]
    MissingPkce,
    /// A `code_challenge` outside RFC 7636's alphabet or length.
    #[error("code_challenge must be 43-128 characters of base64url")]
    InvalidCodeChallenge,
    /// A `resource` that is not an absolute http(s) URI.
    #[error("resource must be an absolute http(s) URI without a fragment")]
    InvalidResource,
    /// No `resource`.
    #[error("resource is required (RFC 8707): name the MCP server")]
    MissingResource,
    /// More than one `resource`.
    #[error("ask for one resource per authorization")]
    SeveralResources,
    /// `authorization_details` that are not strict JSON.
    #[error("{0}")]
    MalformedAuthorizationDetails(StrictJsonError),
    /// `authorization_details` that are not valid constraints.
    #[error("{0}")]
    InvalidAuthorizationDetails(ConstraintError),
    /// `mcp:tools:` scopes that are not valid tool patterns.
    #[error("{0}")]
    InvalidScope(ConstraintError),
    /// The client was disabled while the person was answering.
    #[error("the client was disabled")]
    ClientDisabled,
    /// The person may not delegate access to the resource at all.
    #[error("{username} may not delegate access to {resource}")]
    ResourceNotAllowed {
        /// The person.
        username: String,
        /// The resource asked for.
        resource: String,
    },
    /// The request asks for more than the person may delegate.
    #[error("the request asks for more than {username} may delegate: {source}")]
    AsksTooMuch {
        /// The person.
        username: String,
        /// What was widened.
        source: AttenuationError,
    },
    /// The person said no.
    #[error("{username} denied the request")]
    Denied {
        /// The person.
        username: String,
    },
    /// The person's account was disabled while they were answering.
    #[error("the account was disabled")]
    AccountDisabled,
    /// The person approved with every tool unticked.
    #[error("{username} approved no tool")]
    NoToolApproved {
        /// The person.
        username: String,
    },
}

impl Refusal {
    /// The RFC 6749 §4.1.2.1 `error` code (RFC 8707 and RFC 9396 add theirs).
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Refusal::UnsupportedResponseType => "unsupported_response_type",
            Refusal::MissingResponseType
            | Refusal::UnsupportedChallengeMethod
            | Refusal::MissingPkce
            | Refusal::InvalidCodeChallenge => "invalid_request",
            Refusal::InvalidResource
            | Refusal::MissingResource
            | Refusal::SeveralResources
            | Refusal::ResourceNotAllowed { .. } => "invalid_target",
            Refusal::MalformedAuthorizationDetails(_) | Refusal::InvalidAuthorizationDetails(_) => {
                "invalid_authorization_details"
            }
            Refusal::InvalidScope(_) => "invalid_scope",
            Refusal::ClientDisabled
            | Refusal::AsksTooMuch { .. }
            | Refusal::Denied { .. }
            | Refusal::AccountDisabled
            | Refusal::NoToolApproved { .. } => "access_denied",
        }
    }
}

impl AuthorizeError {
    /// A refusal sent back to the client at `to`.
    pub(crate) fn refused(to: &ReturnTo, reason: Refusal) -> Self {
        AuthorizeError::Refused {
            to: to.clone(),
            reason: Box::new(reason),
        }
    }

    /// The answer: a redirect to the client, or a page for the person.
    pub(crate) fn into_response(self, issuer: &str) -> Response {
        let status = match &self {
            AuthorizeError::Refused { to, reason } => {
                let description = reason.to_string();
                return to.send(
                    &[
                        ("error", reason.code()),
                        ("error_description", &description),
                    ],
                    issuer,
                );
            }
            AuthorizeError::CsrfMismatch | AuthorizeError::NotSignedIn => StatusCode::FORBIDDEN,
            AuthorizeError::MalformedParams(_)
            | AuthorizeError::MissingClientId
            | AuthorizeError::UnknownClient(_)
            | AuthorizeError::ClientMetadata { .. }
            | AuthorizeError::NoRedirectUris(_)
            | AuthorizeError::UnregisteredRedirectUri
            | AuthorizeError::MissingRedirectUri
            | AuthorizeError::MissingHandle
            | AuthorizeError::MissingCsrf
            | AuthorizeError::UnknownRequest
            | AuthorizeError::AlreadyAnswered
            | AuthorizeError::NotOnOffer(_) => StatusCode::BAD_REQUEST,
            AuthorizeError::Db(_)
            | AuthorizeError::Audit(_)
            | AuthorizeError::StoredRequest(_)
            | AuthorizeError::ApprovalInvalid(_)
            | AuthorizeError::ApprovalWider(_)
            | AuthorizeError::Grant(_) => {
                tracing::error!(detail = %self, "authorization request failed");
                return page::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the issuer failed; see its log",
                );
            }
        };
        page::error(status, &self.to_string())
    }
}
