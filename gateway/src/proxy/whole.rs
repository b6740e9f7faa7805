//! Forwarding a body larger than Pingora's replay buffer.
//!
//! Admission reads a body whole before it is judged. Pingora sends what was read from its
//! replay buffer, which holds 64 KiB; past that it keeps nothing to send, so a larger body
//! ([`Outgoing::Whole`]) is sent here instead, over a connection from Pingora's own
//! connector, with the same steps as Pingora's path: the request rewritten by
//! [`forward::upstream_request`], the request registered as live work on this socket, the
//! response header and body through [`response`], and a failure or a kill answered by
//! [`respond::fail`]. The body's room in the body buffer is given back as soon as the upstream
//! has it.

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use super::context::{Outgoing, RequestCtx};
use super::{forward, respond, response};
use crate::state::GatewayState;

/// Sends the admitted request in `ctx` upstream and its answer to the agent; whatever fails is
/// answered as Pingora's path answers it.
pub(super) async fn send(
    state: &GatewayState,
    connector: &Connector,
    session: &mut Session,
    ctx: &mut RequestCtx,
) {
    if let Err(e) = exchange(state, connector, session, ctx).await {
        respond::fail(session, &e, ctx).await;
    }
}

async fn exchange(
    state: &GatewayState,
    connector: &Connector,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let forward = ctx.forward()?;
    let Outgoing::Whole { body, .. } = &forward.body else {
        return Err(Error::explain(
            ErrorType::InternalError,
            "only a body Pingora cannot replay is sent by the gateway",
        ));
    };
    let body = body.clone();
    let peer = forward::peer(forward);
    let (mut upstream, _reused) = connector
        .get_http_session(&*peer)
        .await
        .map_err(|e| e.into_up())?;
    upstream.set_read_timeout(peer.options.read_timeout);
    upstream.set_write_timeout(peer.options.read_timeout);
    let mut request = session.req_header().clone();
    forward::upstream_request(state, ctx, &mut request)?;
    let fd = upstream.stream().map(|stream| stream.id()).ok_or_else(|| {
        Error::explain(
            ErrorType::InternalError,
            "an upstream connection without a socket",
        )
    })?;
    let (live, sent) = forward::register(state, ctx.forward()?, session.req_header(), fd);
    ctx.live = Some(live);
    sent?;
    upstream
        .write_request_header(Box::new(request))
        .await
        .map_err(|e| e.into_up())?;
    upstream
        .write_request_body(body, true)
        .await
        .map_err(|e| e.into_up())?;
    upstream
        .finish_request_body()
        .await
        .map_err(|e| e.into_up())?;
    if let Some(forward) = ctx.forward.as_mut() {
        // The upstream has the body: its room goes back to the buffer.
        forward.body = Outgoing::AsSent;
    }
    relay_response(state, &mut upstream, session, ctx).await?;
    let idle = peer.options.idle_timeout;
    connector.release_http_session(upstream, &*peer, idle).await;
    Ok(())
}

/// Reads the upstream's answer and writes it to the agent, through the same filters as
/// Pingora's path.
async fn relay_response(
    state: &GatewayState,
    upstream: &mut HttpSession,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<()> {
    upstream
        .read_response_header()
        .await
        .map_err(|e| e.into_up())?;
    let mut header = upstream
        .response_header()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no response header read"))?
        .clone();
    response::prepare(state, session, &mut header, ctx).await?;
    session
        .write_response_header(Box::new(header), false)
        .await
        .map_err(|e| e.into_down())?;
    loop {
        let mut chunk: Option<Bytes> = upstream
            .read_response_body()
            .await
            .map_err(|e| e.into_up())?;
        let done = chunk.is_none() || upstream.response_done();
        response::filter_body(state, &mut chunk, done, ctx)?;
        if chunk.is_some() || done {
            session
                .write_response_body(chunk, done)
                .await
                .map_err(|e| e.into_down())?;
        }
        if done {
            return Ok(());
        }
    }
}
