//! Admission at a fleet's endpoint (`/mcp/{fleet}`), authenticated already: the gateway is
//! the fleet's MCP server and answers everything itself but `tools/call`, which is mapped back
//! to its member, judged as `{member}/{tool}`, and from then on forwarded as an ordinary call
//! to that member. See `crate::fleet` for the naming and the members' conversations.

use std::sync::Arc;
use tracing::Instrument;

use pingora::proxy::Session;
use portcullis_policy::VerifiedToken;
use serde_json::Value;

use super::admission::{Admission, Authenticated, Refusal};
use super::context::{FleetCall, Forward, McpSession, Outgoing};
use super::judge::Judge;
use super::request::{ReadBody, read_message, revision};
use super::respond::write_json;
use crate::fleet::members::{self, MemberError, OnBehalf};
use crate::fleet::{self, Fleet};
use crate::jsonrpc::{self, Message};
use crate::jsonrpc_error::{GatewayError, SESSION_PROTOCOL_VERSIONS};
use crate::session::{ClientAbilities, Principal};
use crate::state::GatewayState;
use crate::telemetry::{self, Step};
use crate::upstream::client::MCP_SESSION_ID;

/// Admits a request to `fleet`.
pub(super) async fn admit(
    state: &GatewayState,
    session: &mut Session,
    fleet: &Arc<Fleet>,
    authenticated: Authenticated,
) -> Result<Admission, Refusal> {
    let Authenticated {
        token,
        session: mcp_session,
        unsupported_version,
    } = authenticated;
    let version = revision(session.req_header()).to_owned();
    let fleet_session = mcp_session.as_ref().map(|s| s.id.clone());
    let on_behalf = OnBehalf {
        state,
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
                return Err(GatewayError::SessionRequired { id: Value::Null }.into());
            };
            let ended = state.sessions.end(&id).await;
            members::end_member_sessions(state, &token, &version, ended);
            write_json(session, 200, Vec::new(), &[]).await?;
            return Ok(Admission::Answered("session_ended"));
        }
        // A fleet has no server-to-client messages to stream.
        _ => return Err(GatewayError::MethodNotAllowed.into()),
    }
    let limits = (state.settings.max_body_bytes, &state.body_buffer);
    let (body, message) = read_message(session, limits, unsupported_version).await?;
    let Message::Request {
        id,
        method,
        call,
        url_elicitation,
        ..
    } = message
    else {
        if let Message::Batch(_) = message {
            let reason = "a fleet endpoint takes one message per request, not a batch";
            return Err(GatewayError::invalid(Value::Null, reason).into());
        }
        // Notifications and responses: the fleet sent no request to answer.
        write_json(session, 202, Vec::new(), &[]).await?;
        return Ok(Admission::Answered("fleet"));
    };
    let stateless = version == fleet::STATELESS_REVISION;
    if method != "initialize" && !stateless && fleet_session.is_none() {
        return Err(GatewayError::SessionRequired { id }.into());
    }
    // A stateless request goes to members as it is: a member without that revision would
    // answer it with its raw error, or leave its tools out. The agent is told the revisions
    // the fleet speaks instead, and starts over with `initialize`.
    if stateless && method != "server/discover" && !on_behalf.all_speak_stateless().await {
        return Err(GatewayError::UnsupportedProtocolVersion {
            id,
            requested: version.clone(),
            supported: &SESSION_PROTOCOL_VERSIONS,
        }
        .into());
    }
    if let Some(call) = call {
        let forward = route_call(
            &on_behalf,
            &token,
            mcp_session,
            id,
            (call, url_elicitation),
            body,
            // Without a trace in its headers, the agent's own in `_meta` goes on.
            !session.req_header().headers.contains_key("traceparent"),
        )
        .await?;
        return Ok(Admission::Forward(forward));
    }
    // Read already, strictly; again here, off the calls' path, for what the fleet answers
    // itself from.
    let params = serde_json::from_slice::<Value>(&body.bytes)
        .map(|mut message| message["params"].take())
        .unwrap_or_default();
    let meta = params.get("_meta").cloned();
    let mut headers = Vec::new();
    let result = match method.as_str() {
        "initialize" => {
            let requested = params["protocolVersion"].as_str();
            let result = fleet::initialize_result(fleet, requested);
            let principal = Principal::of(token.claims());
            let client = ClientAbilities { url_elicitation };
            let opened = state
                .sessions
                .open(&fleet.name, "", &principal, client)
                .await;
            headers.push((http::HeaderName::from_static(MCP_SESSION_ID), opened));
            result
        }
        "ping" => serde_json::json!({}),
        "server/discover" => {
            let on_behalf = OnBehalf {
                meta: meta.as_ref(),
                version: fleet::STATELESS_REVISION,
                ..on_behalf
            };
            if !on_behalf.all_speak_stateless().await {
                // Answered as a server of the session revisions would: the agent falls back
                // to `initialize`.
                return Err(GatewayError::MethodNotFound {
                    id,
                    method,
                    stateless: false,
                }
                .into());
            }
            fleet::discover_result(fleet)
        }
        "tools/list" => {
            let on_behalf = OnBehalf {
                meta: meta.as_ref(),
                ..on_behalf
            };
            let gathered = on_behalf.list_tools().await;
            for (member, tool) in &gathered.changed {
                let judge = Judge {
                    state,
                    upstream: member,
                    token: &token,
                    client: ClientAbilities::default(),
                };
                judge.log_changed_tools(std::slice::from_ref(tool));
            }
            fleet::merged_result(gathered.tools, stateless, gathered.ttl_ms)
        }
        _ => {
            return Err(GatewayError::MethodNotFound {
                id,
                method,
                stateless,
            }
            .into());
        }
    };
    let body =
        serde_json::to_vec(&serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result}))
            .expect("JSON serialises");
    write_json(session, 200, body, &headers).await?;
    Ok(Admission::Answered("fleet"))
}

