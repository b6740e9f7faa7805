//! Thin wrappers over the gateway's private parsers, for the fuzz targets in `fuzz/` only.
//!
//! Built only with the `fuzzing` feature, which nothing but `fuzz/Cargo.toml` turns on. Each
//! wrapper calls exactly the code the proxy runs on attacker-controlled bytes and reshapes
//! nothing but its result, so a target that holds for the wrapper holds for the proxy:
//! [`read_request`] is the one strict parse of an agent's body (`jsonrpc::parse`),
//! [`ListFilterStream`] and [`filter_json_list`] are what `proxy::response::filter_body` does to
//! an upstream's event stream and JSON answer (pinning off).

use portcullis_policy::VerifiedToken;
use serde_json::Value;

use crate::jsonrpc::{self, Access, Message};
use crate::jsonrpc_error::GatewayError;
use crate::list_filter::filter_message;
use crate::sse::SseRewriter;

/// What the gateway read from one JSON-RPC message (one element of a batch).
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The method of a request or notification; `None` for a response.
    pub method: Option<String>,
    /// For `tools/call`: the tool's name and its arguments (`Null` when absent).
    pub call: Option<(String, Value)>,
    /// The resource URI a request names (`resources/read`, `completion/complete`, …).
    pub resource: Option<String>,
    /// The prompt a request names (`prompts/get`, `completion/complete`).
    pub prompt: Option<String>,
}

/// Reads a request body as the proxy does (`jsonrpc::parse`): one [`Reading`] for a single
/// message, one per element for a batch, or the error the agent would be answered with.
pub fn read_request(body: &[u8]) -> Result<Vec<Reading>, GatewayError> {
    let message = jsonrpc::parse(body)?;
    Ok(message.elements().iter().map(reading).collect())
}

fn reading(message: &Message) -> Reading {
    let (call, access) = match message {
        Message::Request { call, access, .. } => (
            call.as_ref()
                .map(|call| (call.name.clone(), call.arguments.clone())),
            access.as_ref(),
        ),
        Message::Notification { .. } | Message::Response | Message::Batch(_) => (None, None),
    };
    Reading {
        method: message.method().map(str::to_owned),
        call,
        resource: match access {
            Some(Access::Resource(uri)) => Some(uri.clone()),
            _ => None,
        },
        prompt: match access {
            Some(Access::Prompt(name)) => Some(name.clone()),
            _ => None,
        },
    }
}

/// An upstream's `text/event-stream` answer as the proxy rewrites it: framed by the
/// `SseRewriter`, each event's data through `list_filter::filter_message` for `token`.
#[derive(Debug)]
pub struct ListFilterStream {
    rewriter: SseRewriter,
    upstream: String,
    token: VerifiedToken,
}

impl ListFilterStream {
    /// A stream from `upstream` (its configured name) answering an agent holding `token`.
    pub fn new(upstream: &str, token: VerifiedToken) -> Self {
        Self {
            rewriter: SseRewriter::default(),
            upstream: upstream.to_owned(),
            token,
        }
    }

    /// Feeds one chunk (the last one when `ended`) and returns the bytes sent to the agent;
    /// `None` where the proxy fails the response (an event beyond the size cap).
    pub fn feed(&mut self, chunk: &[u8], ended: bool) -> Option<Vec<u8>> {
        let (upstream, token) = (self.upstream.as_str(), Some(&self.token));
        self.rewriter
            .feed(chunk, ended, |data| {
                filter_message(data, upstream, token, None, &mut Vec::new())
            })
            .ok()
    }
}

/// An upstream's whole JSON answer as the proxy rewrites it for an agent holding `token`:
/// filtered, passed on unchanged, or withheld when it is not UTF-8.
pub fn filter_json_list(body: &[u8], upstream: &str, token: &VerifiedToken) -> Vec<u8> {
    match std::str::from_utf8(body) {
        Ok(message) => filter_message(message, upstream, Some(token), None, &mut Vec::new())
            .map_or_else(|| body.to_vec(), String::into_bytes),
        Err(_) => GatewayError::FilterFailed { id: Value::Null }.body(),
    }
}
