//! What one request carries from phase to phase.
//!
//! Pingora makes the context before anything is known, so it starts empty; admission then
//! fills it in one step. `route` is set once the path names an upstream or a fleet (it shapes
//! error answers and metrics), and `forward` only when the request has been authenticated and
//! judged: every phase after `request_filter` that talks to the upstream takes a [`Forward`],
//! which only admission can make, so none of them can run on a request that was not judged.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use portcullis_policy::VerifiedToken;
use serde_json::Value;

use super::judge::Judged;
use super::request::ReadBody;
use crate::body_buffer::HeldBytes;
use crate::drain::InFlightGuard;
use crate::fleet::Fleet;
use crate::jsonrpc::Message;
use crate::kill::LiveGuard;
use crate::secret::Secret;
use crate::session::ClientAbilities;
use crate::sse::SseRewriter;
use crate::telemetry::{self, Step};
use crate::upstream::Upstream;

/// Where a path sends a request.
#[derive(Debug, Clone)]
pub(super) enum Route {
    /// `/mcp/{upstream}`.
    Upstream(Arc<Upstream>),
    /// `/mcp/{fleet}`.
    Fleet(Arc<Fleet>),
}

impl Route {
    /// The name in the path.
    pub(super) fn name(&self) -> &str {
        match self {
            Route::Upstream(upstream) => &upstream.name,
            Route::Fleet(fleet) => &fleet.name,
        }
    }

    /// Whether only DPoP-bound tokens are accepted here: the upstream's setting, or for a
    /// fleet, the gateway's.
    pub(super) fn require_dpop(&self, settings: &crate::config::Settings) -> bool {
        match self {
            Route::Upstream(upstream) => upstream.require_dpop,
            Route::Fleet(_) => settings.require_dpop,
        }
    }

    /// The resource a token must name in `aud`.
    pub(super) fn resource(&self) -> &str {
        match self {
            Route::Upstream(upstream) => &upstream.resource,
            Route::Fleet(fleet) => &fleet.resource,
        }
    }
}

/// An MCP session: the id the agent uses and the upstream's own (`""` for a fleet member
/// that keeps none).
#[derive(Debug, Clone)]
pub(super) struct McpSession {
    pub(super) id: String,
    pub(super) upstream_id: String,
    /// What the agent's client declared when it opened the session.
    pub(super) client: ClientAbilities,
}

/// A request admitted to go upstream: authenticated, and judged.
#[derive(Debug)]
pub(super) struct Forward {
    /// Where it goes: the upstream, or for a fleet's call, the member.
    pub(super) upstream: Arc<Upstream>,
    /// The agent's verified token.
    pub(super) token: Arc<VerifiedToken>,
    /// What judging allowed.
    pub(super) judged: Judged,
    /// The MCP session it belongs to, if any.
    pub(super) session: Option<McpSession>,
    /// Set when the request is a fleet's `tools/call` (the only fleet request forwarded).
    pub(super) fleet_call: Option<FleetCall>,
    /// The body that goes upstream, and who sends it.
    pub(super) body: Outgoing,
    /// The person's own token at an upstream that takes one (`downstream_auth: oauth`).
    pub(super) person_token: Option<Secret>,
}

/// The body of an admitted request on its way upstream.
#[derive(Debug)]
pub(super) enum Outgoing {
    /// The agent's, as read: Pingora sends it from its replay buffer.
    AsSent,
    /// Another in place of the agent's (a fleet's call named for its member, a retry after
    /// approval without the gateway's own `requestState`), swapped in by
    /// `request_body_filter`.
    Replaced(Bytes),
    /// A body larger than Pingora's replay buffer: Pingora could not send it after it was
    /// read, so the gateway sends it itself ([`super::whole`]), holding its room in the
    /// body buffer until then.
    Whole {
        body: Bytes,
        /// Given back when the body is sent.
        _room: HeldBytes,
    },
}

