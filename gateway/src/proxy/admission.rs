//! Admission: everything that decides, in `request_filter`, whether a request may go
//! upstream. It has to happen in that phase: `request_body_filter` runs only after the
//! upstream connection is made and the request headers are sent.
//!
//! In order: the gateway's own documents are answered; the path is routed to an upstream or a
//! fleet ([`Route`]); `Host` and `Origin` are checked; the bearer token is verified for the
//! route's resource; the revision, the freshness of revocation knowledge, revocations and the
//! MCP session are checked; then a POST's message is read and judged. The outcome is a
//! [`Forward`] (authenticated and judged) or an answer; a refusal is a [`GatewayError`] the
//! agent is answered with, and nothing reaches the upstream.

use std::sync::Arc;

use http::header;
use pingora::proxy::Session;
use portcullis_policy::VerifiedToken;
use serde_json::Value;
use tracing::Instrument;

use super::authenticate::authenticate;
use super::context::{Forward, McpSession, Outgoing, RequestCtx, Route};
use super::judge::{Judge, Judged};
use super::request::{header_str, read_message, revision};
use super::respond::write_json;
use crate::clock;
use crate::decision_log::Decision;
use crate::jsonrpc::{self, Message};
use crate::jsonrpc_error::{GatewayError, SUPPORTED_PROTOCOL_VERSIONS};
use crate::routes::Routes;
use crate::secret::Secret;
use crate::session::{Principal, SessionError};
use crate::state::GatewayState;
use crate::telemetry::{self, Step};
use crate::upstream::client::{MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::upstream::person_token::PersonTokenError;
use crate::upstream::{DownstreamAuth, Upstream};

/// How admission ended, when the request is not refused.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "made once per request and moved straight into its context: a box would only add \
              an allocation"
)]
pub(super) enum Admission {
    /// Send it upstream.
    Forward(Forward),
    /// The gateway answered by itself; the outcome labels it in metrics.
    Answered(&'static str),
}

/// Why admission stopped short of forwarding.
#[derive(Debug)]
pub(super) enum Refusal {
    /// The request is refused with this error.
    Refused(GatewayError),
    /// Reading the request or writing an answer failed.
    Transport(Box<pingora::Error>),
}

impl From<GatewayError> for Refusal {
    fn from(error: GatewayError) -> Self {
        Refusal::Refused(error)
    }
}

impl From<Box<pingora::Error>> for Refusal {
    fn from(error: Box<pingora::Error>) -> Self {
        Refusal::Transport(error)
    }
}

/// What every admitted request has been through: its route, its token, and its session.
#[derive(Debug)]
pub(super) struct Authenticated {
    pub(super) token: Arc<VerifiedToken>,
    pub(super) session: Option<McpSession>,
    /// An `MCP-Protocol-Version` the gateway does not speak, answered once the request's id
    /// is known.
    pub(super) unsupported_version: Option<String>,
}

/// Admits the request, or answers it. `ctx.route` is set as soon as the path is routed.
pub(super) async fn admit(
    state: &GatewayState,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<Admission, Refusal> {
    // One snapshot of the routes for the whole request, whatever a reload does meanwhile.
    let routes = state.routes.load();
    if let Some(outcome) = serve_document(state, &routes, session).await? {
        return Ok(Admission::Answered(outcome));
    }
    let route = route(&routes, session)?;
    ctx.route = Some(route.clone());
    check_host_and_method(&routes, session)?;
    let authenticated = authenticate_request(state, session, &route).await?;
    match route {
        Route::Upstream(upstream) => admit_upstream(state, session, upstream, authenticated).await,
        Route::Fleet(fleet) => super::fleet::admit(state, session, &fleet, authenticated).await,
    }
}

/// Serves the gateway's JWKS and the RFC 9728 metadata of its routes.
async fn serve_document(
    state: &GatewayState,
    routes: &Routes,
    session: &mut Session,
) -> Result<Option<&'static str>, Refusal> {
    let req = session.req_header();
    if req.method != http::Method::GET {
        return Ok(None);
    }
    let path = req.uri.path();
    let (body, max_age, outcome) = if path == "/.well-known/jwks.json" {
        (state.jwks_document.to_vec(), 60, "jwks")
    } else if let Some(document) = routes.discovery.document(path) {
        (document.to_vec(), 300, "metadata")
    } else {
        return Ok(None);
    };
    let cache = [(header::CACHE_CONTROL, format!("public, max-age={max_age}"))];
    write_json(session, 200, body, &cache).await?;
    Ok(Some(outcome))
}

/// The route of `/mcp/{name}`.
fn route(routes: &Routes, session: &Session) -> Result<Route, GatewayError> {
    let name = session
        .req_header()
        .uri
        .path()
        .strip_prefix("/mcp/")
        .unwrap_or_default();
    match (routes.upstream(name), routes.fleet(name)) {
        (Some(upstream), _) => Ok(Route::Upstream(upstream.clone())),
        (None, Some(fleet)) => Ok(Route::Fleet(fleet.clone())),
        (None, None) => Err(GatewayError::NotFound),
    }
}

/// Refuses a `Host` or `Origin` the gateway does not answer to (DNS rebinding) and methods
/// MCP does not use.
fn check_host_and_method(routes: &Routes, session: &Session) -> Result<(), GatewayError> {
    let req = session.req_header();
    let host = header_str(req, header::HOST).or_else(|| req.uri.authority().map(|a| a.as_str()));
    routes
        .host_policy
        .check(host, header_str(req, header::ORIGIN))
        .map_err(GatewayError::Forbidden)?;
    if !matches!(
        req.method,
        http::Method::POST | http::Method::GET | http::Method::DELETE
    ) {
        return Err(GatewayError::MethodNotAllowed);
    }
    Ok(())
}

/// Verifies the token for the route, then refuses what revocation knowledge (or its age)
/// forbids, and resolves the agent's MCP session, which must be the token's principal's.
async fn authenticate_request(
    state: &GatewayState,
    session: &Session,
    route: &Route,
) -> Result<Authenticated, GatewayError> {
    let req = session.req_header();
    let require_dpop = route.require_dpop(&state.settings);
    let token = authenticate(state, req, route.resource(), require_dpop)
        .instrument(telemetry::span(Step::Verify))
        .await?;
    // Answered with the request's id where there is one (a POST), so after parsing.
    let unsupported_version = header_str(req, MCP_PROTOCOL_VERSION)
        .filter(|v| !SUPPORTED_PROTOCOL_VERSIONS.contains(v))
        .map(str::to_owned);
    if req.method != http::Method::POST
        && let Some(requested) = unsupported_version
    {
        let id = Value::Null;
        return Err(GatewayError::UnsupportedProtocolVersion {
            id,
            requested,
            supported: &SUPPORTED_PROTOCOL_VERSIONS,
        });
    }
    let revocations = &state.revocations;
    if revocations.refuses_for_staleness(clock::now()) {
        return Err(GatewayError::RevocationStale);
    }
    let session_id = header_str(req, MCP_SESSION_ID);
    if let Some(entry) = revocations.covering(&token, session_id) {
        // Shipped like any decision, so the console shows the refusal of revoked authority.
        if let Some(log) = &state.decisions {
            let method = req.method.as_str();
            let refused = ("deny", "revoked");
            log.record(Decision::under(
                token.claims(),
                route.name(),
                method,
                "",
                refused,
            ));
        }
        return Err(GatewayError::Revoked {
            id: Value::Null,
            seq: entry.seq,
        });
    }
    let session = match session_id {
        Some(id) => {
            let principal = Principal::of(token.claims());
            match state.sessions.resolve(id, route.name(), &principal).await {
                Ok(Some(resolved)) => Some(McpSession {
                    id: id.to_owned(),
                    upstream_id: resolved.upstream_id,
                    client: resolved.client,
                }),
                Ok(None) => return Err(GatewayError::UnknownSession),
                Err(SessionError::Unavailable(e)) => {
                    tracing::warn!("refusing a session lookup in strict mode: {e}");
                    return Err(GatewayError::SessionUnavailable);
                }
            }
        }
        None => None,
    };
    Ok(Authenticated {
        token,
        session,
        unsupported_version,
    })
}

/// Admits a request to an upstream: a `GET` or `DELETE` as it is, a POST once its message is
/// judged.
async fn admit_upstream(
    state: &GatewayState,
    session: &mut Session,
    upstream: Arc<Upstream>,
    authenticated: Authenticated,
) -> Result<Admission, Refusal> {
    let token = authenticated.token;
    let (judged, body) = match Judged::bodiless(&session.req_header().method) {
        Some(judged) => (judged, Outgoing::AsSent),
        None => {
            let limits = (state.settings.max_body_bytes, &state.body_buffer);
            let unsupported = authenticated.unsupported_version;
            let (body, message) = read_message(session, limits, unsupported).await?;
            // 2025-03-26 is the only revision with batches.
            if let Message::Batch(_) = &message
                && revision(session.req_header()) != "2025-03-26"
            {
                return Err(GatewayError::BatchUnsupported.into());
            }
            let judge = Judge {
                state,
                upstream: &upstream,
                token: &token,
                client: authenticated
                    .session
                    .as_ref()
                    .map(|session| session.client)
                    .unwrap_or_default(),
            };
            let judged = judge
                .message(message)
                .instrument(telemetry::span(Step::Judge))
                .await?;
            let mut rewritten = None;
            if let Some(Message::Request { id, call, .. }) = judged.message() {
                let trace = telemetry::propagation_headers(&tracing::Span::current());
                let rewrite = jsonrpc::Rewrite {
                    // A retry after approval loses the gateway's own `requestState`.
                    strip_gateway_state: call.as_ref().is_some_and(|c| c.gateway_state),
                    trace: &trace,
                    // Without a trace in its headers, the agent's own in `_meta` goes on.
                    keep_trace: !session.req_header().headers.contains_key("traceparent"),
                    ..jsonrpc::Rewrite::default()
                };
                if rewrite.changes() {
                    let body = jsonrpc::rewrite(&body.bytes, &rewrite)
                        .map_err(|e| GatewayError::invalid(id.clone(), &e))?;
                    rewritten = Some(body);
                }
            }
            (judged, Outgoing::of(body, rewritten))
        }
    };
    let elicit = authenticated
        .session
        .as_ref()
        .is_some_and(|session| session.client.url_elicitation);
    let id = judged.message().map_or(Value::Null, Message::id);
    let person_token = person_token(state, &upstream, &token, id, elicit).await?;
    Ok(Admission::Forward(Forward {
        upstream,
        token,
        judged,
        session: authenticated.session,
        fleet_call: None,
        body,
        person_token,
    }))
}

/// The person's own token at an upstream that takes one (`downstream_auth: oauth`), asked of
/// the issuer once the request is judged; a person who has not linked an account there is
/// sent to link it (by URL elicitation, where their client declared it).
async fn person_token(
    state: &GatewayState,
    upstream: &Upstream,
    token: &VerifiedToken,
    id: Value,
    elicit: bool,
) -> Result<Option<Secret>, GatewayError> {
    if upstream.auth != DownstreamAuth::OAuth {
        return Ok(None);
    }
    let claims = token.claims();
    let people = &state.credentials.people;
    match people
        .token(
            &claims.subject,
            &upstream.resource,
            claims.grant_id.as_deref(),
        )
        .await
    {
        Ok(token) => Ok(Some(token)),
        Err(PersonTokenError::NotLinked { link_url }) => Err(GatewayError::LinkRequired {
            id,
            url: link_url,
            elicit,
        }),
        Err(e @ PersonTokenError::Unavailable(_)) => {
            tracing::warn!(upstream = %upstream.name, "{e}");
            Err(GatewayError::LinkUnavailable { id })
        }
    }
}
