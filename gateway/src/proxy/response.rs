//! The upstream's answer on its way to the agent: cookies and challenges dropped, the MCP
//! session id swapped for the gateway's own, and list results filtered: in JSON bodies
//! (collected, then rewritten) and in event streams (rewritten event by event, never buffered
//! whole). An event stream killed by a revocation ends with an event that says so.

use bytes::Bytes;
use http::header;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use serde_json::Value;

use super::context::{Forward, McpSession, RequestCtx, ResponseMode};
use super::judge::Judge;
use super::request::revision;
use super::respond::revoked_event;
use crate::fleet::members;
use crate::jsonrpc::Message;
use crate::jsonrpc_error::GatewayError;
use crate::list_filter::filter_message;
use crate::metrics;
use crate::session::{ClientAbilities, MAX_UPSTREAM_ID, Principal};
use crate::sse::SseRewriter;
use crate::state::GatewayState;
use crate::upstream::DownstreamAuth;
use crate::upstream::client::MCP_SESSION_ID;

/// The largest JSON list response collected for filtering.
const MAX_JSON_RESPONSE: usize = 16 * 1024 * 1024;

/// Adjusts the response header and picks how the body will be treated: event streams and JSON
/// list results are rewritten, so their length changes and they are sent chunked.
pub(super) async fn prepare(
    state: &GatewayState,
    session: &Session,
    response: &mut ResponseHeader,
    ctx: &mut RequestCtx,
) -> Result<()> {
    response.remove_header(&header::SET_COOKIE);
    response.remove_header(&header::WWW_AUTHENTICATE);
    let forward = ctx
        .forward
        .as_mut()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "request not admitted"))?;
    let upstream = forward.upstream.clone();
    let upstream = upstream.name.as_str();
    if response.status == http::StatusCode::UNAUTHORIZED {
        // The agent's token was verified here; what the upstream refused is the gateway's
        // own credential. Passed on, the 401 would send an OAuth client to sign in again.
        tracing::warn!(%upstream, "the upstream refused the gateway's credential (HTTP 401)");
        if forward.upstream.auth == DownstreamAuth::OAuth {
            // The person's token there: the next call asks the issuer for a fresh one.
            let claims = forward.token.claims();
            state
                .credentials
                .people
                .forget(&claims.subject, &forward.upstream.resource);
        }
        metrics::upstream_answer_refused(upstream, "credential_refused");
        return Err(Error::explain(
            ErrorType::HTTPStatus(502),
            "the upstream refused the gateway's credential",
        ));
    }
    rewrite_session(state, session, response, forward).await?;
    let content_type = response
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mode = if content_type.starts_with("text/event-stream") {
        // Every event stream is inspected, not just list responses: a stream resumed with
        // Last-Event-ID may replay a list that was requested earlier.
        ResponseMode::Sse(SseRewriter::default())
    } else if is_filtered_list(forward) {
        // Whatever the content type says, a list answer is read and filtered; one that is not
        // JSON is withheld.
        ResponseMode::Json(Vec::new())
    } else {
        return Ok(());
    };
    // What the gateway must inspect, it must be able to read: it asked for `identity`, and an
    // upstream that encodes anyway is refused rather than passed on unread.
    let encoding = header_text(response, header::CONTENT_ENCODING);
    if !encoding.trim().is_empty() && !encoding.trim().eq_ignore_ascii_case("identity") {
        tracing::warn!(%upstream, %encoding, "withholding an answer in a content coding");
        metrics::upstream_answer_refused(upstream, "unreadable_encoding");
        return Err(Error::explain(
            ErrorType::HTTPStatus(502),
            "the upstream answered in a content coding the gateway cannot inspect",
        ));
    }
    if let ResponseMode::Sse(_) = mode {
        response.insert_header("x-accel-buffering", "no")?;
    }
    ctx.response = mode;
    response.remove_header(&header::CONTENT_LENGTH);
    response.insert_header(header::TRANSFER_ENCODING, "chunked")?;
    Ok(())
}

/// A header's value as text: all of its lines joined, `""` when absent, and a value that is
/// not text kept as something that is not `identity` either.
fn header_text(response: &ResponseHeader, name: header::HeaderName) -> String {
    let values: Vec<&str> = response
        .headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("\u{fffd}"))
        .collect();
    values.join(",")
}

