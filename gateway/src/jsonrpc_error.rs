//! The one place gateway errors become HTTP responses with JSON-RPC error bodies.
//!
//! The agent's fault is a 4xx, the upstream's a 502, ours a 500. A policy denial is an HTTP
//! 200 carrying a JSON-RPC error, because MCP clients hand a JSON-RPC error (with its `data`)
//! to the model, which can then explain or adjust, while an HTTP error status usually surfaces
//! only as a transport failure. Gateway-specific codes sit outside the range JSON-RPC and MCP
//! reserve (−32768…−32000):
//!
//! | code | meaning | HTTP |
//! |---|---|---|
//! | −31001 | denied by policy (`data.reason`, `data.rule`; `approval_denied` when a person refused the call, `approval_void` when its grant was revoked) | 200 |
//! | −31002 | missing or invalid token | 401 |
//! | −31003 | upstream failed | 502 |
//! | −31004 | no such upstream | 404 |
//! | −31005 | body too large | 413 |
//! | −31006 | gateway failure | 500 |
//! | −31007 | the token, grant, branch, agent, user or session was revoked (`data.revocation`) | 401, or a final SSE event |
//! | −31008 | revocation knowledge too old, strict mode | 503 |
//! | −31009 | `Host` or `Origin` not accepted (DNS rebinding) | 403 |
//! | −31015 | the upstream takes each person's own account there (`downstream_auth: oauth`) and this person has not linked theirs (`data.reason` `link_required`, `data.link_url`); a client that declared URL elicitation gets −32042 with the link as its elicitation | 200 (403 without a JSON-RPC request) |
//! | −31012 (`link_unavailable`) | the issuer could not be asked for the person's upstream token | 503 |
//! | −31014 | the gateway holds as many large request bodies as it may (`body_buffer_bytes`) and this one found no room in time (`data.reason` `body_buffer_full`, `Retry-After`) | 503 |
//! | −31013 | a tool outside the grant, where the upstream asks for more consent (`incremental_consent`): `WWW-Authenticate: Bearer error="insufficient_scope", scope="mcp:tools:…"` | 403 |
//! | −31010 | the shared store could not answer, strict mode: a rate-capped call (`data.reason` `rate_unavailable`) or a session lookup (`session_unavailable`) | 503 |
//! | −31011 | the call waits for a person's approval (`data.reason` `approval_required`, `data.approval_url`), to a client that did not declare URL elicitation | 200 |
//! | −31012 | the issuer could not be asked about an approval (`data.reason` `approval_unavailable`) | 503 |
//! | −32042 | the call waits for a person's approval, as MCP's `URLElicitationRequiredError` (2025-11-25), to a client that declared `elicitation.url` | 200 |
//! | −32020 | an `Mcp-Method`/`Mcp-Name` header disagrees with the body | 400 |
//! | −32022 | unsupported `MCP-Protocol-Version` (`data.supported`, `data.requested`) | 400 |
//! | −32700 | parse error (including duplicate keys) | 400 |
//! | −32600 | invalid request (including batches; a fleet request before `initialize`) | 400 |
//! | −32601 | a method a fleet endpoint does not serve | 200; 404 in 2026-07-28 |
//! | −32602 | an unknown tool on a fleet endpoint | 200 |
//!
//! Denials name the rule that failed and the tool the agent asked for, never the tools it may
//! not see.
//!
//! It is long on purpose: the one exhaustive mapping from every gateway error to its status,
//! code, label, data and body, so that a new error cannot be added without deciding each.

use portcullis_policy::{DenyReason, VerifyError};
use serde::Serialize;
use serde_json::{Value, json};

/// Denied by the token's constraints.
pub const POLICY_DENIED: i64 = -31001;
/// Missing or invalid token.
pub const UNAUTHENTICATED: i64 = -31002;
/// The upstream failed.
pub const UPSTREAM_FAILED: i64 = -31003;
/// Unknown route.
pub const NOT_FOUND: i64 = -31004;
/// Request body too large.
pub const TOO_LARGE: i64 = -31005;
/// Gateway failure.
pub const INTERNAL: i64 = -31006;
/// The authority behind the request was revoked.
pub const REVOKED: i64 = -31007;
/// Revocation knowledge too old (strict mode).
pub const STALE: i64 = -31008;
/// A `Host` or `Origin` the gateway does not accept.
pub const FORBIDDEN: i64 = -31009;
/// The shared store could not answer (strict mode): a rate-capped call it could not count, or
/// a session it could not look up.
pub const STORE_UNAVAILABLE: i64 = -31010;

