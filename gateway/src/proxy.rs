//! The Pingora proxy: where every MCP request is authenticated, judged and rewritten.
//!
//! Per request, in Pingora's phase order:
//!
//! 1. [`request_filter`](ProxyHttp::request_filter) routes `/mcp/{upstream}`, verifies the bearer
//!    token offline, reads and parses the JSON-RPC body once (with a size cap, duplicate keys
//!    refused), and for `tools/call` runs [`portcullis_policy::authorize`]. A refusal is
//!    written here and the request ends: nothing reaches the upstream. This has to happen in
//!    this phase: `request_body_filter` runs only after the upstream connection is made and
//!    the request headers are sent.
//! 2. [`upstream_request_filter`](ProxyHttp::upstream_request_filter) rewrites the request for
//!    the upstream: its path and `Host`, the agent's credentials and cookies removed, and a
//!    freshly minted downstream token in their place. Pingora replays the body we buffered.
//! 3. [`response_filter`](ProxyHttp::response_filter) and
//!    [`response_body_filter`](ProxyHttp::response_body_filter) filter `tools/list` results,
//!    in JSON bodies (collected, then rewritten) and in SSE streams (rewritten event by event,
//!    never buffered whole).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};
use portcullis_policy as policy;
use portcullis_policy::{
    Action, ActorRule, Decision, DenyReason, Expected, Permit, VerifiedToken, VerifyError,
    authorize,
};
use serde_json::Value;

use crate::config::{Config, DownstreamAuth, Upstream};
use crate::downstream_token::DownstreamMinter;
use crate::fleet::Fleet;
use crate::issuer_keys::IssuerKeys;
use crate::jsonrpc::{self, Message};
use crate::jsonrpc_error::GatewayError;
use crate::revocation::{LiveGuard, LiveWork, Revocations, UpstreamWork};
use crate::session::Principal;
use crate::sse::SseRewriter;
use crate::tools_list::ListKind;
use crate::upstream_client::{MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::{metrics, tools_list};

const MCP_METHOD: &str = "mcp-method";
const MCP_NAME: &str = "mcp-name";

/// The largest JSON `tools/list` response collected for filtering.
const MAX_JSON_RESPONSE: usize = 16 * 1024 * 1024;

/// What the proxy shares across requests.
#[derive(Debug)]
pub struct GatewayState {
    /// Validated configuration.
    pub config: Config,
    /// The issuer's keys.
    pub keys: Arc<IssuerKeys>,
    /// Revocation knowledge and live work.
    pub revocations: Arc<Revocations>,
    /// Local kills and change freezes.
    pub controls: Arc<crate::controls::Controls>,
    /// Upstreams, their discovery documents and accepted `Host`/`Origin` values (reloadable).
    pub routes: arc_swap::ArcSwap<crate::routes::Routes>,
    /// MCP sessions: gateway ids, the upstream ids behind them, and their owners.
    pub sessions: crate::session::Sessions,
    /// Tokens already verified.
    pub token_cache: crate::token_cache::TokenCache,
    /// Calls per hour, per grant.
    pub rate_limiter: crate::rate_limit::RateLimiter,
    /// For requests the gateway makes itself (cancellations).
    pub http: reqwest::Client,
    /// The downstream token signer.
    pub minter: DownstreamMinter,
    /// The gateway's JWKS document, served at `/.well-known/jwks.json`.
    pub jwks_document: Bytes,
    /// Pinned tool definitions, if pinning is on.
    pub pins: Option<crate::pins::Pins>,
    /// Where allow and deny decisions are logged, if configured.
    pub decisions: Option<crate::decision_log::DecisionLog>,
    /// Writes and ships the decision log (run by a background service).
    pub decision_writer: Option<crate::decision_log::DecisionWriter>,
}

/// The proxy logic.
#[derive(Debug)]
pub struct Gateway {
    state: Arc<GatewayState>,
}

impl Gateway {
    /// A proxy over shared state.
    pub fn new(state: Arc<GatewayState>) -> Self {
        Self { state }
    }
}

/// How the response body is treated.
#[derive(Debug, Default)]
enum ResponseMode {
    /// Streamed through untouched.
    #[default]
    Passthrough,
    /// A JSON `tools/list` result: collected, filtered at the end.
    Json(Vec<u8>),
    /// An event stream: `tools/list` results rewritten event by event.
    Sse(SseRewriter),
}

/// Per-request state.
#[derive(Debug)]
pub struct RequestCtx {
    upstream: Option<Arc<Upstream>>,
    /// The fleet the request came to, if it came to one; `upstream` is then the member.
    fleet: Option<Arc<Fleet>>,
    /// A fleet's `tools/call` as its member gets it.
    fleet_call: Option<FleetCall>,
    token: Option<Arc<VerifiedToken>>,
    message: Option<Message>,
    permit: Option<Permit>,
    response: ResponseMode,
    live: Option<LiveGuard>,
    /// The MCP session: (the id the agent uses, the upstream's id).
    session: Option<(String, String)>,
    /// The revocation that cut this request's upstream connection, if one did.
    killed_by: Option<i64>,
    outcome: &'static str,
    started: Instant,
}

/// A `tools/call` on a fleet, rewritten for the member.
#[derive(Debug)]
struct FleetCall {
    /// The body with the member's own tool name.
    body: Bytes,
    /// The member's own tool name (for `Mcp-Name`).
    tool: String,
}

enum Admission {
    /// Forward to the upstream.
    Proxy,
    /// The gateway answered by itself (e.g. its JWKS).
    Answered,
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn header_str(req: &RequestHeader, name: impl header::AsHeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

fn bearer(req: &RequestHeader) -> Result<&str, GatewayError> {
    let mut values = req.headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(match req.headers.contains_key(header::AUTHORIZATION) {
            true => GatewayError::InvalidToken(VerifyError::Malformed),
            false => GatewayError::MissingToken,
        });
    };
    let value = value
        .to_str()
        .map_err(|_| GatewayError::InvalidToken(VerifyError::Malformed))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token),
        _ => Err(GatewayError::MissingToken),
    }
}

