//! Just enough MCP over streamable HTTP, spoken with plain `reqwest`.
//!
//! The load generator deliberately does not use the rmcp client: a client with its own
//! session task, message router and JSON model per request would cost as much CPU as the
//! servers it measures, on the same two cores. What is left is what a real client must do:
//! `initialize`, `notifications/initialized`, then requests carrying the session's
//! `Mcp-Session-Id` and a JSON-RPC id that is unique in that session (a stateful rmcp session
//! routes answers by id, so a repeated id leaves the second request waiting forever).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use portcullis_examples::agent::DpopKey;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The protocol version the sessions negotiate: a version with `initialize` and sessions,
/// which is what the gateway and the expenses server serve today.
const PROTOCOL_VERSION: &str = "2025-06-18";
const SESSION_ID: &str = "mcp-session-id";
const PROTOCOL_HEADER: &str = "mcp-protocol-version";
/// A request that takes longer than this is counted as an error, not waited on.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Sessions and streams are opened this many at a time: a thousand connections at once
/// overflow the servers' listen queues (the kernel then drops or resets some), which would
/// measure the accept queue rather than get the test started.
pub(crate) const OPEN_CONCURRENCY: usize = 16;

/// The HTTP client every session of a run shares (one connection pool).
///
/// Proxies from the environment are ignored: every request goes to 127.0.0.1, never through
/// whatever `HTTP_PROXY` names.
pub(crate) fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()?)
}

/// A JSON-RPC request sent many times: everything but the id is serialised once.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// `{"jsonrpc":"2.0","method":…,"params":…,"id":` — the id and `}` are appended per send.
    head: String,
}

impl Message {
    pub(crate) fn new(method: &str, params: &Value) -> Self {
        Self {
            head: format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":{params},"id":"#),
        }
    }

    /// `tools/call` of `tool` with `arguments`.
    pub(crate) fn tool_call(tool: &str, arguments: &Value) -> Self {
        Self::new("tools/call", &json!({"name": tool, "arguments": arguments}))
    }

    fn with_id(&self, id: u64) -> String {
        format!("{}{id}}}", self.head)
    }
}

/// One MCP session on one endpoint (the gateway's or the server's own).
#[derive(Debug)]
pub(crate) struct McpSession {
    http: reqwest::Client,
    url: String,
    /// Sent with every request after `initialize`: session id, protocol version, and a bearer
    /// token unless the token is bound to `dpop`.
    headers: HeaderMap,
    next_id: u64,
    /// The token, and the key it is bound to: every request then carries a fresh proof.
    dpop: Option<(String, Arc<DpopKey>)>,
}

/// `request` with the DPoP credential: the bound token and a fresh proof for `url`.
fn with_proof(
    request: reqwest::RequestBuilder,
    url: &str,
    (token, key): &(String, Arc<DpopKey>),
) -> reqwest::RequestBuilder {
    request
        .header(AUTHORIZATION, format!("DPoP {token}"))
        .header("dpop", key.proof(url, Some(token)))
}

fn base_headers(token: Option<&str>) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    if let Some(token) = token {
        headers.insert(
            AUTHORIZATION,
            HeaderValue::try_from(format!("Bearer {token}"))?,
        );
    }
    Ok(headers)
}

/// Whether `body` holds `needle` (bodies are a few hundred bytes: a plain scan is enough).
pub(crate) fn contains(body: &[u8], needle: &[u8]) -> bool {
    body.windows(needle.len()).any(|window| window == needle)
}

impl McpSession {
    /// `initialize` and `notifications/initialized` on `url`, with `token` as the bearer.
    pub(crate) async fn open(
        http: &reqwest::Client,
        url: &str,
        token: Option<&str>,
    ) -> anyhow::Result<Self> {
        Self::open_with(http, url, token, None).await
    }