/// How the `requestState` of an `InputRequiredResult` the gateway issues starts. It names
/// the approval request and nothing else the gateway relies on (the issuer is asked again
/// on the retry), so it needs no seal: a forged one is only taken out.
pub const GATEWAY_STATE_PREFIX: &str = "portcullis-approval:";
/// The key of the gateway's input request (the approval's URL elicitation).
pub const APPROVAL_INPUT_KEY: &str = "portcullis_approval";

/// The call waits for a person's approval (to a client without URL elicitation).
pub const APPROVAL_REQUIRED: i64 = -31011;
/// The issuer could not be asked about an approval.
pub const APPROVAL_UNAVAILABLE: i64 = -31012;
/// A tool outside the token's grant, at an upstream that asks for more consent.
pub const INSUFFICIENT_SCOPE: i64 = -31013;
/// No room to hold a large request body now.
pub const BUSY: i64 = -31014;
/// The person has not linked their account at an upstream that takes one.
pub const LINK_REQUIRED: i64 = -31015;
/// MCP's `URLElicitationRequiredError` (2025-11-25): the client sends its user to a URL, then
/// retries.
pub const URL_ELICITATION_REQUIRED: i64 = -32042;

/// A routing header that disagrees with the body (MCP 2026-07-28 `HeaderMismatch`).
pub const HEADER_MISMATCH: i64 = -32020;
/// An unsupported protocol version (MCP 2026-07-28 `UnsupportedProtocolVersionError`).
pub const UNSUPPORTED_VERSION: i64 = -32022;

