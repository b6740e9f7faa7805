//! Answers the gateway writes itself: its own documents, refusals before anything went
//! upstream, and the end of a response that failed or was killed on the way.

use bytes::Bytes;
use http::header;
use pingora::http::ResponseHeader;
use pingora::proxy::{FailToProxy, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};
use serde_json::Value;

use super::context::{RequestCtx, ResponseMode};
use crate::jsonrpc_error::GatewayError;

/// Writes a whole JSON answer (never cached) with `extra` headers.
pub(super) async fn write_json(
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

/// Answers with `error`, its status and, on a 401, a challenge naming the resource's metadata.
pub(super) async fn send_error(
    session: &mut Session,
    error: &GatewayError,
    resource_metadata: Option<&str>,
) -> Result<()> {
    let headers: Vec<_> = error
        .challenge(resource_metadata)
        .map(|c| (header::WWW_AUTHENTICATE, c))
        .into_iter()
        .chain(
            error
                .dpop_nonce()
                .map(|n| (header::HeaderName::from_static("dpop-nonce"), n.to_owned())),
        )
        .chain(
            error
                .retry_after()
                .map(|seconds| (header::RETRY_AFTER, seconds.to_string())),
        )
        .collect();
    write_json(session, error.status(), error.body(), &headers).await
}

/// The last event of a stream whose authority was revoked: says so, in-band.
pub(super) fn revoked_event(id: Value, seq: i64) -> Vec<u8> {
    let mut event = b"event: message\ndata: ".to_vec();
    event.extend_from_slice(&GatewayError::Revoked { id, seq }.body());
    event.extend_from_slice(b"\n\n");
    event
}

/// Answers a request whose upstream could not be reached or failed mid-request, including
/// when a revocation shut the upstream socket, where it ends the response with the reason.
pub(super) async fn fail(session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
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
    let id = ctx.request_id();
    let written = match (killed_by, started) {
        // Mid-stream: the status is gone; end the event stream with the reason, in-band.
        (Some(seq), true) if matches!(ctx.response, ResponseMode::Sse(_)) => {
            let event = revoked_event(id, seq);
            session
                .write_response_body(Some(Bytes::from(event)), true)
                .await
        }
        (Some(seq), false) => {
            let metadata = ctx.resource_metadata();
            send_error(
                session,
                &GatewayError::Revoked { id, seq },
                metadata.as_deref(),
            )
            .await
        }
        // A body already under way cannot become an error document; the client sees it cut.
        (_, true) => Ok(()),
        (None, false) if code == 0 => Ok(()),
        (None, false) => {
            let body = match code {
                502 => GatewayError::Upstream {
                    id,
                    detail: e.to_string(),
                }
                .body(),
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