/// Maps a fleet's `tools/call` back to its member, judges it as a call to `{member}/{tool}`,
/// and readies it to be forwarded there, in the member's session behind the agent's.
async fn route_call(
    on_behalf: &OnBehalf<'_>,
    token: &Arc<VerifiedToken>,
    mcp_session: Option<McpSession>,
    id: Value,
    (call, url_elicitation): (jsonrpc::ToolCall, bool),
    body: ReadBody,
    keep_trace: bool,
) -> Result<Forward, Refusal> {
    let fleet = on_behalf.fleet;
    let Some((member, tool)) = fleet.route(&call.name) else {
        return Err(GatewayError::UnknownTool {
            id,
            name: call.name,
        }
        .into());
    };
    let tool = tool.to_owned();
    let gateway_state = call.gateway_state;
    let message = Message::Request {
        id: id.clone(),
        method: "tools/call".to_owned(),
        call: Some(jsonrpc::ToolCall {
            name: tool.clone(),
            arguments: call.arguments,
            gateway_state,
        }),
        access: None,
        url_elicitation,
    };
    let judge = Judge {
        state: on_behalf.state,
        upstream: member,
        token,
        client: mcp_session
            .as_ref()
            .map(|session| session.client)
            .unwrap_or_default(),
    };
    let judged = judge
        .message(message)
        .instrument(telemetry::span(Step::Judge))
        .await?;
    let trace = telemetry::propagation_headers(&tracing::Span::current());
    let rewrite = jsonrpc::Rewrite {
        tool: Some(&tool),
        strip_gateway_state: gateway_state,
        trace: &trace,
        keep_trace,
    };
    let rewritten = jsonrpc::rewrite(&body.bytes, &rewrite)
        .map_err(|e| GatewayError::invalid(id.clone(), &e))?;
    let member_session = on_behalf.member_session(member).await.map_err(|e| {
        tracing::warn!(fleet = %fleet.name, member = %member.name, "opening a member session: {e}");
        match e {
            MemberError::Session(_) => GatewayError::SessionUnavailable,
            e => GatewayError::Upstream {
                id,
                detail: e.to_string(),
            },
        }
    })?;
    Ok(Forward {
        upstream: member.clone(),
        token: token.clone(),
        judged,
        session: mcp_session.map(|session| McpSession {
            upstream_id: member_session,
            ..session
        }),
        fleet_call: Some(FleetCall { tool }),
        body: Outgoing::of(body, Some(rewritten)),
        // A fleet's members take no person's own token (the configuration refuses it).
        person_token: None,
    })
}