/// `MCP-Protocol-Version` values the gateway accepts.
pub const SUPPORTED_PROTOCOL_VERSIONS: [&str; 5] = [
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// The revisions with sessions (all but 2026-07-28): what a fleet with a member that does
/// not speak 2026-07-28 offers.
pub const SESSION_PROTOCOL_VERSIONS: [&str; 4] =
    ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// Everything that ends a request at the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No bearer token.
    #[error("a bearer token is required")]
    MissingToken,
    /// The token failed verification.
    #[error("invalid token: {0}")]
    InvalidToken(VerifyError),
    /// The call is outside the token's authority.
    #[error("denied by policy: {}", .0.reason)]
    Denied(Box<Denial>),
    /// The tool falls under an operator's change freeze.
    #[error("denied: {tool} is frozen by an operator ({pattern})")]
    Frozen {
        /// The request id.
        id: Value,
        /// The full tool name.
        tool: String,
        /// The freeze pattern.
        pattern: String,
    },
    /// The tool's definition changed since it was pinned and awaits an operator's approval.
    #[error("denied: the definition of {tool} changed and awaits approval")]
    ToolChanged {
        /// The request id.
        id: Value,
        /// The full tool name.
        tool: String,
    },
    /// The call waits for a person to approve it at `url`.
    #[error("a person must approve this call of {} first: {}", .0.tool, .0.url)]
    ApprovalRequired(Box<ApprovalWait>),
    /// A person refused this very call.
    #[error("denied: a person refused this call of {tool}")]
    ApprovalDenied {
        /// The request id.
        id: Value,
        /// The full tool name.
        tool: String,
        /// The refused approval request.
        approval: String,
    },
    /// The grant behind the call was revoked: no approval can be given.
    #[error("denied: the grant behind this call of {tool} was revoked")]
    ApprovalVoid {
        /// The request id.
        id: Value,
        /// The full tool name.
        tool: String,
    },
    /// A tool outside the token's grant, at an upstream with `incremental_consent`: the
    /// client asks its person for `scope` (the token's tools and this one) and retries.
    #[error("tool {tool} is not granted: ask for scope {scope}")]
    InsufficientScope {
        /// The request id.
        id: Value,
        /// The full tool name.
        tool: String,
        /// The scope to ask for, `mcp:tools:` patterns.
        scope: String,
    },
    /// The upstream takes each person's own account there, and this person has not linked
    /// theirs: their client sends them to `url`.
    #[error("link your account at this upstream first")]
    LinkRequired {
        /// The request id (`null` for a request without one).
        id: Value,
        /// Where the person links it.
        url: String,
        /// Whether the client declared URL elicitation (2025-11-25).
        elicit: bool,
    },
    /// The issuer could not be asked for the person's token at the upstream.
    #[error("the person's account at the upstream cannot be used now")]
    LinkUnavailable {
        /// The request id.
        id: Value,
    },
    /// The issuer could not be asked about the call's approval.
    #[error("the approval of {tool} cannot be checked now")]
    ApprovalUnavailable {
        /// The request id.
        id: Value,
        /// The full tool name.
        tool: String,
    },
    /// A revocation covers the token or session.
    #[error("authority revoked")]
    Revoked {
        /// The request id (for the final event of a killed stream).
        id: Value,
        /// The revocation's sequence number.
        seq: i64,
    },
    /// The bytes of large request bodies held at once are at their bound
    /// (`body_buffer_bytes`), and this body found no room in time.
    #[error("the gateway is holding as many request bodies as it may; retry shortly")]
    BodyBufferFull,
    /// Strict mode, and the revocation knowledge is too old to trust.
    #[error("revocation status unknown: the gateway has lost contact with the issuer")]
    RevocationStale,
    /// Strict mode, and the shared store could not count a call under a rate cap.
    #[error("the rate cap of {tool} cannot be checked now: the shared store is unreachable")]
    RateUnavailable {
        /// The request id.
        id: Value,
        /// The full tool name.
        tool: String,
    },
    /// The DPoP proof lacks the gateway's current nonce (nonces are on): the agent retries
    /// with `nonce` (RFC 9449 §9).
    #[error("the DPoP proof must carry the gateway's current nonce")]
    UseDpopNonce {
        /// The nonce to use, sent in `DPoP-Nonce`.
        nonce: String,
    },
    /// A DPoP proof's id could not be spent (the shared store is unreachable, or the
    /// in-process store is full): the proof is refused rather than risk a replay.
    #[error("the DPoP proof cannot be checked for replay now")]
    ProofUnavailable,
    /// Strict mode, and the shared store could not say whether the agent's session lives.
    #[error("the session cannot be looked up now: the shared store is unreachable")]
    SessionUnavailable,
    /// A `Host` or `Origin` the gateway does not accept.
    #[error("forbidden: {0}")]
    Forbidden(crate::origin::OriginError),
    /// An `MCP-Protocol-Version` the gateway, or this endpoint, does not speak.
    #[error("unsupported MCP-Protocol-Version {requested:?}")]
    UnsupportedProtocolVersion {
        /// The request id, if it could be read.
        id: Value,
        /// The version asked for.
        requested: String,
        /// What the endpoint speaks instead.
        supported: &'static [&'static str],
    },
    /// An `Mcp-Method` or `Mcp-Name` header that says something else than the body.
    #[error("header mismatch: {reason}")]
    HeaderMismatch {
        /// The request id, if it could be read.
        id: Value,
        /// Which header, and what each side said.
        reason: String,
    },
    /// The body is not JSON, or has duplicate keys.
    #[error("parse error: {0}")]
    Parse(String),
    /// The body is JSON but not a valid message.
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// The request id, if it could be read.
        id: Value,
        /// What is wrong.
        reason: String,
    },
    /// A JSON-RPC batch outside protocol revision 2025-03-26.
    #[error("batches exist only in protocol revision 2025-03-26")]
    BatchUnsupported,
    /// A batch with at least one refused element: nothing of it is forwarded. The answer is a
    /// batch of errors, one per request, in order.
    #[error("a batch element was refused")]
    BatchRefused(Vec<GatewayError>),
    /// A request of a refused batch that was itself allowed, but not forwarded.
    #[error("not forwarded: another element of this batch was refused")]
    BatchSibling {
        /// The request id.
        id: Value,
    },
    /// Body above the limit.
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A compressed request body, which cannot be judged.
    #[error("compressed request bodies are not accepted")]
    Compressed,
    /// No route.
    #[error("no MCP endpoint at this path")]
    NotFound,
    /// An MCP session id that is unknown, ended, or not this principal's.
    #[error("session not found")]
    UnknownSession,
    /// An HTTP method the endpoint does not serve.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The upstream failed, or answered what the gateway cannot pass on.
    #[error("upstream failed: {detail}")]
    Upstream {
        /// The request id.
        id: Value,
        /// What happened, for the log (the agent is told only that the upstream failed).
        detail: String,
    },
    /// A request on a fleet endpoint, in a revision with sessions, without one.
    #[error("no session: send initialize first, then its Mcp-Session-Id")]
    SessionRequired {
        /// The request id.
        id: Value,
    },
    /// A method a fleet endpoint does not serve.
    #[error("method not found: {method}")]
    MethodNotFound {
        /// The request id.
        id: Value,
        /// The method.
        method: String,
        /// Whether the request was of revision 2026-07-28, where this is an HTTP 404.
        stateless: bool,
    },
    /// A tool name on a fleet endpoint that names no member's tool.
    #[error("Unknown tool: {name}")]
    UnknownTool {
        /// The request id.
        id: Value,
        /// The name asked for.
        name: String,
    },
    /// A response could not be filtered, so it was withheld.
    #[error("the upstream response could not be filtered")]
    FilterFailed {
        /// The request id.
        id: Value,
    },
}

