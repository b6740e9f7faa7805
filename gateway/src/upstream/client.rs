//! Requests the gateway sends to upstreams on its own account rather than passing an agent's
//! request through: cancellations and session ends after a kill, and a fleet's member sessions
//! and lists.
//!
//! Each carries the credential configured for that upstream: a token minted for the agent the
//! gateway acts for, with the upstream alone as audience, or the upstream's static header. The
//! agent's own token never leaves the gateway, on this path either.

use http::header;
use portcullis_policy::Claims;
use serde_json::Value;

use super::{Credentials, DownstreamAuth, Upstream};
use crate::clock;
use crate::sse::SseReader;

/// The MCP session header.
pub(crate) const MCP_SESSION_ID: &str = "mcp-session-id";
/// The protocol revision header.
pub(crate) const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";

/// The largest response read from an upstream by the gateway itself.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Why a request of the gateway's own got no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// Connecting, sending or reading failed (including the timeout).
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
    /// The upstream answered with an HTTP error.
    #[error("HTTP {0}")]
    Status(u16),
    /// The answer is larger than the gateway reads.
    #[error("the response exceeds {MAX_RESPONSE} bytes")]
    TooLarge,
    /// The answer is in a content coding the gateway does not read.
    #[error("the answer is in content coding {0:?}, not identity")]
    Encoded(String),
    /// The body held no response to the request.
    #[error("no JSON-RPC response to the request in the body")]
    NoResponse,
}

/// A request of the gateway's own to an upstream's MCP endpoint, on behalf of the agent whose
/// `claims` it carries.
#[derive(Debug)]
pub(crate) struct OwnRequest<'a> {
    /// Where it goes.
    pub(crate) upstream: &'a Upstream,
    /// Whom it speaks for: a minted credential names them.
    pub(crate) claims: &'a Claims,
    /// The HTTP method.
    pub(crate) method: reqwest::Method,
    /// The upstream's MCP session, if the request belongs to one.
    pub(crate) session_id: Option<&'a str>,
    /// The protocol revision to announce, if known.
    pub(crate) protocol_version: Option<&'a str>,
}

impl OwnRequest<'_> {
    /// The request, with the upstream's credential and the session and revision headers.
    pub(crate) fn build(
        self,
        http: &reqwest::Client,
        credentials: &Credentials,
    ) -> reqwest::RequestBuilder {
        let upstream = self.upstream;
        let scheme = if upstream.tls { "https" } else { "http" };
        let url = format!("{scheme}://{}{}", upstream.authority, upstream.path);
        let mut request = http
            .request(self.method, url)
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::ACCEPT_ENCODING, "identity");
        if let Some(id) = self.session_id {
            request = request.header(MCP_SESSION_ID, id);
        }
        if let Some(version) = self.protocol_version {
            request = request.header(MCP_PROTOCOL_VERSION, version);
        }
        match &upstream.auth {
            DownstreamAuth::Mint => request.bearer_auth(credentials.minter.mint(
                self.claims,
                &upstream.audience,
                clock::now(),
            )),
            DownstreamAuth::Header(name, value) => request.header(name.clone(), value.expose()),
            // Only a token already given for the person: the gateway's own requests (a
            // cancellation after a kill) do not wait for the issuer.
            DownstreamAuth::OAuth => match credentials.people.kept_token(
                &self.claims.subject,
                &upstream.resource,
                self.claims.grant_id.as_deref(),
            ) {
                Some(token) => request.bearer_auth(token.expose()),
                None => request,
            },
            DownstreamAuth::None => request,
        }
    }
}

/// What an upstream answered to a JSON-RPC request.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The `Mcp-Session-Id` it sent, if any.
    pub(crate) session_id: Option<String>,
    /// The response message with the request's id, as text.
    pub(crate) message: String,
}

/// Sends `body`, a JSON-RPC request with id `id`, and reads its response from a JSON body or
/// an event stream, within `upstream`'s timeouts.
pub(crate) async fn exchange(
    request: reqwest::RequestBuilder,
    upstream: &Upstream,
    id: &Value,
    body: &Value,
) -> Result<Answer, UpstreamError> {
    let mut response = request
        .timeout(upstream.connect_timeout + upstream.idle_timeout)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(UpstreamError::Status(response.status().as_u16()));
    }
    // Asked for `identity`; an answer in another coding cannot be read, so is not used.
    if let Some(coding) = response
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .filter(|v| !v.trim().is_empty() && !v.trim().eq_ignore_ascii_case("identity"))
    {
        return Err(UpstreamError::Encoded(coding));
    }
    let session_id = response
        .headers()
        .get(MCP_SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/event-stream"));
    // Only the envelope is read: a result (a whole tools list, say) is skipped, not built.
    #[derive(serde::Deserialize)]
    struct Envelope {
        id: Option<Value>,
        result: Option<serde::de::IgnoredAny>,
        error: Option<serde::de::IgnoredAny>,
    }
    let answers = |text: &str| {
        serde_json::from_str::<Envelope>(text)
            .is_ok_and(|m| m.id.as_ref() == Some(id) && (m.result.is_some() || m.error.is_some()))
    };
    let mut read = 0usize;
    let mut json = Vec::new();
    let mut reader = SseReader::default();
    while let Some(chunk) = response.chunk().await? {
        read += chunk.len();
        if read > MAX_RESPONSE {
            return Err(UpstreamError::TooLarge);
        }
        if !is_stream {
            json.extend_from_slice(&chunk);
            continue;
        }
        // The stream may carry notifications first; the answer ends it.
        let events = reader.feed(&chunk).map_err(|_| UpstreamError::TooLarge)?;
        if let Some(message) = events
            .into_iter()
            .filter_map(|event| event.data)
            .find(|data| answers(data))
        {
            return Ok(Answer {
                session_id,
                message,
            });
        }
    }
    match String::from_utf8(json) {
        Ok(message) if !is_stream && answers(&message) => Ok(Answer {
            session_id,
            message,
        }),
        _ => Err(UpstreamError::NoResponse),
    }
}