async fn write_json(
    session: &mut Session,
    status: u16,
    body: Vec<u8>,
    extra: &[(header::HeaderName, String)],
) -> Result<()> {
    let mut response = ResponseHeader::build(status, Some(4 + extra.len()))?;
    response.insert_header(header::CONTENT_TYPE, "application/json")?;
    response.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
    response.insert_header(header::CACHE_CONTROL, "no-store")?;
    for (name, value) in extra {
        response.insert_header(name.clone(), value.as_str())?;
    }
    session
        .write_response_header(Box::new(response), false)
        .await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await
}

/// The protocol revision a request is of: a request without `MCP-Protocol-Version` is of
/// 2025-03-26 (the header came with 2025-06-18).
fn revision(req: &RequestHeader) -> &str {
    header_str(req, MCP_PROTOCOL_VERSION).unwrap_or("2025-03-26")
}

/// The RFC 9728 metadata URL of the request's upstream, for a 401's challenge.
fn resource_metadata(ctx: &RequestCtx) -> Option<String> {
    let resource = match (&ctx.fleet, &ctx.upstream) {
        (Some(fleet), _) => &fleet.resource,
        (None, Some(upstream)) => &upstream.resource,
        (None, None) => return None,
    };
    Some(crate::discovery::metadata_url(resource))
}

async fn send_error(
    session: &mut Session,
    error: &GatewayError,
    resource_metadata: Option<&str>,
) -> Result<()> {
    let challenge: Vec<_> = error
        .challenge(resource_metadata)
        .map(|c| (header::WWW_AUTHENTICATE, c))
        .into_iter()
        .collect();
    write_json(session, error.status(), error.body(), &challenge).await
}

impl Gateway {
    async fn verify(&self, token: &str, audience: &str) -> Result<Arc<VerifiedToken>, VerifyError> {
        let now = now();
        let keys = &self.state.keys;
        let cache = &self.state.token_cache;
        if let Some(hit) = cache.get(audience, token, keys.version(), now) {
            return Ok(hit);
        }
        let expected = Expected {
            audience,
            now,
            actor: ActorRule::Required,
        };
        // Read the key-set version before the keys: a concurrent refresh can then only make the
        // cache entry look older than it is, never newer.
        let mut version = keys.version();
        let verified = match keys.verifier().verify(token, &expected) {
            Err(VerifyError::UnknownKid(_)) if keys.refresh_for_unknown_kid().await => {
                version = keys.version();
                keys.verifier().verify(token, &expected)
            }
            other => other,
        }?;
        let verified = Arc::new(verified);
        cache.insert(audience, token, verified.clone(), version, now);
        Ok(verified)
    }

    /// Everything that decides whether a request may go upstream. The outer `Result` is a
    /// transport failure; the inner one a refusal to answer with a JSON-RPC error.
    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Result<Admission, GatewayError>> {
        let req = session.req_header();
        let path = req.uri.path();
        if path == "/.well-known/jwks.json" && req.method == http::Method::GET {
            let body = self.state.jwks_document.to_vec();
            let cache = [(header::CACHE_CONTROL, "public, max-age=60".to_owned())];
            write_json(session, 200, body, &cache).await?;
            ctx.outcome = "jwks";
            return Ok(Ok(Admission::Answered));
        }
        let routes = self.state.routes.load();
        if let Some(document) = routes.discovery.document(path)
            && req.method == http::Method::GET
        {
            let body = document.to_vec();
            let cache = [(header::CACHE_CONTROL, "public, max-age=300".to_owned())];
            write_json(session, 200, body, &cache).await?;
            ctx.outcome = "metadata";
            return Ok(Ok(Admission::Answered));
        }
        let name = path.strip_prefix("/mcp/").unwrap_or_default();
        let (route, resource) = match (routes.upstream(name), routes.fleet(name)) {
            (Some(upstream), _) => {
                ctx.upstream = Some(upstream.clone());
                (&upstream.name, &upstream.resource)
            }
            (None, Some(fleet)) => {
                ctx.fleet = Some(fleet.clone());
                (&fleet.name, &fleet.resource)
            }
            (None, None) => return Ok(Err(GatewayError::NotFound)),
        };
        let host =
            header_str(req, header::HOST).or_else(|| req.uri.authority().map(|a| a.as_str()));
        if let Err(e) = routes
            .host_policy
            .check(host, header_str(req, header::ORIGIN))
        {
            return Ok(Err(GatewayError::Forbidden(e)));
        }
        let method = req.method.clone();
        if !matches!(
            method,
            http::Method::POST | http::Method::GET | http::Method::DELETE
        ) {
            return Ok(Err(GatewayError::MethodNotAllowed));
        }
        let token = match bearer(req) {
            Ok(token) => token.to_owned(),
            Err(e) => return Ok(Err(e)),
        };
        let token = match self.verify(&token, resource).await {
            Ok(token) => token,
            Err(e) => return Ok(Err(GatewayError::InvalidToken(e))),
        };
        // Answered with the request's id where there is one (a POST), so after parsing.
        let unsupported_version = header_str(session.req_header(), MCP_PROTOCOL_VERSION)
            .filter(|v| !crate::jsonrpc_error::SUPPORTED_PROTOCOL_VERSIONS.contains(v))
            .map(str::to_owned);
        if method != http::Method::POST
            && let Some(requested) = unsupported_version
        {
            let id = Value::Null;
            return Ok(Err(GatewayError::UnsupportedProtocolVersion {
                id,
                requested,
            }));
        }
        let revocations = &self.state.revocations;
        if revocations.refuses_for_staleness(now()) {
            return Ok(Err(GatewayError::RevocationStale));
        }
        let session_id = header_str(session.req_header(), MCP_SESSION_ID);
        if let Some(entry) = revocations.covering(&token, session_id) {
            return Ok(Err(GatewayError::Revoked {
                id: Value::Null,
                seq: entry.seq,
            }));
        }
        if let Some(id) = session_id {
            let principal = Principal::of(token.claims());
            match self.state.sessions.resolve(id, route, &principal) {
                Some(upstream_id) => ctx.session = Some((id.to_owned(), upstream_id)),
                None => return Ok(Err(GatewayError::UnknownSession)),
            }
        }
        let Some(upstream) = ctx.upstream.clone() else {
            let fleet = ctx.fleet.clone().expect("routed to an upstream or a fleet");
            return self
                .admit_fleet(session, ctx, &fleet, token, unsupported_version)
                .await;
        };
        if method != http::Method::POST {
            ctx.token = Some(token);
            return Ok(Ok(Admission::Proxy));
        }

        let (_, message) = match self.read_message(session, unsupported_version).await? {
            Ok(read) => read,
            Err(e) => return Ok(Err(e)),
        };
        // 2025-03-26 is the only revision with batches.
        if let Message::Batch(_) = &message
            && revision(session.req_header()) != "2025-03-26"
        {
            return Ok(Err(GatewayError::BatchUnsupported));
        }
        // Every element is judged as if it came alone; one refusal refuses the whole batch, so
        // no part of it runs on a judgement the agent could not see.
        let mut answers = Vec::new();
        let mut refused = false;
        for element in message.elements() {
            let Message::Request {
                id, call, access, ..
            } = element
            else {
                continue;
            };
            let judged = match (call, access) {
                (Some(call), _) => Some(self.judge_call(&upstream, &token, id, call)),
                (None, Some(access)) => Some(self.judge_access(&upstream, &token, id, access)),
                (None, None) => None,
            };
            match judged {
                Some(Ok(permit)) => ctx.permit = Some(permit),
                Some(Err(refusal)) => {
                    refused = true;
                    answers.push(refusal);
                    continue;
                }
                None => {}
            }
            answers.push(GatewayError::BatchSibling { id: id.clone() });
        }
        if refused {
            return Ok(Err(match message {
                Message::Batch(_) => GatewayError::BatchRefused(answers),
                _ => answers.pop().expect("the refusal of the one request"),
            }));
        }
        ctx.message = Some(message);
        ctx.token = Some(token);
        Ok(Ok(Admission::Proxy))
    }