/// A call waiting for a person's approval.
#[derive(Debug)]
pub struct ApprovalWait {
    /// The request id.
    pub id: Value,
    /// The full tool name, `upstream/tool`.
    pub tool: String,
    /// The approval request.
    pub approval: String,
    /// Its page.
    pub url: String,
    /// When the request lapses (Unix seconds).
    pub expires_at: i64,
    /// How the agent's client is told.
    pub answer: ApprovalAnswer,
}

/// How a call waiting for approval is answered, by what the client declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalAnswer {
    /// The gateway's own error, −31011, with `data.approval_url`.
    Plain,
    /// `URLElicitationRequiredError` (−32042): a session client that declared
    /// `elicitation.url` at `initialize` (2025-11-25).
    UrlElicitation,
    /// An `InputRequiredResult` asking for a URL elicitation, with a `requestState` the
    /// retry echoes (2026-07-28, multi round-trip requests): a result, not an error.
    InputRequired,
}

impl ApprovalWait {
    /// The URL elicitation that sends the user to the approval page.
    fn elicitation(&self) -> Value {
        json!({
            "mode": "url",
            "elicitationId": self.approval,
            "url": self.url,
            "message": format!("Approve this call of {} before the agent makes it.", self.tool),
        })
    }
}

/// A refused `tools/call`: which request, which tool, which rule.
#[derive(Debug)]
pub struct Denial {
    /// The request id.
    pub id: Value,
    /// The full tool name, `upstream/tool`.
    pub tool: String,
    /// The rule that failed.
    pub reason: DenyReason,
}

impl GatewayError {
    /// A denial of a `tools/call`.
    pub fn denied(id: Value, tool: String, reason: DenyReason) -> Self {
        GatewayError::Denied(Box::new(Denial { id, tool, reason }))
    }

