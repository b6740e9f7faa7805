//! The Pingora proxy: where every MCP request is authenticated, judged and rewritten.
//!
//! Each phase below is a few lines that hand over to the module named for the step:
//!
//! 1. [`request_filter`](ProxyHttp::request_filter) runs [`admission`]: the route
//!    ([`context::Route`]), the verified token ([`authenticate`]), the message read once
//!    ([`request`]) and judged ([`judge`]), or for a fleet, the fleet's own answers
//!    ([`fleet`]). What may go upstream comes out as a [`context::Forward`], and a refusal is
//!    written here: nothing reaches the upstream.
//! 2. [`upstream_peer`](ProxyHttp::upstream_peer),
//!    [`upstream_request_filter`](ProxyHttp::upstream_request_filter),
//!    [`request_body_filter`](ProxyHttp::request_body_filter) and
//!    [`connected_to_upstream`](ProxyHttp::connected_to_upstream) run [`forward`], each
//!    taking the `Forward`: the connection, the rewritten request with the upstream's own
//!    credential, and the registration as live work for the kill switch.
//! 3. [`response_filter`](ProxyHttp::response_filter) and
//!    [`response_body_filter`](ProxyHttp::response_body_filter) run [`response`]: session ids
//!    swapped, list results filtered.
//!    A body larger than Pingora's replay buffer is sent by the gateway itself instead, in
//!    [`whole`], through the same steps.
//! 4. [`fail_to_proxy`](ProxyHttp::fail_to_proxy) and the answers the gateway writes itself
//!    are in [`respond`].

mod admission;
mod authenticate;
mod context;
mod fleet;
mod forward;
mod judge;
mod request;
mod respond;
mod response;
mod whole;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::connectors::ConnectorOptions;
use pingora::connectors::http::Connector;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::{Error, ErrorSource, Result};

use self::admission::{Admission, Refusal};
use self::context::{Outgoing, RequestCtx};
use crate::jsonrpc::Message;
use crate::metrics;
use crate::state::GatewayState;
use crate::telemetry;
use tracing::Instrument;

/// The proxy logic.
pub(crate) struct Gateway {
    state: Arc<GatewayState>,
    /// Connections for the bodies the gateway sends itself ([`whole`]), made with the
    /// options Pingora's own connector has.
    connector: Connector,
}

impl Gateway {
    /// A proxy over shared state.
    pub(crate) fn new(state: Arc<GatewayState>, conf: &ServerConf) -> Self {
        let connector = Connector::new(Some(ConnectorOptions::from_server_conf(conf)));
        Self { state, connector }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.state.in_flight.enter())
    }

    /// Runs once the request header is read. `Ok(true)` means we answered (a refusal or a
    /// gateway endpoint) and the request ends here; `Ok(false)` sends it upstream.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        telemetry::continue_trace(&ctx.span, &session.req_header().headers);
        let span = ctx.span.clone();
        match admission::admit(&self.state, session, ctx)
            .instrument(span)
            .await
        {
            Ok(Admission::Forward(forward)) => {
                let whole = matches!(forward.body, Outgoing::Whole { .. });
                ctx.forward = Some(forward);
                if whole {
                    // Pingora could not send this body: the gateway does, and answers.
                    whole::send(&self.state, &self.connector, session, ctx).await;
                }
                Ok(whole)
            }
            Ok(Admission::Answered(outcome)) => {
                ctx.outcome = outcome;
                Ok(true)
            }
            Err(Refusal::Refused(error)) => {
                ctx.outcome = error.label();
                let metadata = ctx.resource_metadata();
                respond::send_error(session, &error, metadata.as_deref()).await?;
                Ok(true)
            }
            Err(Refusal::Transport(error)) => Err(error),
        }
    }

    /// Chooses the upstream connection; runs after `request_filter` let the request through.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        Ok(forward::peer(ctx.forward()?))
    }

    /// Rewrites the request header for the upstream, just before it is sent.
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        forward::upstream_request(&self.state, ctx, request)
    }

    /// A body rewritten at admission (a fleet's call for its member, a retry without the
    /// gateway's own `requestState`) replaces the agent's. The whole body was read (and
    /// judged) in `request_filter`, so each time Pingora sends it, on a retry too, it arrives
    /// here in one piece and is swapped whole.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Outgoing::Replaced(rewritten) = &ctx.forward()?.body
            && body.is_some()
        {
            *body = Some(rewritten.clone());
        }
        Ok(())
    }

    /// Runs once the upstream connection is made (or reused), Pingora retries included:
    /// registers the request as live work, so a revocation can end it by shutting this socket.
    async fn connected_to_upstream(
        &self,
        session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (live, sent) = forward::register(&self.state, ctx.forward()?, session.req_header(), fd);
        ctx.live = Some(live);
        sent
    }

    /// Adjusts the response header before it goes downstream, and picks how the body will be
    /// treated.
    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        response::prepare(&self.state, session, response, ctx).await
    }

    /// Runs for each chunk of the response body (synchronously, as bytes arrive).
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        response::filter_body(&self.state, body, end_of_stream, ctx)?;
        Ok(None)
    }

    /// Answers when the upstream could not be reached or failed mid-request, including when a
    /// revocation shut the upstream socket, where it ends the response with the reason.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        respond::fail(session, e, ctx).await
    }

    /// A client closing an SSE stream, or a revocation cutting one, is routine, not an error
    /// worth a log line (the kill is counted in metrics).
    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, error: &Error) -> bool {
        error.esource() == &ErrorSource::Downstream || ctx.killed_by.is_some()
    }

    /// Runs last, once per request, whatever happened.
    async fn logging(&self, _session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        ctx.live = None;
        let message = ctx.forward.as_ref().and_then(|f| f.message());
        let method = metrics::method_label(message.and_then(Message::method));
        metrics::request_finished(
            ctx.upstream_label(),
            method,
            ctx.outcome,
            ctx.started.elapsed().as_secs_f64(),
        );
    }
}