    /// Reads and parses a POST's JSON-RPC message, and refuses it (with its id) when its
    /// revision is unsupported or its routing headers disagree with it.
    async fn read_message(
        &self,
        session: &mut Session,
        unsupported_version: Option<String>,
    ) -> Result<Result<(Vec<u8>, Message), GatewayError>> {
        let body = match self.read_body(session).await? {
            Ok(body) => body,
            Err(e) => return Ok(Err(e)),
        };
        let message = match jsonrpc::parse(&body) {
            Ok(message) => message,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(requested) = unsupported_version {
            let id = message.id();
            return Ok(Err(GatewayError::UnsupportedProtocolVersion {
                id,
                requested,
            }));
        }
        if let Err(e) = check_routing_headers(session.req_header(), &message) {
            return Ok(Err(e));
        }
        Ok(Ok((body, message)))
    }

    /// Admits a request to a fleet (authenticated already): the gateway answers everything
    /// but `tools/call`, which is judged and sent on to its member.
    async fn admit_fleet(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        fleet: &Arc<Fleet>,
        token: Arc<VerifiedToken>,
        unsupported_version: Option<String>,
    ) -> Result<Result<Admission, GatewayError>> {
        let version = revision(session.req_header()).to_owned();
        let fleet_session = ctx.session.as_ref().map(|(id, _)| id.clone());
        let on_behalf = crate::members::OnBehalf {
            state: &self.state,
            fleet,
            token: &token,
            session: fleet_session.as_deref(),
            version: &version,
            meta: None,
        };
        match session.req_header().method {
            http::Method::POST => {}
            // Ending the agent's fleet session ends its member sessions.
            http::Method::DELETE => {
                let Some(id) = fleet_session else {
                    return Ok(Err(GatewayError::SessionRequired { id: Value::Null }));
                };
                let members = self.state.sessions.end(&id);
                crate::members::end_member_sessions(&self.state, &token, &version, members);
                write_json(session, 200, Vec::new(), &[]).await?;
                ctx.outcome = "session_ended";
                return Ok(Ok(Admission::Answered));
            }
            // A fleet has no server-to-client messages to stream.
            _ => return Ok(Err(GatewayError::MethodNotAllowed)),
        }
        let (body, message) = match self.read_message(session, unsupported_version).await? {
            Ok(read) => read,
            Err(e) => return Ok(Err(e)),
        };
        let Message::Request {
            id, method, call, ..
        } = message
        else {
            if let Message::Batch(_) = message {
                let reason = "a fleet endpoint takes one message per request, not a batch";
                return Ok(Err(GatewayError::invalid(Value::Null, reason)));
            }
            // Notifications and responses: the fleet sent no request to answer.
            write_json(session, 202, Vec::new(), &[]).await?;
            return Ok(Ok(Admission::Answered));
        };
        let stateless = version == crate::fleet::STATELESS_REVISION;
        if method != "initialize" && !stateless && fleet_session.is_none() {
            return Ok(Err(GatewayError::SessionRequired { id }));
        }
        if let Some(call) = call {
            return self
                .route_fleet_call(ctx, &on_behalf, token.clone(), id, call, &body)
                .await;
        }
        // Read already, strictly; again here, off the calls' path, for what the fleet answers
        // itself from.
        let params = serde_json::from_slice::<Value>(&body)
            .map(|mut message| message["params"].take())
            .unwrap_or_default();
        let meta = params.get("_meta").cloned();
        let mut headers = Vec::new();
        let result = match method.as_str() {
            "initialize" => {
                let requested = params["protocolVersion"].as_str();
                let result = crate::fleet::initialize_result(fleet, requested);
                let opened =
                    self.state
                        .sessions
                        .open(&fleet.name, "", Principal::of(token.claims()));
                headers.push((http::HeaderName::from_static(MCP_SESSION_ID), opened));
                result
            }
            "ping" => serde_json::json!({}),
            "server/discover" => {
                let on_behalf = crate::members::OnBehalf {
                    meta: meta.as_ref(),
                    version: crate::fleet::STATELESS_REVISION,
                    ..on_behalf
                };
                if !on_behalf.all_speak_stateless().await {
                    // Answered as a server of the session revisions would: the agent falls
                    // back to `initialize`.
                    return Ok(Err(GatewayError::MethodNotFound {
                        id,
                        method,
                        stateless: false,
                    }));
                }
                crate::fleet::discover_result(fleet)
            }
            "tools/list" => {
                let on_behalf = crate::members::OnBehalf {
                    meta: meta.as_ref(),
                    ..on_behalf
                };
                let gathered = on_behalf.list_tools().await;
                for (member, tool) in &gathered.changed {
                    self.log_decision(
                        member,
                        &token,
                        "tools/list",
                        tool,
                        None,
                        "tool_definition_changed",
                    );
                }
                crate::fleet::merged_result(gathered.tools, stateless, gathered.ttl_ms)
            }
            _ => {
                return Ok(Err(GatewayError::MethodNotFound {
                    id,
                    method,
                    stateless,
                }));
            }
        };
        let body =
            serde_json::to_vec(&serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result}))
                .expect("JSON serialises");
        write_json(session, 200, body, &headers).await?;
        ctx.outcome = "fleet";
        Ok(Ok(Admission::Answered))
    }

    /// Maps a fleet's `tools/call` back to its member, judges it as a call to
    /// `{member}/{tool}`, and readies it to be proxied there.
    async fn route_fleet_call(
        &self,
        ctx: &mut RequestCtx,
        on_behalf: &crate::members::OnBehalf<'_>,
        token: Arc<VerifiedToken>,
        id: Value,
        call: jsonrpc::ToolCall,
        body: &[u8],
    ) -> Result<Result<Admission, GatewayError>> {
        let fleet = on_behalf.fleet;
        let Some((member, tool)) = fleet.route(&call.name) else {
            return Ok(Err(GatewayError::UnknownTool {
                id,
                name: call.name,
            }));
        };
        let call = jsonrpc::ToolCall {
            name: tool.to_owned(),
            arguments: call.arguments,
        };
        let permit = match self.judge_call(member, &token, &id, &call) {
            Ok(permit) => permit,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let body = match crate::fleet::call_body(body, &call.name) {
            Ok(body) => Bytes::from(body),
            Err(e) => return Ok(Err(GatewayError::invalid(id, &e))),
        };
        let member_session = match on_behalf.member_session(member).await {
            Ok(upstream_id) => upstream_id,
            Err(e) => {
                tracing::warn!(fleet = %fleet.name, member = %member.name, "opening a member session: {e}");
                return Ok(Err(GatewayError::Upstream(e.to_string())));
            }
        };
        if let Some((_, upstream_id)) = &mut ctx.session {
            *upstream_id = member_session;
        }
        ctx.upstream = Some(member.clone());
        ctx.fleet_call = Some(FleetCall {
            body,
            tool: call.name.clone(),
        });
        ctx.permit = Some(permit);
        ctx.message = Some(Message::Request {
            id,
            method: "tools/call".to_owned(),
            call: Some(call),
            access: None,
        });
        ctx.token = Some(token);
        Ok(Ok(Admission::Proxy))
    }

    /// Judges a `tools/call`: change freezes first, then the token's constraints, then the
    /// grant's hourly rate. Only a `Permit` lets the call go upstream.
    fn judge_call(
        &self,
        upstream: &Upstream,
        token: &VerifiedToken,
        id: &Value,
        call: &jsonrpc::ToolCall,
    ) -> Result<Permit, GatewayError> {
        let tool = format!("{}/{}", upstream.name, call.name);
        if self
            .state
            .pins
            .as_ref()
            .is_some_and(|pins| pins.is_changed(&upstream.name, &call.name))
        {
            self.record_decision(
                upstream,
                token,
                "tools/call",
                &call.name,
                Some(&call.arguments),
                "tool_definition_changed",
            );
            return Err(GatewayError::ToolChanged {
                id: id.clone(),
                tool,
            });
        }
        if let Some(pattern) = self.state.controls.frozen(&tool) {
            self.record_decision(
                upstream,
                token,
                "tools/call",
                &call.name,
                Some(&call.arguments),
                "change_freeze",
            );
            return Err(GatewayError::Frozen {
                id: id.clone(),
                tool,
                pattern: pattern.as_str().to_owned(),
            });
        }
        let action = Action {
            tool: &tool,
            arguments: &call.arguments,
            at: now(),
        };
        let decision = match authorize(token, &action) {
            Decision::Permit(permit) => match permit.rate() {
                Some(rate) => {
                    let grant = permit.grant_id().unwrap_or(permit.token_id());
                    if self
                        .state
                        .rate_limiter
                        .try_acquire(grant, rate.per_hour, now())
                    {
                        Decision::Permit(permit)
                    } else {
                        Decision::Deny(DenyReason::RateExceeded {
                            per_hour: rate.per_hour,
                        })
                    }
                }
                None => Decision::Permit(permit),
            },
            deny => deny,
        };
        let rule = match &decision {
            Decision::Permit(_) => "permit",
            Decision::Deny(reason) => reason.code(),
        };
        self.record_decision(
            upstream,
            token,
            "tools/call",
            &call.name,
            Some(&call.arguments),
            rule,
        );
        match decision {
            Decision::Permit(permit) => Ok(permit),
            Decision::Deny(reason) => {
                let claims = token.claims();
                tracing::info!(
                    upstream = %upstream.name, %tool, sub = %claims.subject,
                    client_id = %claims.client_id, reason = reason.code(), "denied: {reason}"
                );
                Err(GatewayError::denied(id.clone(), tool, reason))
            }
        }
    }

    /// Counts a call's decision and hands it to the audit log.
    fn record_decision(
        &self,
        upstream: &Upstream,
        token: &VerifiedToken,
        method: &str,
        target: &str,
        arguments: Option<&Value>,
        rule: &'static str,
    ) {
        let outcome = if rule == "permit" { "allow" } else { "deny" };
        metrics::decision(&upstream.name, outcome, rule);
        self.log_decision(upstream, token, method, target, arguments, rule);
    }

    /// Hands a decision to the audit log, if one is configured.
    fn log_decision(
        &self,
        upstream: &Upstream,
        token: &VerifiedToken,
        method: &str,
        target: &str,
        arguments: Option<&Value>,
        rule: &'static str,
    ) {
        let Some(log) = &self.state.decisions else {
            return;
        };
        let claims = token.claims();
        log.record(crate::decision_log::Decision {
            at: now(),
            decision: if rule == "permit" { "allow" } else { "deny" }.to_owned(),
            sub: claims.subject.clone(),
            act: claims
                .actors
                .iter()
                .flat_map(|chain| chain.actors())
                .map(|a| a.sub.clone())
                .collect(),
            gid: claims.grant_id.clone(),
            jti: claims.token_id.clone(),
            upstream: upstream.name.clone(),
            method: method.to_owned(),
            target: target.to_owned(),
            arguments_digest: arguments.map(crate::decision_log::digest),
            rule: rule.to_owned(),
        });
    }

    /// Judges a `resources/read` or `prompts/get`: the grant must name it.
    fn judge_access(
        &self,
        upstream: &Upstream,
        token: &VerifiedToken,
        id: &Value,
        access: &jsonrpc::Access,
    ) -> Result<Permit, GatewayError> {
        let full = match access {
            jsonrpc::Access::Resource(uri) | jsonrpc::Access::Prompt(uri) => {
                format!("{}/{uri}", upstream.name)
            }
        };
        let request = match access {
            jsonrpc::Access::Resource(_) => policy::Access::Resource(&full),
            jsonrpc::Access::Prompt(_) => policy::Access::Prompt(&full),
        };
        let (method, target) = match access {
            jsonrpc::Access::Resource(uri) => ("resources/read", uri),
            jsonrpc::Access::Prompt(name) => ("prompts/get", name),
        };
        let decision = policy::authorize_access(token, request, now());
        let rule = match &decision {
            Decision::Permit(_) => "permit",
            Decision::Deny(reason) => reason.code(),
        };
        self.record_decision(upstream, token, method, target, None, rule);
        match decision {
            Decision::Permit(permit) => Ok(permit),
            Decision::Deny(reason) => Err(GatewayError::denied(id.clone(), full, reason)),
        }
    }

    /// Reads the whole request body into Pingora's replay buffer, refusing what cannot be
    /// judged: bodies above the limit and compressed bodies.
    async fn read_body(&self, session: &mut Session) -> Result<Result<Vec<u8>, GatewayError>> {
        let limit = self.state.config.max_body_bytes;
        let req = session.req_header();
        let encoded = req
            .headers
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .any(|value| {
                value.to_str().map_or(true, |v| {
                    v.split(',')
                        .any(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"))
                })
            });
        if encoded {
            return Ok(Err(GatewayError::Compressed));
        }
        let declared =
            header_str(req, header::CONTENT_LENGTH).and_then(|l| l.parse::<usize>().ok());
        if declared.is_some_and(|l| l > limit) {
            return Ok(Err(GatewayError::TooLarge { limit }));
        }
        session.enable_retry_buffering();
        let mut body = Vec::with_capacity(declared.unwrap_or(1024));
        while let Some(chunk) = session.read_request_body().await? {
            body.extend_from_slice(&chunk);
            if body.len() > limit {
                return Ok(Err(GatewayError::TooLarge { limit }));
            }
        }
        Ok(Ok(body))
    }

    /// Swaps the upstream's session id in a response for the agent's, minting one when the
    /// upstream opens a session, and forgets sessions that end.
    fn rewrite_session(
        &self,
        session: &Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = response.status;
        let ended = (session.req_header().method == http::Method::DELETE && status.is_success())
            || status == http::StatusCode::NOT_FOUND;
        if ended && let Some((id, _)) = ctx.session.take() {
            let members = self.state.sessions.end(&id);
            // A member lost the fleet session's upstream session: the agent sees 404 and
            // starts over, so the other members' sessions end too.
            if let Some(token) = &ctx.token {
                let version = revision(session.req_header());
                crate::members::end_member_sessions(&self.state, token, version, members);
            }
        }
        if ctx.fleet.is_some() {
            // Only the fleet session's own id is ever shown, whatever a member sends.
            match &ctx.session {
                Some((id, _)) => response.insert_header(MCP_SESSION_ID, id.as_str())?,
                None => {
                    response.remove_header(MCP_SESSION_ID);
                }
            }
            return Ok(());
        }
        let Some(upstream_id) = response
            .headers
            .get(MCP_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        else {
            return Ok(());
        };
        let id = match (&ctx.session, &ctx.upstream, &ctx.token) {
            (Some((id, known)), _, _) if *known == upstream_id => id.clone(),
            (_, Some(upstream), Some(token)) => {
                let id = self.state.sessions.open(
                    &upstream.name,
                    &upstream_id,
                    Principal::of(token.claims()),
                );
                ctx.session = Some((id.clone(), upstream_id));
                id
            }
            // No principal to bind it to: never pass an upstream id on.
            _ => {
                response.remove_header(MCP_SESSION_ID);
                return Ok(());
            }
        };
        response.insert_header(MCP_SESSION_ID, id)?;
        Ok(())
    }

    /// Whether the request asks for a list the token may see only part of.
    fn is_filtered_list(ctx: &RequestCtx) -> bool {
        ctx.message.as_ref().is_some_and(|message| {
            message.elements().iter().any(|m| {
                matches!(
                    m.method(),
                    Some(
                        "tools/list"
                            | "resources/list"
                            | "resources/templates/list"
                            | "prompts/list"
                    )
                )
            })
        })
    }
}

/// The 2026-07-28 routing headers (`Mcp-Method`, `Mcp-Name`) let intermediaries route without
/// reading the body. When present they must say what the body says: a header naming a harmless
/// tool over a body calling another is request smuggling against whoever trusts the header.
fn check_routing_headers(req: &RequestHeader, message: &Message) -> Result<(), GatewayError> {
    let mismatch = |reason: String| {
        Err(GatewayError::HeaderMismatch {
            id: message.id(),
            reason,
        })
    };
    let mut methods = req.headers.get_all(MCP_METHOD).iter();
    if let Some(header) = methods.next() {
        let said = header.to_str().unwrap_or_default();
        if methods.next().is_some() || Some(said) != message.method() {
            return mismatch(format!(
                "the Mcp-Method header ({said:?}) disagrees with the body's method ({:?})",
                message.method().unwrap_or_default()
            ));
        }
    }
    let mut names = req.headers.get_all(MCP_NAME).iter();
    if let Some(header) = names.next() {
        let said = header.to_str().unwrap_or_default();
        let named = match message {
            Message::Request {
                call: Some(call), ..
            } => Some(call.name.as_str()),
            Message::Request {
                access: Some(jsonrpc::Access::Resource(name) | jsonrpc::Access::Prompt(name)),
                ..
            } => Some(name.as_str()),
            _ => None,
        };
        if names.next().is_some() || Some(said) != named {
            return mismatch(format!(
                "the Mcp-Name header ({said:?}) disagrees with the body ({:?})",
                named.unwrap_or_default()
            ));
        }
    }
    Ok(())
}

/// Filters a list result to what `token` allows and, with pinning on, to tools whose
/// definitions are pinned; tools seen changed for the first time are added to `changed`.
pub(crate) fn filter_message(
    message: &str,
    upstream: &str,
    token: Option<&VerifiedToken>,
    pins: Option<&crate::pins::Pins>,
    changed: &mut Vec<String>,
) -> Option<String> {
    let constraints = token.and_then(|t| t.claims().constraints.as_ref());
    let mut hidden = 0usize;
    // One buffer for every `upstream/name`, instead of an allocation per entry.
    let mut full = String::with_capacity(upstream.len() + 64);
    let result = tools_list::filter(message, |kind, name, entry| {
        full.clear();
        full.push_str(upstream);
        full.push('/');
        full.push_str(name);
        let granted = constraints.is_some_and(|c| match kind {
            ListKind::Tools => c.allows_tool(&full),
            ListKind::Resources | ListKind::ResourceTemplates => c.allows_resource(&full),
            ListKind::Prompts => c.allows_prompt(&full),
        });
        let pinned = match (kind, pins) {
            (ListKind::Tools, Some(pins)) => match pins.observe(upstream, name, entry, now()) {
                crate::pins::Verdict::Trusted => true,
                crate::pins::Verdict::Changed { first } => {
                    if first {
                        changed.push(name.to_owned());
                    }
                    false
                }
            },
            _ => true,
        };
        let visible = granted && pinned;
        hidden += usize::from(!visible);
        visible
    });
    match result {
        Ok(filtered) => {
            if hidden > 0 {
                metrics::tools_hidden(upstream, hidden);
            }
            filtered
        }
        Err(e) => {
            tracing::warn!(upstream, "withholding a tools/list result: {e}");
            Some(
                String::from_utf8(GatewayError::FilterFailed { id: Value::Null }.body())
                    .expect("JSON is UTF-8"),
            )
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            upstream: None,
            fleet: None,
            fleet_call: None,
            token: None,
            message: None,
            permit: None,
            response: ResponseMode::Passthrough,
            live: None,
            session: None,
            killed_by: None,
            outcome: "proxied",
            started: Instant::now(),
        }
    }

    /// Runs once the request header is read. `Ok(true)` means we answered (a refusal or a
    /// gateway endpoint) and the request ends here; `Ok(false)` sends it upstream.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        match self.admit(session, ctx).await? {
            Ok(Admission::Proxy) => Ok(false),
            Ok(Admission::Answered) => Ok(true),
            Err(error) => {
                ctx.outcome = error.label();
                let metadata = resource_metadata(ctx);
                send_error(session, &error, metadata.as_deref()).await?;
                Ok(true)
            }
        }
    }

    /// Chooses the upstream connection; runs after `request_filter` let the request through.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let upstream = ctx
            .upstream
            .as_deref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream chosen"))?;
        let mut peer = HttpPeer::new(upstream.addr, upstream.tls, upstream.host.clone());
        peer.options.connection_timeout = Some(upstream.connect_timeout);
        peer.options.total_connection_timeout = Some(upstream.connect_timeout * 2);
        peer.options.read_timeout = Some(upstream.idle_timeout);
        Ok(Box::new(peer))
    }

    /// Rewrites the request header for the upstream, just before it is sent. The agent's
    /// credentials never leave the gateway.
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let upstream = ctx
            .upstream
            .as_deref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream chosen"))?;
        let judged = matches!(
            &ctx.message,
            Some(
                Message::Request { call: Some(_), .. }
                    | Message::Request {
                        access: Some(_),
                        ..
                    }
            )
        );
        if judged && ctx.permit.is_none() {
            // Unreachable by construction; refuse rather than forward an unjudged call.
            return Err(Error::explain(
                ErrorType::InternalError,
                "tools/call without a permit",
            ));
        }
        let uri = match request.uri.query() {
            Some(query) => format!("{}?{query}", upstream.path),
            None => upstream.path.clone(),
        };
        request.set_uri(
            uri.parse()
                .map_err(|e| Error::because(ErrorType::InternalError, "upstream uri", e))?,
        );
        request.insert_header(header::HOST, upstream.authority.as_str())?;
        // The agent knows the gateway's session id; the upstream knows its own.
        match &ctx.session {
            Some((_, upstream_id)) if !upstream_id.is_empty() => {
                request.insert_header(MCP_SESSION_ID, upstream_id.as_str())?
            }
            _ => {
                request.remove_header(MCP_SESSION_ID);
            }
        }
        if let Some(call) = &ctx.fleet_call {
            // The body is replaced in `request_body_filter`.
            request.remove_header(&header::TRANSFER_ENCODING);
            request.insert_header(header::CONTENT_LENGTH, call.body.len().to_string())?;
            if request.headers.contains_key(MCP_NAME) {
                request.insert_header(MCP_NAME, call.tool.as_str())?;
            }
        }
        for name in [
            header::AUTHORIZATION,
            header::PROXY_AUTHORIZATION,
            header::COOKIE,
            header::ORIGIN,
            // Responses may be rewritten, so they must arrive uncompressed.
            header::ACCEPT_ENCODING,
        ] {
            request.remove_header(&name);
        }
        request.remove_header("dpop");
        match &upstream.auth {
            DownstreamAuth::Mint => {
                let token = ctx
                    .token
                    .as_ref()
                    .ok_or_else(|| Error::explain(ErrorType::InternalError, "no verified token"))?;
                let minted = self
                    .state
                    .minter
                    .mint(token.claims(), &upstream.audience, now());
                request.insert_header(header::AUTHORIZATION, format!("Bearer {minted}"))?;
            }
            DownstreamAuth::Header(name, value) => {
                request.insert_header(name.clone(), value.expose())?;
            }
            DownstreamAuth::None => {}
        }
        Ok(())
    }

    /// A fleet's `tools/call` goes to its member under the member's own tool name. The whole
    /// body was read (and judged) in `request_filter`, so each time Pingora sends it, on a
    /// retry too, it arrives here in one piece and is swapped whole.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(call) = &ctx.fleet_call
            && body.is_some()
        {
            *body = Some(call.body.clone());
        }
        Ok(())
    }

    /// Runs once the upstream connection is made (or reused): registers the request as live
    /// work, so a revocation can end it by shutting this socket.
    async fn connected_to_upstream(
        &self,
        session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (Some(token), Some(upstream)) = (ctx.token.clone(), ctx.upstream.clone()) else {
            return Ok(());
        };
        let req = session.req_header();
        let (session_id, upstream_session) = match &ctx.session {
            Some((id, upstream_id)) => (Some(id.clone()), Some(upstream_id.clone())),
            None => (None, None),
        };
        let request_id = match &ctx.message {
            Some(Message::Request { id, .. }) => Some(id.clone()),
            _ => None,
        };
        let target = UpstreamWork {
            upstream,
            request_id,
            protocol_version: header_str(req, MCP_PROTOCOL_VERSION).map(str::to_owned),
            session_id: upstream_session,
        };
        let work = LiveWork::new(token, session_id, fd, target);
        let live = self.state.revocations.register(work);
        let revoked = live.work().killed_by().is_some();
        ctx.live = Some(live);
        if revoked {
            // Revoked since it was admitted: the request is not sent (`fail_to_proxy` answers).
            return Err(Error::explain(
                ErrorType::HTTPStatus(401),
                "revoked before the request was sent upstream",
            ));
        }
        Ok(())
    }

    /// Adjusts the response header before it goes downstream, and picks how the body will be
    /// treated: event streams and JSON `tools/list` results are rewritten, so their length
    /// changes and they are sent chunked.
    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        response.remove_header(&header::SET_COOKIE);
        response.remove_header(&header::WWW_AUTHENTICATE);
        self.rewrite_session(session, response, ctx)?;
        let content_type = response
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("text/event-stream") {
            // Every event stream is inspected, not just tools/list responses: a stream resumed
            // with Last-Event-ID may replay a list that was requested earlier.
            ctx.response = ResponseMode::Sse(SseRewriter::default());
            response.insert_header("x-accel-buffering", "no")?;
        } else if Self::is_filtered_list(ctx) {
            // Whatever the content type says, a tools/list answer is read and filtered; one
            // that is not JSON is withheld.
            ctx.response = ResponseMode::Json(Vec::new());
        } else {
            return Ok(());
        }
        response.remove_header(&header::CONTENT_LENGTH);
        response.insert_header(header::TRANSFER_ENCODING, "chunked")?;
        Ok(())
    }

    /// Runs for each chunk of the response body (synchronously, as bytes arrive).
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        let upstream_config = ctx.upstream.as_deref();
        let upstream = upstream_config.map_or("", |u| u.name.as_str());
        let token = ctx.token.as_deref();
        let pins = self.state.pins.as_ref();
        let mut changed = Vec::new();
        let killed_by = if end_of_stream {
            // Deregister before Pingora may pool the connection; note whether it was killed.
            ctx.live.take().and_then(|live| live.work().killed_by())
        } else {
            None
        };
        match &mut ctx.response {
            ResponseMode::Passthrough => {}
            ResponseMode::Json(buffer) => {
                if let Some(chunk) = body.take() {
                    buffer.extend_from_slice(&chunk);
                    if buffer.len() > MAX_JSON_RESPONSE {
                        return Err(Error::explain(
                            ErrorType::InternalError,
                            "tools/list response too large to filter",
                        ));
                    }
                }
                if end_of_stream {
                    let out = match std::str::from_utf8(buffer) {
                        Ok(message) => filter_message(message, upstream, token, pins, &mut changed)
                            .map_or_else(|| Bytes::from(std::mem::take(buffer)), Bytes::from),
                        // Not JSON at all: withhold it rather than guess.
                        Err(_) => {
                            Bytes::from(GatewayError::FilterFailed { id: Value::Null }.body())
                        }
                    };
                    *body = Some(out);
                }
            }
            ResponseMode::Sse(rewriter) => {
                let mut out = match body.take() {
                    Some(chunk) => rewriter
                        .feed(&chunk, |data| {
                            filter_message(data, upstream, token, pins, &mut changed)
                        })
                        .map_err(|e| Error::because(ErrorType::InternalError, "SSE framing", e))?,
                    None => Vec::new(),
                };
                if let Some(seq) = killed_by {
                    // The stream ends because its authority was revoked: say so, in-band.
                    let id = match &ctx.message {
                        Some(Message::Request { id, .. }) => id.clone(),
                        _ => Value::Null,
                    };
                    out.extend_from_slice(b"event: message\ndata: ");
                    out.extend_from_slice(&GatewayError::Revoked { id, seq }.body());
                    out.extend_from_slice(b"\n\n");
                }
                if !out.is_empty() {
                    *body = Some(Bytes::from(out));
                }
            }
        }
        if let (Some(upstream), Some(token)) = (upstream_config, token) {
            for tool in changed {
                self.log_decision(
                    upstream,
                    token,
                    "tools/list",
                    &tool,
                    None,
                    "tool_definition_changed",
                );
            }
        }
        Ok(None)
    }

    /// Answers when the upstream could not be reached or failed mid-request — including when
    /// a revocation shut the upstream socket, where it ends the response with the reason.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let killed_by = ctx.live.take().and_then(|live| live.work().killed_by());
        ctx.killed_by = killed_by;
        let started = session.response_written().is_some();
        let code = match (killed_by, e.etype(), e.esource()) {
            (Some(_), _, _) => 401,
            (None, ErrorType::HTTPStatus(code), _) => *code,
            (None, _, ErrorSource::Upstream) => 502,
            (
                None,
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
                ErrorSource::Downstream,
            ) => 0,
            (None, _, ErrorSource::Downstream) => 400,
            (None, _, ErrorSource::Internal | ErrorSource::Unset) => 500,
        };
        ctx.outcome = if killed_by.is_some() {
            "revoked"
        } else {
            "upstream_failed"
        };
        let id = match &ctx.message {
            Some(Message::Request { id, .. }) => id.clone(),
            _ => Value::Null,
        };
        let written = match (killed_by, started) {
            // Mid-stream: the status is gone; end the event stream with the reason, in-band.
            (Some(seq), true) if matches!(ctx.response, ResponseMode::Sse(_)) => {
                let mut event = b"event: message\ndata: ".to_vec();
                event.extend_from_slice(&GatewayError::Revoked { id, seq }.body());
                event.extend_from_slice(b"\n\n");
                session
                    .write_response_body(Some(Bytes::from(event)), true)
                    .await
            }
            (Some(seq), false) => {
                let error = GatewayError::Revoked { id, seq };
                let metadata = resource_metadata(ctx);
                let challenge: Vec<_> = error
                    .challenge(metadata.as_deref())
                    .map(|c| (header::WWW_AUTHENTICATE, c))
                    .into_iter()
                    .collect();
                write_json(session, 401, error.body(), &challenge).await
            }
            // A body already under way cannot become an error document; the client sees it cut.
            (_, true) => Ok(()),
            (None, false) if code == 0 => Ok(()),
            (None, false) => {
                let body = match code {
                    502 => GatewayError::Upstream(e.to_string()).body(),
                    _ => Vec::new(),
                };
                write_json(session, code, body, &[]).await
            }
        };
        if let Err(write) = written {
            tracing::debug!("could not send the error response: {write}");
        }
        FailToProxy {
            error_code: code,
            // Default to no reuse, which is safest.
            can_reuse_downstream: false,
        }
    }

    /// A client closing an SSE stream, or a revocation cutting one, is routine, not an error
    /// worth a log line (the kill is counted in metrics).
    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, error: &Error) -> bool {
        error.esource() == &ErrorSource::Downstream || ctx.killed_by.is_some()
    }

    /// Runs last, once per request, whatever happened.
    async fn logging(&self, _session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.live = None;
        let upstream = match (&ctx.upstream, &ctx.fleet) {
            (Some(upstream), _) => upstream.name.as_str(),
            (None, Some(fleet)) => fleet.name.as_str(),
            (None, None) => "none",
        };
        let method = metrics::method_label(ctx.message.as_ref().and_then(Message::method));
        metrics::request_finished(
            upstream,
            method,
            ctx.outcome,
            ctx.started.elapsed().as_secs_f64(),
        );
    }
}