    /// An invalid request with a reason.
    pub fn invalid(id: Value, reason: &str) -> Self {
        GatewayError::InvalidRequest {
            id,
            reason: reason.to_owned(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::MissingToken
            | GatewayError::InvalidToken(_)
            | GatewayError::UseDpopNonce { .. }
            | GatewayError::Revoked { .. } => 401,
            GatewayError::RevocationStale
            | GatewayError::BodyBufferFull
            | GatewayError::RateUnavailable { .. }
            | GatewayError::SessionUnavailable
            | GatewayError::ProofUnavailable
            | GatewayError::LinkUnavailable { .. }
            | GatewayError::ApprovalUnavailable { .. } => 503,
            GatewayError::LinkRequired { id, .. } if id.is_null() => 403,
            GatewayError::LinkRequired { .. } => 200,
            GatewayError::Forbidden(_) | GatewayError::InsufficientScope { .. } => 403,
            GatewayError::UnsupportedProtocolVersion { .. }
            | GatewayError::HeaderMismatch { .. } => 400,
            GatewayError::Denied(_)
            | GatewayError::Frozen { .. }
            | GatewayError::ToolChanged { .. }
            | GatewayError::ApprovalRequired(_)
            | GatewayError::ApprovalDenied { .. }
            | GatewayError::ApprovalVoid { .. }
            | GatewayError::BatchRefused(_)
            | GatewayError::BatchSibling { .. } => 200,
            GatewayError::Parse(_)
            | GatewayError::InvalidRequest { .. }
            | GatewayError::BatchUnsupported => 400,
            GatewayError::TooLarge { .. } => 413,
            GatewayError::Compressed => 415,
            GatewayError::NotFound | GatewayError::UnknownSession => 404,
            GatewayError::MethodNotAllowed => 405,
            GatewayError::Upstream { .. } => 502,
            GatewayError::FilterFailed { .. } => 500,
            GatewayError::SessionRequired { .. } => 400,
            GatewayError::MethodNotFound { stateless, .. } => {
                if *stateless {
                    404
                } else {
                    200
                }
            }
            GatewayError::UnknownTool { .. } => 200,
        }
    }

    /// The JSON-RPC error code.
    pub fn code(&self) -> i64 {
        match self {
            GatewayError::MissingToken
            | GatewayError::InvalidToken(_)
            | GatewayError::UseDpopNonce { .. } => UNAUTHENTICATED,
            GatewayError::Revoked { .. } => REVOKED,
            GatewayError::RevocationStale => STALE,
            GatewayError::BodyBufferFull => BUSY,
            GatewayError::RateUnavailable { .. }
            | GatewayError::SessionUnavailable
            | GatewayError::ProofUnavailable => STORE_UNAVAILABLE,
            GatewayError::Forbidden(_) => FORBIDDEN,
            GatewayError::InsufficientScope { .. } => INSUFFICIENT_SCOPE,
            GatewayError::UnsupportedProtocolVersion { .. } => UNSUPPORTED_VERSION,
            GatewayError::HeaderMismatch { .. } => HEADER_MISMATCH,
            GatewayError::Denied(_)
            | GatewayError::Frozen { .. }
            | GatewayError::ToolChanged { .. }
            | GatewayError::ApprovalDenied { .. }
            | GatewayError::ApprovalVoid { .. }
            | GatewayError::BatchRefused(_)
            | GatewayError::BatchSibling { .. } => POLICY_DENIED,
            GatewayError::ApprovalRequired(wait)
                if wait.answer == ApprovalAnswer::UrlElicitation =>
            {
                URL_ELICITATION_REQUIRED
            }
            GatewayError::ApprovalRequired(_) => APPROVAL_REQUIRED,
            GatewayError::ApprovalUnavailable { .. } | GatewayError::LinkUnavailable { .. } => {
                APPROVAL_UNAVAILABLE
            }
            GatewayError::LinkRequired { elicit: true, .. } => URL_ELICITATION_REQUIRED,
            GatewayError::LinkRequired { .. } => LINK_REQUIRED,
            GatewayError::Parse(_) => -32700,
            GatewayError::InvalidRequest { .. }
            | GatewayError::BatchUnsupported
            | GatewayError::Compressed
            | GatewayError::MethodNotAllowed => -32600,
            GatewayError::TooLarge { .. } => TOO_LARGE,
            GatewayError::NotFound | GatewayError::UnknownSession => NOT_FOUND,
            GatewayError::Upstream { .. } => UPSTREAM_FAILED,
            GatewayError::FilterFailed { .. } => INTERNAL,
            GatewayError::SessionRequired { .. } => -32600,
            GatewayError::MethodNotFound { .. } => -32601,
            GatewayError::UnknownTool { .. } => -32602,
        }
    }

    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            GatewayError::MissingToken => "missing_token",
            GatewayError::InvalidToken(_) => "invalid_token",
            GatewayError::UseDpopNonce { .. } => "use_dpop_nonce",
            GatewayError::Revoked { .. } => "revoked",
            GatewayError::RevocationStale => "revocation_stale",
            GatewayError::BodyBufferFull => "body_buffer_full",
            GatewayError::RateUnavailable { .. } => "rate_unavailable",
            GatewayError::SessionUnavailable => "session_unavailable",
            GatewayError::ProofUnavailable => "proof_unavailable",
            GatewayError::Forbidden(_) => "forbidden",
            GatewayError::InsufficientScope { .. } => "insufficient_scope",
            GatewayError::UnsupportedProtocolVersion { .. } => "protocol_version",
            GatewayError::HeaderMismatch { .. } => "header_mismatch",
            GatewayError::Denied(_) => "denied",
            GatewayError::Frozen { .. } => "frozen",
            GatewayError::ToolChanged { .. } => "tool_changed",
            GatewayError::ApprovalRequired(_) => "approval_required",
            GatewayError::ApprovalDenied { .. } => "approval_denied",
            GatewayError::ApprovalVoid { .. } => "approval_void",
            GatewayError::ApprovalUnavailable { .. } => "approval_unavailable",
            GatewayError::LinkRequired { .. } => "link_required",
            GatewayError::LinkUnavailable { .. } => "link_unavailable",
            GatewayError::Parse(_) => "parse_error",
            GatewayError::InvalidRequest { .. } => "invalid_request",
            GatewayError::BatchUnsupported => "batch",
            GatewayError::BatchRefused(_) => "batch_refused",
            GatewayError::BatchSibling { .. } => "batch_sibling",
            GatewayError::TooLarge { .. } => "too_large",
            GatewayError::Compressed => "compressed",
            GatewayError::NotFound => "not_found",
            GatewayError::UnknownSession => "unknown_session",
            GatewayError::MethodNotAllowed => "method_not_allowed",
            GatewayError::Upstream { .. } => "upstream_failed",
            GatewayError::FilterFailed { .. } => "filter_failed",
            GatewayError::SessionRequired { .. } => "session_required",
            GatewayError::MethodNotFound { .. } => "method_not_found",
            GatewayError::UnknownTool { .. } => "unknown_tool",
        }
    }

    fn id(&self) -> Value {
        match self {
            GatewayError::Denied(denial) => denial.id.clone(),
            GatewayError::ApprovalRequired(wait) => wait.id.clone(),
            GatewayError::ApprovalDenied { id, .. }
            | GatewayError::ApprovalVoid { id, .. }
            | GatewayError::ApprovalUnavailable { id, .. }
            | GatewayError::LinkRequired { id, .. }
            | GatewayError::LinkUnavailable { id }
            | GatewayError::InsufficientScope { id, .. } => id.clone(),
            GatewayError::Revoked { id, .. }
            | GatewayError::Frozen { id, .. }
            | GatewayError::ToolChanged { id, .. }
            | GatewayError::RateUnavailable { id, .. }
            | GatewayError::BatchSibling { id } => id.clone(),
            GatewayError::InvalidRequest { id, .. }
            | GatewayError::HeaderMismatch { id, .. }
            | GatewayError::UnsupportedProtocolVersion { id, .. }
            | GatewayError::FilterFailed { id }
            | GatewayError::SessionRequired { id }
            | GatewayError::MethodNotFound { id, .. }
            | GatewayError::Upstream { id, .. }
            | GatewayError::UnknownTool { id, .. } => id.clone(),
            _ => Value::Null,
        }
    }

    fn data(&self) -> Option<Value> {
        match self {
            GatewayError::Denied(denial) => {
                let Denial { tool, reason, .. } = &**denial;
                let mut data =
                    json!({"reason": reason.code(), "tool": tool, "detail": reason.to_string()});
                if let Some(pointer) = reason.pointer() {
                    data["pointer"] = json!(pointer);
                }
                Some(data)
            }
            GatewayError::InvalidToken(e) => Some(json!({"reason": e.code()})),
            GatewayError::UnsupportedProtocolVersion {
                requested,
                supported,
                ..
            } => Some(json!({"supported": supported, "requested": requested})),
            GatewayError::Frozen { tool, pattern, .. } => {
                Some(json!({"reason": "change_freeze", "tool": tool, "pattern": pattern}))
            }
            GatewayError::Revoked { seq, .. } => {
                Some(json!({"reason": "revoked", "revocation": seq}))
            }
            GatewayError::ToolChanged { tool, .. } => {
                Some(json!({"reason": "tool_definition_changed", "tool": tool}))
            }
            GatewayError::BatchSibling { .. } => Some(json!({"reason": "batch_refused"})),
            GatewayError::RateUnavailable { tool, .. } => {
                Some(json!({"reason": "rate_unavailable", "tool": tool}))
            }
            GatewayError::SessionUnavailable => Some(json!({"reason": "session_unavailable"})),
            GatewayError::BodyBufferFull => Some(json!({"reason": "body_buffer_full"})),
            GatewayError::ApprovalRequired(wait) => {
                let mut data = json!({
                    "reason": "approval_required", "tool": wait.tool,
                    "approval_id": wait.approval, "approval_url": wait.url,
                    "expires_at": wait.expires_at,
                });
                if wait.answer == ApprovalAnswer::UrlElicitation {
                    data["elicitations"] = json!([wait.elicitation()]);
                }
                Some(data)
            }
            GatewayError::ApprovalDenied { tool, approval, .. } => {
                Some(json!({"reason": "approval_denied", "tool": tool, "approval_id": approval}))
            }
            GatewayError::ApprovalVoid { tool, .. } => {
                Some(json!({"reason": "approval_void", "tool": tool}))
            }
            GatewayError::InsufficientScope { tool, scope, .. } => {
                Some(json!({"reason": "insufficient_scope", "tool": tool, "scope": scope}))
            }
            GatewayError::ApprovalUnavailable { tool, .. } => {
                Some(json!({"reason": "approval_unavailable", "tool": tool}))
            }
            GatewayError::ProofUnavailable => Some(json!({"reason": "proof_unavailable"})),
            GatewayError::LinkRequired { url, elicit, .. } => {
                let mut data = json!({"reason": "link_required", "link_url": url});
                if *elicit {
                    data["elicitations"] = json!([{
                        "mode": "url",
                        "elicitationId": url,
                        "url": url,
                        "message": "Link your account at this upstream: the agent's calls there \
                                    will go as you.",
                    }]);
                }
                Some(data)
            }
            GatewayError::LinkUnavailable { .. } => Some(json!({"reason": "link_unavailable"})),
            GatewayError::UseDpopNonce { .. } => Some(json!({"reason": "use_dpop_nonce"})),
            _ => None,
        }
    }

    /// The `WWW-Authenticate` challenge, for 401s (RFC 6750 §3), pointing MCP clients at the
    /// protected resource's metadata (RFC 9728 §5.1). A refusal about proof of possession is
    /// a `DPoP` challenge naming the algorithms proofs may use (RFC 9449 §7.1); a tool outside
    /// the grant where more consent may be asked for, a 403 `insufficient_scope` naming the
    /// scope to ask for (RFC 6750 §3.1, MCP 2025-11-25 scope step-up).
    pub fn challenge(&self, resource_metadata: Option<&str>) -> Option<String> {
        if let GatewayError::InsufficientScope { scope, .. } = self {
            let mut challenge = format!(
                r#"Bearer error="insufficient_scope", scope="{scope}", error_description="the tool is not granted""#
            );
            if let Some(url) = resource_metadata {
                challenge.push_str(&format!(r#", resource_metadata="{url}""#));
            }
            return Some(challenge);
        }
        let error = match self {
            GatewayError::MissingToken => None,
            GatewayError::InvalidToken(e) => Some(e.code()),
            GatewayError::Revoked { .. } => Some("revoked"),
            GatewayError::UseDpopNonce { .. } => Some("use_dpop_nonce"),
            _ => return None,
        };
        let dpop_error = match self {
            GatewayError::UseDpopNonce { .. } => Some("use_dpop_nonce"),
            GatewayError::InvalidToken(
                VerifyError::ProofRequired | VerifyError::NotBound | VerifyError::Proof(_),
            ) => Some("invalid_dpop_proof"),
            _ => None,
        };
        if let (Some(dpop_error), Some(description)) = (dpop_error, error) {
            let algs: Vec<&str> = portcullis_policy::dpop::ALGORITHMS
                .iter()
                .map(|a| a.as_str())
                .collect();
            return Some(format!(
                r#"DPoP algs="{}", error="{dpop_error}", error_description="{description}""#,
                algs.join(" "),
            ));
        }
        let mut challenge = r#"Bearer realm="portcullis""#.to_owned();
        if let Some(url) = resource_metadata {
            challenge.push_str(&format!(r#", resource_metadata="{url}""#));
        }
        if let Some(description) = error {
            challenge.push_str(&format!(
                r#", error="invalid_token", error_description="{description}""#
            ));
        }
        Some(challenge)
    }

    /// The `DPoP-Nonce` to send with the refusal, when the agent must use a new nonce.
    pub fn dpop_nonce(&self) -> Option<&str> {
        match self {
            GatewayError::UseDpopNonce { nonce } => Some(nonce),
            _ => None,
        }
    }

    /// The `Retry-After` of a refusal that may succeed shortly, in seconds.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            GatewayError::BodyBufferFull => Some(1),
            _ => None,
        }
    }

    /// The JSON-RPC error response body; for a call waiting for approval in 2026-07-28, the
    /// `InputRequiredResult` that asks the client to send its user to the approval page.
    pub fn body(&self) -> Vec<u8> {
        let written = match self {
            GatewayError::ApprovalRequired(wait)
                if wait.answer == ApprovalAnswer::InputRequired =>
            {
                serde_json::to_vec(&json!({
                    "jsonrpc": "2.0",
                    "id": wait.id,
                    "result": {
                        "resultType": "input_required",
                        "inputRequests": {
                            APPROVAL_INPUT_KEY: {
                                "method": "elicitation/create",
                                "params": wait.elicitation(),
                            }
                        },
                        "requestState":
                            format!("{}{}", GATEWAY_STATE_PREFIX, wait.approval),
                    }
                }))
            }
            GatewayError::BatchRefused(errors) => {
                let responses: Vec<ErrorResponse> = errors.iter().map(Self::response).collect();
                serde_json::to_vec(&responses)
            }
            other => serde_json::to_vec(&other.response()),
        };
        written.expect("an error response serialises")
    }

    fn response(&self) -> ErrorResponse {
        let message = match self {
            // Internal detail stays in the log.
            GatewayError::Upstream { .. } => "upstream failed".to_owned(),
            other => other.to_string(),
        };
        ErrorResponse {
            jsonrpc: "2.0",
            id: self.id(),
            error: ErrorObject {
                code: self.code(),
                message,
                data: self.data(),
            },
        }
    }
}

/// A JSON-RPC error response, serialised from its parts rather than through a `Value` tree:
/// a kill writes one as the final event of every stream it ends, a thousand at once.
#[derive(Serialize)]
struct ErrorResponse {
    jsonrpc: &'static str,
    id: Value,
    error: ErrorObject,
}

#[derive(Serialize)]
struct ErrorObject {
    code: i64,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_person_without_a_linked_account_is_sent_to_link_it() {
        let url = "https://issuer.example/link?resource=x".to_owned();
        let plain = GatewayError::LinkRequired {
            id: json!(3),
            url: url.clone(),
            elicit: false,
        };
        let body: Value = serde_json::from_slice(&plain.body()).unwrap();
        assert_eq!((plain.status(), plain.code()), (200, LINK_REQUIRED));
        assert_eq!(body["id"], 3);
        assert_eq!(body["error"]["data"]["link_url"], url.as_str());
        assert!(body["error"]["data"].get("elicitations").is_none());

        // A client that declared URL elicitation gets MCP's own error, with the link in it.
        let elicit = GatewayError::LinkRequired {
            id: json!(3),
            url: url.clone(),
            elicit: true,
        };
        let body: Value = serde_json::from_slice(&elicit.body()).unwrap();
        assert_eq!(elicit.code(), URL_ELICITATION_REQUIRED);
        let elicitation = &body["error"]["data"]["elicitations"][0];
        assert_eq!(
            (&elicitation["mode"], &elicitation["url"]),
            (&json!("url"), &json!(url))
        );

        // Without a JSON-RPC request to answer (a GET stream) the refusal is an HTTP one.
        let stream = GatewayError::LinkRequired {
            id: Value::Null,
            url,
            elicit: false,
        };
        assert_eq!(stream.status(), 403);
    }
}
