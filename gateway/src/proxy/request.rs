//! Reading a POST's JSON-RPC message: the whole body (capped, and refused when compressed: what
//! cannot be read cannot be judged), parsed once, strictly, and checked against the headers
//! that claim to describe it. A body up to 64 KiB is also kept in Pingora's replay buffer,
//! from which Pingora sends it; a larger one first takes its room in the gateway's
//! [`BodyBuffer`], and the gateway sends it itself.

use http::header;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use super::admission::Refusal;
use crate::body_buffer::{BodyBuffer, HeldBytes};
use crate::jsonrpc::{self, Message};
use crate::jsonrpc_error::{GatewayError, SUPPORTED_PROTOCOL_VERSIONS};
use crate::upstream::client::MCP_PROTOCOL_VERSION;

/// The 2026-07-28 header naming the method.
pub(super) const MCP_METHOD: &str = "mcp-method";
/// The 2026-07-28 header naming the tool, resource or prompt.
pub(super) const MCP_NAME: &str = "mcp-name";

/// A header's value, if present and visible ASCII.
pub(super) fn header_str(req: &RequestHeader, name: impl header::AsHeaderName) -> Option<&str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The protocol revision a request is of: a request without `MCP-Protocol-Version` is of
/// 2025-03-26 (the header came with 2025-06-18).
pub(super) fn revision(req: &RequestHeader) -> &str {
    header_str(req, MCP_PROTOCOL_VERSION).unwrap_or("2025-03-26")
}

/// The most Pingora replays from its own buffer (its `BODY_BUF_LIMIT`).
const REPLAY_BUFFER: usize = 64 * 1024;

/// Bytes held per byte of a large body: the body itself, and the strings and numbers of the
/// message parsed from it, which live until it is judged.
const HELD_PER_BYTE: usize = 2;

/// A request body, read whole.
#[derive(Debug)]
pub(super) struct ReadBody {
    pub(super) bytes: Vec<u8>,
    /// The body's room in the body buffer, when it is larger than Pingora's replay buffer.
    pub(super) held: Option<HeldBytes>,
}

/// Reads and parses a POST's JSON-RPC message, and refuses it (with its id) when its revision
/// is unsupported or its routing headers disagree with it.
pub(super) async fn read_message(
    session: &mut Session,
    (limit, buffer): (usize, &BodyBuffer),
    unsupported_version: Option<String>,
) -> Result<(ReadBody, Message), Refusal> {
    let body = read_body(session, limit, buffer).await?;
    let message = jsonrpc::parse(&body.bytes)?;
    if let Some(requested) = unsupported_version {
        let id = message.id();
        return Err(GatewayError::UnsupportedProtocolVersion {
            id,
            requested,
            supported: &SUPPORTED_PROTOCOL_VERSIONS,
        }
        .into());
    }
    check_routing_headers(session.req_header(), &message)?;
    Ok((body, message))
}

/// Reads the whole request body, refusing what cannot be judged: bodies above the limit and
/// compressed bodies. A body over [`REPLAY_BUFFER`] holds room in `buffer` for twice its
/// declared length (the body, and the message parsed from it while it is judged), or, sent
/// without one, for twice the limit until its length is known.
async fn read_body(
    session: &mut Session,
    limit: usize,
    buffer: &BodyBuffer,
) -> Result<ReadBody, Refusal> {
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
        return Err(GatewayError::Compressed.into());
    }
    let declared = header_str(req, header::CONTENT_LENGTH).and_then(|l| l.parse::<usize>().ok());
    if declared.is_some_and(|l| l > limit) {
        return Err(GatewayError::TooLarge { limit }.into());
    }
    let hold = |bytes: usize| async move {
        buffer
            .hold(bytes.saturating_mul(HELD_PER_BYTE))
            .await
            .map_err(|_| Refusal::from(GatewayError::BodyBufferFull))
    };
    let mut held = match declared {
        Some(length) if length > REPLAY_BUFFER => Some(hold(length).await?),
        _ => None,
    };
    session.enable_retry_buffering();
    let mut body = Vec::with_capacity(declared.unwrap_or(1024));
    while let Some(chunk) = session.read_request_body().await? {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            return Err(GatewayError::TooLarge { limit }.into());
        }
        if held.is_none() && body.len() > REPLAY_BUFFER {
            held = Some(hold(limit).await?);
        }
    }
    if let Some(held) = &mut held {
        held.shrink_to(body.len() * HELD_PER_BYTE);
    }
    // Whatever Pingora cannot replay, the gateway sends: such a body must hold room.
    if held.is_none() && session.retry_buffer_truncated() {
        held = Some(hold(body.len()).await?);
    }
    Ok(ReadBody { bytes: body, held })
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