/// Swaps the upstream's session id in a response for the agent's, minting one when the
/// upstream opens a session, and forgets sessions that end.
async fn rewrite_session(
    state: &GatewayState,
    session: &Session,
    response: &mut ResponseHeader,
    forward: &mut Forward,
) -> Result<()> {
    let status = response.status;
    let ended = (session.req_header().method == http::Method::DELETE && status.is_success())
        || status == http::StatusCode::NOT_FOUND;
    if ended && let Some(ended) = forward.session.take() {
        let fleet_members = state.sessions.end(&ended.id).await;
        // A member lost the fleet session's upstream session: the agent sees 404 and starts
        // over, so the other members' sessions end too.
        let version = revision(session.req_header());
        members::end_member_sessions(state, &forward.token, version, fleet_members);
    }
    if forward.fleet_call.is_some() {
        // Only the fleet session's own id is ever shown, whatever a member sends.
        match &forward.session {
            Some(session) => response.insert_header(MCP_SESSION_ID, session.id.as_str())?,
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
    let id = match &forward.session {
        Some(known) if known.upstream_id == upstream_id => known.id.clone(),
        _ => {
            let upstream = &forward.upstream.name;
            if upstream_id.len() > MAX_UPSTREAM_ID {
                tracing::warn!(%upstream, "the upstream opened a session with an id over {MAX_UPSTREAM_ID} bytes");
                metrics::upstream_answer_refused(upstream, "session_id_too_long");
                return Err(Error::explain(
                    ErrorType::HTTPStatus(502),
                    "the upstream's session id is too long to carry",
                ));
            }
            let principal = Principal::of(forward.token.claims());
            // Sessions open at `initialize`, whose capabilities the id keeps.
            let client = match forward.judged.message() {
                Some(Message::Request {
                    url_elicitation, ..
                }) => ClientAbilities {
                    url_elicitation: *url_elicitation,
                },
                _ => ClientAbilities::default(),
            };
            let id = state
                .sessions
                .open(upstream, &upstream_id, &principal, client)
                .await;
            forward.session = Some(McpSession {
                id: id.clone(),
                upstream_id,
                client,
            });
            id
        }
    };
    response.insert_header(MCP_SESSION_ID, id)?;
    Ok(())
}

/// Whether the request asks for a list the token may see only part of.
fn is_filtered_list(forward: &Forward) -> bool {
    forward.message().is_some_and(|message| {
        message.elements().iter().any(|m| {
            matches!(
                m.method(),
                Some("tools/list" | "resources/list" | "resources/templates/list" | "prompts/list")
            )
        })
    })
}

/// Filters one chunk of the response body (synchronously, as bytes arrive).
pub(super) fn filter_body(
    state: &GatewayState,
    body: &mut Option<Bytes>,
    end_of_stream: bool,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let killed_by = if end_of_stream {
        // Deregister before Pingora may pool the connection; note whether it was killed.
        ctx.live.take().and_then(|live| live.work().killed_by())
    } else {
        None
    };
    let Some(forward) = &ctx.forward else {
        return Ok(());
    };
    let upstream = forward.upstream.name.as_str();
    let token = Some(&*forward.token);
    let pins = state.pins.as_ref();
    let mut changed = Vec::new();
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
                    Err(_) => Bytes::from(GatewayError::FilterFailed { id: Value::Null }.body()),
                };
                *body = Some(out);
            }
        }
        ResponseMode::Sse(rewriter) => {
            let chunk = body.take().unwrap_or_default();
            let mut out = rewriter
                .feed(&chunk, end_of_stream, |data| {
                    filter_message(data, upstream, token, pins, &mut changed)
                })
                .map_err(|e| Error::because(ErrorType::InternalError, "SSE framing", e))?;
            if let Some(seq) = killed_by {
                // The stream ends because its authority was revoked: say so, in-band.
                out.extend_from_slice(&revoked_event(forward.request_id(), seq));
            }
            if !out.is_empty() {
                *body = Some(Bytes::from(out));
            }
        }
    }
    let judge = Judge {
        state,
        upstream: &forward.upstream,
        token: &forward.token,
        client: ClientAbilities::default(),
    };
    judge.log_changed_tools(&changed);
    Ok(())
}
