//! Forwarding an admitted request: the upstream connection, the request rewritten for the
//! upstream (its path and `Host`, the agent's credentials and cookies gone, the upstream's own
//! credential in their place), a fleet call's body swapped for the member's, and the request
//! registered as live work once it has a connection. Each step takes the [`Forward`] that
//! admission made.

use http::header;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::{Error, ErrorType, Result};

use super::context::{Forward, RequestCtx};
use super::request::{MCP_NAME, header_str};
use crate::clock;
use crate::kill::{LiveGuard, LiveWork, UpstreamWork};
use crate::state::GatewayState;
use crate::telemetry::{self, Step};
use crate::upstream::DownstreamAuth;
use crate::upstream::client::{MCP_PROTOCOL_VERSION, MCP_SESSION_ID};

/// The upstream's resolved address with its connect and idle timeouts.
pub(super) fn peer(forward: &Forward) -> Box<HttpPeer> {
    let upstream = &forward.upstream;
    let mut peer = HttpPeer::new(upstream.addr, upstream.tls, upstream.host.clone());
    peer.options.connection_timeout = Some(upstream.connect_timeout);
    peer.options.total_connection_timeout = Some(upstream.connect_timeout * 2);
    peer.options.read_timeout = Some(upstream.idle_timeout);
    Box::new(peer)
}

/// Readies the request header for the upstream: rewritten (the minting step), and carrying
/// the trace on from the upstream call's span, which starts here.
pub(super) fn upstream_request(
    state: &GatewayState,
    ctx: &mut RequestCtx,
    request: &mut RequestHeader,
) -> Result<()> {
    {
        let _minting = ctx.span.in_scope(|| telemetry::span(Step::Mint)).entered();
        rewrite_request(state, ctx.forward()?, request)?;
    }
    let upstream = ctx.span.in_scope(|| telemetry::span(Step::Upstream));
    for (name, value) in telemetry::propagation_headers(&upstream) {
        request.insert_header(name, value)?;
    }
    ctx.upstream_span = Some(upstream);
    Ok(())
}

/// Rewrites the request header for the upstream. The agent's credentials never leave the
/// gateway.
fn rewrite_request(
    state: &GatewayState,
    forward: &Forward,
    request: &mut RequestHeader,
) -> Result<()> {
    let upstream = &forward.upstream;
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
    match &forward.session {
        Some(session) if !session.upstream_id.is_empty() => {
            request.insert_header(MCP_SESSION_ID, session.upstream_id.as_str())?
        }
        _ => {
            request.remove_header(MCP_SESSION_ID);
        }
    }
    if let Some(length) = forward.body.replaced_len() {
        request.remove_header(&header::TRANSFER_ENCODING);
        request.insert_header(header::CONTENT_LENGTH, length.to_string())?;
    }
    if let Some(call) = &forward.fleet_call
        && request.headers.contains_key(MCP_NAME)
    {
        request.insert_header(MCP_NAME, call.tool.as_str())?;
    }
    for name in [
        header::AUTHORIZATION,
        header::PROXY_AUTHORIZATION,
        header::COOKIE,
        header::ORIGIN,
    ] {
        request.remove_header(&name);
    }
    // Responses may be read and rewritten, so they must arrive uncompressed. Without the
    // header any coding would be acceptable (RFC 9110 §12.5.3), so `identity` is asked for.
    request.insert_header(header::ACCEPT_ENCODING, "identity")?;
    request.remove_header("dpop");
    match &upstream.auth {
        DownstreamAuth::Mint => {
            let minted = state.credentials.minter.mint(
                forward.token.claims(),
                &upstream.audience,
                clock::now(),
            );
            request.insert_header(header::AUTHORIZATION, format!("Bearer {minted}"))?;
        }
        DownstreamAuth::Header(name, value) => {
            request.insert_header(name.clone(), value.expose())?;
        }
        DownstreamAuth::OAuth => {
            let token = forward.person_token.as_ref().ok_or_else(|| {
                Error::explain(
                    ErrorType::InternalError,
                    "no person's token for an oauth upstream",
                )
            })?;
            request.insert_header(header::AUTHORIZATION, format!("Bearer {}", token.expose()))?;
        }
        DownstreamAuth::None => {}
    }
    Ok(())
}

/// Registers the request as live work on upstream socket `fd`, so a revocation can end it.
/// A request that a revocation already covers is refused here, before it is written to the
/// upstream (`fail_to_proxy` answers); the guard is returned either way, so the refusal is
/// known as a kill.
pub(super) fn register(
    state: &GatewayState,
    forward: &Forward,
    req: &RequestHeader,
    fd: std::os::unix::io::RawFd,
) -> (LiveGuard, Result<()>) {
    let (session_id, upstream_session) = match &forward.session {
        Some(session) => (Some(session.id.clone()), Some(session.upstream_id.clone())),
        None => (None, None),
    };
    let request_id = forward.message().and_then(|message| match message {
        crate::jsonrpc::Message::Request { id, .. } => Some(id.clone()),
        _ => None,
    });
    let target = UpstreamWork {
        upstream: forward.upstream.clone(),
        request_id,
        protocol_version: header_str(req, MCP_PROTOCOL_VERSION).map(str::to_owned),
        session_id: upstream_session,
    };
    let work = LiveWork::new(forward.token.clone(), session_id, fd, target);
    let live = state.revocations.register(work);
    let sent = match live.work().killed_by() {
        // Revoked since it was admitted: the request is not sent.
        Some(_) => Err(Error::explain(
            ErrorType::HTTPStatus(401),
            "revoked before the request was sent upstream",
        )),
        None => Ok(()),
    };
    (live, sent)
}