impl Outgoing {
    /// What goes upstream for a body that was read, and replaced by `replacement` if any.
    pub(super) fn of(read: ReadBody, replacement: Option<Vec<u8>>) -> Self {
        match (read.held, replacement) {
            (Some(room), replacement) => Outgoing::Whole {
                body: Bytes::from(replacement.unwrap_or(read.bytes)),
                _room: room,
            },
            (None, Some(replacement)) => Outgoing::Replaced(Bytes::from(replacement)),
            (None, None) => Outgoing::AsSent,
        }
    }

    /// The body's length when it is not the agent's as sent.
    pub(super) fn replaced_len(&self) -> Option<usize> {
        match self {
            Outgoing::AsSent => None,
            Outgoing::Replaced(body) | Outgoing::Whole { body, .. } => Some(body.len()),
        }
    }
}

impl Forward {
    /// The message the request carries, if it has a body.
    pub(super) fn message(&self) -> Option<&Message> {
        self.judged.message()
    }

    /// The JSON-RPC id of the request, `null` for anything else.
    pub(super) fn request_id(&self) -> Value {
        match self.message() {
            Some(Message::Request { id, .. }) => id.clone(),
            _ => Value::Null,
        }
    }
}

/// A fleet's `tools/call`, rewritten for its member.
#[derive(Debug)]
pub(super) struct FleetCall {
    /// The member's own tool name (for `Mcp-Name`).
    pub(super) tool: String,
}

/// How the response body is treated.
#[derive(Debug, Default)]
pub(super) enum ResponseMode {
    /// Streamed through untouched.
    #[default]
    Passthrough,
    /// A JSON list result: collected, filtered at the end.
    Json(Vec<u8>),
    /// An event stream: list results rewritten event by event.
    Sse(SseRewriter),
}

/// Per-request state.
#[derive(Debug)]
pub(crate) struct RequestCtx {
    pub(super) route: Option<Route>,
    pub(super) forward: Option<Forward>,
    pub(super) response: ResponseMode,
    pub(super) live: Option<LiveGuard>,
    /// The revocation that cut this request's upstream connection, if one did.
    pub(super) killed_by: Option<i64>,
    pub(super) outcome: &'static str,
    pub(super) started: Instant,
    /// The request's trace span, and its upstream call's once it starts (both end with the
    /// context).
    pub(super) span: tracing::Span,
    pub(super) upstream_span: Option<tracing::Span>,
    /// Counts the request as in flight until the context is dropped.
    _in_flight: InFlightGuard,
}

impl RequestCtx {
    pub(super) fn new(in_flight: InFlightGuard) -> Self {
        Self {
            _in_flight: in_flight,
            route: None,
            forward: None,
            response: ResponseMode::Passthrough,
            live: None,
            killed_by: None,
            outcome: "proxied",
            started: Instant::now(),
            span: telemetry::span(Step::Request),
            upstream_span: None,
        }
    }

    /// The admitted request; an error for a phase that runs without one, which Pingora only
    /// does after `request_filter` let the request through.
    pub(super) fn forward(&self) -> pingora::Result<&Forward> {
        self.forward.as_ref().ok_or_else(|| {
            pingora::Error::explain(pingora::ErrorType::InternalError, "request not admitted")
        })
    }

    /// The JSON-RPC id of the request, `null` when there is none.
    pub(super) fn request_id(&self) -> Value {
        self.forward
            .as_ref()
            .map_or(Value::Null, Forward::request_id)
    }

    /// The RFC 9728 metadata URL of the request's route, for a 401's challenge.
    pub(super) fn resource_metadata(&self) -> Option<String> {
        let route = self.route.as_ref()?;
        Some(crate::discovery::metadata_url(route.resource()))
    }

    /// The metrics label: the upstream the request went to, else the route, else `none`.
    pub(super) fn upstream_label(&self) -> &str {
        match (&self.forward, &self.route) {
            (Some(forward), _) => &forward.upstream.name,
            (None, Some(route)) => route.name(),
            (None, None) => "none",
        }
    }
}