/// Tells the upstream of each killed piece of work to stop: `notifications/cancelled` for an
/// in-flight request, then `DELETE` of its MCP session (once per session), each with a token
/// the gateway mints for the purpose.
pub(crate) fn cancel_killed(state: &Arc<GatewayState>, killed: Vec<Arc<LiveWork>>) {
    if killed.is_empty() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        // The agent-facing streams close first: cancelling upstream waits until the killed
        // requests have ended here (only this list still holds them) or CANCEL_WAIT has
        // passed, so the two do not compete for the same cores; even the requests are built
        // only then. The upstream socket's read side is already shut, so nothing more of the
        // work reaches the agent meanwhile.
        let deadline = std::time::Instant::now() + CANCEL_WAIT;
        while std::time::Instant::now() < deadline
            && killed.iter().any(|work| Arc::strong_count(work) > 1)
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let sessions = upstream_cancellations(&state, killed);
        // A revocation can end a thousand streams at once; the upstream should not get a
        // thousand connections at once in return.
        futures_util::StreamExt::for_each_concurrent(
            futures_util::stream::iter(sessions.into_values()),
            CANCEL_CONCURRENCY,
            |(cancels, end)| async move {
                let steps = cancels
                    .into_iter()
                    .map(|c| ("cancellation", c))
                    .chain([("session end", end)]);
                for (what, request) in steps {
                    match request.send().await {
                        Ok(response) if response.status().is_success() => {}
                        Ok(response) => {
                            tracing::warn!("upstream refused a {what}: {}", response.status())
                        }
                        Err(e) => tracing::warn!("sending a {what} upstream failed: {e}"),
                    }
                }
            },
        )
        .await;
    });
}

