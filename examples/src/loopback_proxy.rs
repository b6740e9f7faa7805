//! Loopback HTTP proxies for tests, in two shapes.
//!
//! - [`BearerProxy`] adds `Authorization: Bearer` to every request. Some clients worth testing
//!   the gateway with cannot send a token: the official MCP conformance suite's server
//!   scenarios take a URL and nothing else. Put this proxy between such a client and the
//!   gateway and the gateway sees an authenticated agent.
//! - [`RoundRobin`] sends each request to the next of several targets, as a Kubernetes
//!   Service's proxy or any load balancer without session affinity may: requests of one
//!   client, even on one connection, land on different gateway replicas.
//!
//! Everything else about a request stays the client's own: method, path, body, and in
//! particular `Host` and `Origin`, so a DNS-rebinding probe still reaches the gateway's checks
//! unaltered. Responses stream, so SSE arrives event by event; request bodies (JSON-RPC
//! messages) are read whole, up to [`MAX_REQUEST`], and sent with their length.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;

/// The largest request body forwarded; the gateway's own cap is smaller.
pub const MAX_REQUEST: usize = 1 << 20;

/// Headers not copied across: those that belong to one connection, not to the message
/// (RFC 9110 §7.6.1), and `Content-Length`, which the body as forwarded sets anew.
const HOP_BY_HOP: &[header::HeaderName] = &[
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TE,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::CONTENT_LENGTH,
];

#[derive(Debug, Clone)]
struct Forward {
    /// Origins such as `http://127.0.0.1:8080`, taken in turn.
    targets: Arc<[String]>,
    next: Arc<AtomicUsize>,
    /// The bearer token to add, if any.
    token: Option<Arc<Mutex<String>>>,
    client: reqwest::Client,
}

impl Forward {
    /// Serves `targets` on a loopback port; returns the port's address.
    async fn serve(
        targets: &[&str],
        token: Option<Arc<Mutex<String>>>,
    ) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(std::io::Error::other)?;
        let forward = Forward {
            targets: targets
                .iter()
                .map(|t| t.trim_end_matches('/').to_owned())
                .collect(),
            next: Arc::default(),
            token,
            client,
        };
        let app = axum::Router::new()
            .fallback(forward_request)
            .with_state(forward);
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "loopback proxy stopped");
            }
        });
        Ok(addr)
    }

    fn target(&self) -> &str {
        &self.targets[self.next.fetch_add(1, Ordering::Relaxed) % self.targets.len()]
    }
}

/// A running proxy; it stops when the process ends.
#[derive(Debug)]
pub struct BearerProxy {
    addr: SocketAddr,
    token: Arc<Mutex<String>>,
}

impl BearerProxy {
    /// Starts forwarding to `target` (an origin such as `http://127.0.0.1:8080`), adding
    /// `token` to every request.
    pub async fn start(target: &str, token: &str) -> std::io::Result<Self> {
        let token = Arc::new(Mutex::new(token.to_owned()));
        let addr = Forward::serve(&[target], Some(token.clone())).await?;
        Ok(Self { addr, token })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the token (tokens expire; a long run needs fresh ones).
    pub fn set_token(&self, token: &str) {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = token.to_owned();
    }
}

/// A running round-robin balancer; it stops when the process ends.
#[derive(Debug)]
pub struct RoundRobin {
    addr: SocketAddr,
}

impl RoundRobin {
    /// Starts sending each request to the next of `targets` (origins such as
    /// `http://127.0.0.1:8080`), in turn.
    pub async fn start(targets: &[&str]) -> std::io::Result<Self> {
        assert!(!targets.is_empty(), "a balancer needs a target");
        Ok(Self {
            addr: Forward::serve(targets, None).await?,
        })
    }

    /// Its origin, `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn forward_request(State(forward): State<Forward>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut headers = parts.headers;
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if let Some(token) = &forward.token {
        let token = token.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match HeaderValue::from_str(&format!("Bearer {token}")) {
            Ok(value) => headers.insert(header::AUTHORIZATION, value),
            Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "bad token").into_response(),
        };
    }
    let body = match axum::body::to_bytes(body, MAX_REQUEST).await {
        Ok(body) => body,
        Err(error) => return (StatusCode::PAYLOAD_TOO_LARGE, error.to_string()).into_response(),
    };
    let upstream = forward
        .client
        .request(parts.method, format!("{}{path}", forward.target()))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let upstream = match upstream {
        Ok(response) => response,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let mut response = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        if !HOP_BY_HOP.contains(name) {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from_stream(upstream.bytes_stream()))
        .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}