    /// As [`open`](Self::open); with `dpop`, `token` is bound to that key and goes with a
    /// proof on every request.
    pub(crate) async fn open_with(
        http: &reqwest::Client,
        url: &str,
        token: Option<&str>,
        dpop: Option<Arc<DpopKey>>,
    ) -> anyhow::Result<Self> {
        let dpop = match (token, dpop) {
            (Some(token), Some(key)) => Some((token.to_owned(), key)),
            _ => None,
        };
        let authorize = |request: reqwest::RequestBuilder| match &dpop {
            Some(credential) => with_proof(request, url, credential),
            None => request,
        };
        let mut headers = base_headers(token.filter(|_| dpop.is_none()))?;
        let initialize = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "portcullis-loadtest", "version": env!("CARGO_PKG_VERSION")}
            }
        });
        let response = authorize(http.post(url).headers(headers.clone()))
            .body(initialize.to_string())
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .with_context(|| format!("initialize at {url}"))?;
        let status = response.status();
        let session_id = response.headers().get(SESSION_ID).cloned();
        let body = response.bytes().await?;
        if !status.is_success() || !contains(&body, b"\"result\"") {
            bail!(
                "initialize at {url}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        let session_id = session_id.with_context(|| format!("{url} opened no MCP session"))?;
        headers.insert(SESSION_ID, session_id);
        headers.insert(PROTOCOL_HEADER, HeaderValue::from_static(PROTOCOL_VERSION));
        let response = authorize(http.post(url).headers(headers.clone()))
            .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("notifications/initialized at {url}: {}", response.status());
        }
        Ok(Self {
            http: http.clone(),
            url: url.to_owned(),
            headers,
            next_id: 1,
            dpop,
        })
    }

    /// Replaces the bearer token (delegation tokens live five minutes; a long run renews them).
    pub(crate) fn set_token(&mut self, token: &str) -> anyhow::Result<()> {
        if let Some((bound, _)) = &mut self.dpop {
            token.clone_into(bound);
            return Ok(());
        }
        self.headers.insert(
            AUTHORIZATION,
            HeaderValue::try_from(format!("Bearer {token}"))?,
        );
        Ok(())
    }

    fn take_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// A POST of `message` with the next id of this session; the caller sends it.
    pub(crate) fn post(&mut self, message: &Message) -> reqwest::RequestBuilder {
        let body = message.with_id(self.take_id());
        let request = self.http.post(&self.url).headers(self.headers.clone());
        match &self.dpop {
            Some(credential) => with_proof(request, &self.url, credential),
            None => request,
        }
        .body(body)
    }

    /// The same POST as the bytes of a whole HTTP/1.1 request, and the address to send it to,
    /// for a reader below the HTTP client (see `timed_stream`).
    pub(crate) fn raw_post(&mut self, message: &Message) -> anyhow::Result<(SocketAddr, Vec<u8>)> {
        if self.dpop.is_some() {
            bail!("raw requests are not made with DPoP proofs");
        }
        let url = reqwest::Url::parse(&self.url)?;
        let addr = url
            .socket_addrs(|| None)?
            .into_iter()
            .next()
            .with_context(|| format!("{url} names no address"))?;
        let body = message.with_id(self.take_id());
        let mut request = format!(
            "POST {} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n",
            url.path(),
            body.len()
        )
        .into_bytes();
        for (name, value) in &self.headers {
            request.extend_from_slice(name.as_str().as_bytes());
            request.extend_from_slice(b": ");
            request.extend_from_slice(value.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(body.as_bytes());
        Ok((addr, request))
    }

    /// The session's standalone event stream (`GET` with the session id); the caller sends it.
    pub(crate) fn event_stream(&self) -> reqwest::RequestBuilder {
        self.http
            .get(&self.url)
            .headers(self.headers.clone())
            .header(ACCEPT, "text/event-stream")
    }

    /// Sends `message` and reads the whole answer (an SSE stream from rmcp, which ends after
    /// the response): an error unless it is a 2xx holding a JSON-RPC `result`.
    pub(crate) async fn call(&mut self, message: &Message) -> Result<(), String> {
        let response = self
            .post(message)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("sending: {e}"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("reading the body: {e}"))?;
        if status.is_success() && contains(&body, b"\"result\"") {
            return Ok(());
        }
        Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ))
    }
}

/// Opens `count` sessions on `url`, a few at a time; session `i` uses `tokens[i % len]`
/// (no token at all when `tokens` is empty).
pub(crate) async fn open_sessions(
    http: &reqwest::Client,
    url: &str,
    tokens: &[String],
    count: usize,
) -> anyhow::Result<Vec<McpSession>> {
    open_sessions_with(http, url, tokens, count, None).await
}

/// As [`open_sessions`], with the tokens bound to `dpop` when given.
pub(crate) async fn open_sessions_with(
    http: &reqwest::Client,
    url: &str,
    tokens: &[String],
    count: usize,
    dpop: Option<Arc<DpopKey>>,
) -> anyhow::Result<Vec<McpSession>> {
    let permits = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    let mut opening = JoinSet::new();
    for i in 0..count {
        let (http, url, permits, dpop) =
            (http.clone(), url.to_owned(), permits.clone(), dpop.clone());
        let token = (!tokens.is_empty()).then(|| tokens[i % tokens.len()].clone());
        opening.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            McpSession::open_with(&http, &url, token.as_deref(), dpop).await
        });
    }
    let mut sessions = Vec::with_capacity(count);
    while let Some(opened) = opening.join_next().await {
        sessions.push(opened??);
    }
    Ok(sessions)
}

/// One server-sent event.
#[derive(Debug)]
pub(crate) struct Event {
    /// The event's `data:` lines, joined with `\n` (empty for events without data, such as
    /// rmcp's priming event).
    pub(crate) data: String,
}

/// Cuts a byte stream into server-sent events; chunks may split an event anywhere.
#[derive(Debug, Default)]
pub(crate) struct EventStream {
    pending: Vec<u8>,
}

impl EventStream {
    /// Feeds a chunk; returns the events it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        // CRLF line ends are read as LF; the servers here send LF only.
        self.pending
            .extend(chunk.iter().copied().filter(|&byte| byte != b'\r'));
        let mut events = Vec::new();
        while let Some(end) = self.pending.windows(2).position(|pair| pair == b"\n\n") {
            let raw: Vec<u8> = self.pending.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&raw[..end]);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|data| data.strip_prefix(' ').unwrap_or(data))
                .collect();
            events.push(Event {
                data: data.join("\n"),
            });
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_send_gets_the_next_id() {
        let message = Message::tool_call("list_expenses", &json!({}));
        let body: Value = serde_json::from_str(&message.with_id(7)).unwrap();
        assert_eq!(body["id"], 7);
        assert_eq!(body["method"], "tools/call");
        assert_eq!(body["params"]["name"], "list_expenses");
    }

    #[test]
    fn events_split_across_chunks_are_put_back_together() {
        let mut stream = EventStream::default();
        assert!(
            stream
                .push(b"id: 0\nretry: 3000\n\nevent: message\ndata: {\"a\"")
                .len()
                == 1
        );
        let events = stream.push(b":1}\r\n\r\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, r#"{"a":1}"#);
    }
}