/// Per upstream session of killed work: first every cancellation, then one DELETE, in that
/// order (a session's GET stream and its calls die together, and a DELETE that overtook a
/// cancellation would leave the upstream nothing to cancel in).
fn upstream_cancellations(
    state: &GatewayState,
    killed: Vec<Arc<LiveWork>>,
) -> HashMap<(String, String), (Vec<reqwest::RequestBuilder>, reqwest::RequestBuilder)> {
    let mut sessions: HashMap<
        (String, String),
        (Vec<reqwest::RequestBuilder>, reqwest::RequestBuilder),
    > = HashMap::new();
    for work in killed {
        let target = &work.upstream;
        let Some(session_id) = target.session_id.as_deref() else {
            continue;
        };
        let upstream = &target.upstream;
        let request = |method| {
            crate::upstream_client::request(
                &state.http,
                &state.minter,
                upstream,
                work.token().claims(),
                method,
                Some(session_id),
                target.protocol_version.as_deref(),
            )
        };
        let (cancels, _) = sessions
            .entry((upstream.name.clone(), session_id.to_owned()))
            .or_insert_with(|| (Vec::new(), request(reqwest::Method::DELETE)));
        if let Some(id) = &target.request_id {
            let body = serde_json::json!({
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": id, "reason": "authority revoked"}
            });
            cancels.push(
                request(reqwest::Method::POST)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body.to_string()),
            );
        }
    }
    sessions
}

/// The longest the upstream's cancellations wait for the killed streams to end at the gateway.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// How many cancellations of killed work are in flight to upstreams at once.
const CANCEL_CONCURRENCY: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfilterable_list_is_replaced_by_an_error_not_passed_on() {
        let sneaky = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","name":"b"}]}}"#;
        let out = filter_message(sneaky, "expenses", None, None, &mut Vec::new()).unwrap();
        let value: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["error"]["code"], crate::jsonrpc_error::INTERNAL);
        assert!(!out.contains("\"b\""));
    }

    #[test]
    fn without_a_token_every_tool_is_hidden() {
        let list = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}}"#;
        let out = filter_message(list, "expenses", None, None, &mut Vec::new()).unwrap();
        assert!(out.contains(r#""tools":[]"#), "{out}");
    }
}
