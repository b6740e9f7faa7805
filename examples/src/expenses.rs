//! `expenses`: an example MCP server an expense agent can be granted access to.
//!
//! Its shape follows from what a demo of delegated authorization needs to show:
//!
//! - The tools span what a grant should and should not cover: `submit_expense` takes arguments a
//!   grant can limit (`amount`, `category`), `list_expenses` only reads, `delete_all_expenses` is
//!   the destructive tool no grant should ever include, `slow_report` runs long enough to
//!   carry progress notifications and a cancellation through the gateway, and
//!   `attach_receipt` takes a document of any size (a scanned receipt's text, megabytes of it).
//! - It does not take the gateway's word for who is calling. Every request must carry a
//!   downstream token (`Authorization: Bearer`) issued for this server's audience, with an `act`
//!   chain, and verified against the gateway's published keys. The verified user and actor chain
//!   are what get recorded with an expense, so a test can see exactly who the server believed.
//! - [`ExpensesState`] records every HTTP request that arrives, refused ones included, so tests
//!   can assert what reached the server rather than what the gateway reports it let through.
//!
//! The token check is an axum layer in front of the rmcp service: a refused request never
//! reaches MCP handling, and an accepted one carries its [`VerifiedToken`] in the request
//! extensions, where tools read it from the [`Parts`] rmcp hands them.
//!
//! Long because it is a whole MCP server (tools, the token check, the request log tests read),
//! kept in one file a reader can take in as an example.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use portcullis_policy::{
    ActorRule, Expected, JwkSet, KeySet, VerifiedToken, Verifier, VerifyError,
};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::ProgressNotificationParam;
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::RwLock;

/// An unknown `kid` is attacker-controlled, so it may trigger a JWKS fetch at most this often.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(5);
/// A hung JWKS endpoint must not hang every request waiting on it.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds the request log of a long-running server (a load test sends millions).
const MAX_SEEN_REQUESTS: usize = 10_000;
const DEFAULT_REPORT_SECONDS: u32 = 10;
const MAX_REPORT_SECONDS: u32 = 60;

/// How the server checks the downstream tokens the gateway forwards.
#[derive(Debug, Clone)]
pub struct DownstreamAuth {
    /// The `iss` the tokens must carry: the gateway's issuer identifier.
    pub issuer: String,
    /// Where the gateway publishes its signing keys as a JWKS.
    pub jwks_url: String,
    /// The `aud` the tokens must include: this server's identifier at the gateway.
    pub audience: String,
}

/// How to run the expenses server.
#[derive(Debug, Clone)]
pub struct ExpensesConfig {
    /// The token check; `None` accepts every request, which is only for local experiments.
    pub auth: Option<DownstreamAuth>,
}

/// What the server has seen and stored, shared between the server and whoever started it.
///
/// Cloning is cheap and every clone sees the same state.
#[derive(Debug, Clone, Default)]
pub struct ExpensesState {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    seen: Mutex<VecDeque<SeenRequest>>,
    ledger: Mutex<Ledger>,
    cancelled_reports: AtomicU64,
    redefined: Mutex<std::collections::HashMap<String, String>>,
    catalog: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Default)]
struct Ledger {
    last_id: u64,
    expenses: Vec<Expense>,
    receipts: Vec<Receipt>,
}

/// A receipt attached by `attach_receipt`.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// The expense it belongs to.
    pub expense: u64,
    /// Its text, as received.
    pub content: String,
    /// The user who attached it.
    pub user: String,
}

/// One HTTP request as it reached the server, before MCP handling.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// The HTTP method.
    pub http_method: String,
    /// The JSON-RPC method of a POSTed message, when it has one.
    pub rpc_method: Option<String>,
    /// The names of that message's `params`, sorted.
    pub params: Vec<String>,
    /// The bearer token presented, verified or not.
    pub bearer: Option<String>,
    /// `sub` of the verified token.
    pub subject: Option<String>,
    /// The verified token's `act` chain, current actor first.
    pub actors: Vec<String>,
    /// `iss` of the verified token.
    pub issuer: Option<String>,
    /// `aud` of the verified token.
    pub audience: Vec<String>,
    /// Whether the token verified. The claim fields are only filled in when it did: claims of a
    /// token that failed verification are whatever the sender wanted them to be.
    pub verified: bool,
    /// The W3C `traceparent` header, when the request carried one.
    pub traceparent: Option<String>,
    /// The body as it arrived: its length and SHA-256 (hex).
    pub body_len: usize,
    pub body_sha256: String,
    /// `params._meta.traceparent` (SEP-414), when the message carried one.
    pub meta_traceparent: Option<String>,
}

/// An expense recorded by `submit_expense`.
#[derive(Debug, Clone, PartialEq)]
pub struct Expense {
    /// Sequential id, starting at 1.
    pub id: u64,
    /// The amount.
    pub amount: f64,
    /// The category, as given.
    pub category: String,
    /// The user it was submitted for: the token's `sub`, or `anonymous` without auth.
    pub user: String,
    /// The agents it was submitted through, current actor first.
    pub actors: Vec<String>,
}

/// The state is plain data changed in single statements, so a panic elsewhere while a lock was
/// held cannot have left it half-updated: recovering from poisoning is safe.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ExpensesState {
    /// Adds `count` generated tools (`catalog_0000`, …) to sessions opened from now on: a large
    /// catalog for measuring `tools/list` filtering. They answer every call with "ok".
    pub fn set_catalog(&self, count: usize) {
        self.inner.catalog.store(count, Ordering::Relaxed);
    }

    /// Changes what a tool says about itself for sessions opened from now on: the rug pull a
    /// compromised or malicious server would attempt (for tests of tool pinning).
    pub fn redefine_tool(&self, tool: &str, description: &str) {
        lock(&self.inner.redefined).insert(tool.to_owned(), description.to_owned());
    }

    /// The HTTP requests that reached the server, oldest first, refused ones included (only the
    /// most recent 10 000 are kept).
    pub fn seen_requests(&self) -> Vec<SeenRequest> {
        lock(&self.inner.seen).iter().cloned().collect()
    }

    /// How many of those requests were a `tools/call` (other requests, such as a client's GET
    /// stream, come and go on their own schedule).
    pub fn tool_calls_seen(&self) -> usize {
        lock(&self.inner.seen)
            .iter()
            .filter(|r| r.rpc_method.as_deref() == Some("tools/call"))
            .count()
    }

    /// The expenses recorded so far, oldest first.
    pub fn expenses(&self) -> Vec<Expense> {
        lock(&self.inner.ledger).expenses.clone()
    }

    /// How many `slow_report` calls stopped early because they were cancelled.
    pub fn cancelled_reports(&self) -> u64 {
        self.inner.cancelled_reports.load(Ordering::Relaxed)
    }

    fn record_request(&self, request: SeenRequest) {
        let mut seen = lock(&self.inner.seen);
        if seen.len() == MAX_SEEN_REQUESTS {
            seen.pop_front();
        }
        seen.push_back(request);
    }

    fn add_expense(
        &self,
        amount: f64,
        category: String,
        user: String,
        actors: Vec<String>,
    ) -> Expense {
        let mut ledger = lock(&self.inner.ledger);
        ledger.last_id += 1;
        let expense = Expense {
            id: ledger.last_id,
            amount,
            category,
            user,
            actors,
        };
        ledger.expenses.push(expense.clone());
        expense
    }

    fn record_cancelled_report(&self) {
        self.inner.cancelled_reports.fetch_add(1, Ordering::Relaxed);
    }

    fn delete_all_expenses(&self) -> usize {
        std::mem::take(&mut lock(&self.inner.ledger).expenses).len()
    }

    /// Every receipt attached so far, in order.
    pub fn receipts(&self) -> Vec<Receipt> {
        lock(&self.inner.ledger).receipts.clone()
    }
}

/// The MCP server on `/mcp`, behind the downstream-token check when `config.auth` is set.
///
/// rmcp refuses `Host` headers other than `localhost`, `127.0.0.1` and `::1` (DNS rebinding
/// protection), so the server is reachable by those names only.
pub fn router(config: ExpensesConfig, state: ExpensesState) -> axum::Router {
    let auth = match config.auth {
        Some(auth) => Some(Arc::new(Authenticator::new(auth))),
        None => {
            tracing::warn!("expenses server runs WITHOUT token verification: anyone can call it");
            None
        }
    };
    let tools_state = state.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(ExpensesServer::new(tools_state.clone())),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_max_request_body_bytes(MAX_BODY),
    );
    axum::Router::new()
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(Gate { auth, state }, gate))
}

/// Serves [`router`] on `listener` until the process ends.
pub async fn serve(
    listener: TcpListener,
    config: ExpensesConfig,
    state: ExpensesState,
) -> std::io::Result<()> {
    // Progress notifications are small SSE writes; Nagle would hold each one back.
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::warn!(%error, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(config, state)).await
}

// --- The downstream-token check ---

#[derive(Clone)]
struct Gate {
    auth: Option<Arc<Authenticator>>,
    state: ExpensesState,
}

/// What a request's body says: its JSON-RPC method, the names of its params, its length and
/// digest. The body is buffered and put back.
struct BodySummary {
    method: Option<String>,
    params: Vec<String>,
    len: usize,
    sha256: String,
    meta_traceparent: Option<String>,
}

/// The largest body the server reads.
const MAX_BODY: usize = 64 * 1024 * 1024;

async fn rpc_method(request: Request) -> Result<(Request, BodySummary), Response> {
    if request.method() != axum::http::Method::POST {
        let empty = BodySummary {
            method: None,
            params: Vec::new(),
            len: 0,
            sha256: crate::sha256_hex(b""),
            meta_traceparent: None,
        };
        return Ok((request, empty));
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE.into_response())?;
    let message = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default();
    let method = message
        .get("method")
        .and_then(|m| m.as_str())
        .map(str::to_owned);
    let mut params: Vec<String> = message
        .get("params")
        .and_then(|p| p.as_object())
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    params.sort();
    let meta_traceparent = message["params"]["_meta"]["traceparent"]
        .as_str()
        .map(str::to_owned);
    let summary = BodySummary {
        meta_traceparent,
        method,
        params,
        len: bytes.len(),
        sha256: crate::sha256_hex(&bytes),
    };
    Ok((
        Request::from_parts(parts, axum::body::Body::from(bytes)),
        summary,
    ))
}

async fn gate(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let (mut request, body) = match rpc_method(request).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let bearer = bearer_token(request.headers()).map(str::to_owned);
    let seen = Seen {
        http_method: request.method().to_string(),
        rpc_method: body.method,
        params: body.params,
        body_len: body.len,
        body_sha256: body.sha256,
        meta_traceparent: body.meta_traceparent,
        bearer,
        traceparent: request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let bearer = seen.bearer.clone();
    let Some(auth) = &gate.auth else {
        gate.state.record_request(SeenRequest::unverified(seen));
        return next.run(request).await;
    };
    let outcome = match &bearer {
        Some(token) => auth.verify(token).await,
        None => Err("no bearer token".to_owned()),
    };
    match outcome {
        Ok(token) => {
            gate.state
                .record_request(SeenRequest::verified(seen, &token));
            request.extensions_mut().insert(token);
            next.run(request).await
        }
        Err(reason) => {
            tracing::warn!(
                method = %request.method(),
                uri = %request.uri(),
                %reason,
                "refused request"
            );
            gate.state.record_request(SeenRequest::unverified(seen));
            unauthorized()
        }
    }
}

/// The token of a single `Authorization: Bearer` header; two Authorization headers are
/// ambiguous, so they count as none.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The same answer for every failure (RFC 6750 §3): the reason is logged, not told to a caller
/// who may be probing.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)],
        Json(serde_json::json!({
            "error": "invalid_token",
            "error_description": "a valid downstream token is required",
        })),
    )
        .into_response()
}

/// What is known of a request before its token is checked.
struct Seen {
    http_method: String,
    rpc_method: Option<String>,
    params: Vec<String>,
    bearer: Option<String>,
    traceparent: Option<String>,
    body_len: usize,
    body_sha256: String,
    meta_traceparent: Option<String>,
}

impl SeenRequest {
    fn unverified(seen: Seen) -> Self {
        Self {
            http_method: seen.http_method,
            rpc_method: seen.rpc_method,
            params: seen.params,
            bearer: seen.bearer,
            subject: None,
            actors: Vec::new(),
            issuer: None,
            audience: Vec::new(),
            verified: false,
            traceparent: seen.traceparent,
            body_len: seen.body_len,
            body_sha256: seen.body_sha256,
            meta_traceparent: seen.meta_traceparent,
        }
    }

    fn verified(seen: Seen, token: &VerifiedToken) -> Self {
        let claims = token.claims();
        Self {
            http_method: seen.http_method,
            rpc_method: seen.rpc_method,
            params: seen.params,
            bearer: seen.bearer,
            subject: Some(claims.subject.clone()),
            actors: actor_subjects(token),
            issuer: Some(claims.issuer.clone()),
            audience: claims.audience.clone(),
            verified: true,
            traceparent: seen.traceparent,
            body_len: seen.body_len,
            body_sha256: seen.body_sha256,
            meta_traceparent: seen.meta_traceparent,
        }
    }
}

fn actor_subjects(token: &VerifiedToken) -> Vec<String> {
    token
        .claims()
        .actors
        .iter()
        .flat_map(|chain| chain.actors())
        .map(|actor| actor.sub.clone())
        .collect()
}

/// Verifies downstream tokens against the gateway's keys, fetched when first needed and again
/// when a token names a key not seen yet (the gateway rotated).
struct Authenticator {
    config: DownstreamAuth,
    http: reqwest::Client,
    verifier: RwLock<Option<Verifier>>,
    /// When the last fetch started; held across the fetch so concurrent misses fetch once.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl Authenticator {
    fn new(config: DownstreamAuth) -> Self {
        Self {
            config,
            http: reqwest::Client::builder()
                .timeout(JWKS_TIMEOUT)
                .build()
                // Building only fails when the TLS backend cannot start.
                .expect("HTTP client for the JWKS"),
            verifier: RwLock::new(None),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    async fn verify(&self, token: &str) -> Result<VerifiedToken, String> {
        let expected = Expected {
            audience: &self.config.audience,
            now: unix_now(),
            actor: ActorRule::Required,
        };
        match self.verify_with_current_keys(token, &expected).await {
            Some(Ok(verified)) => return Ok(verified),
            Some(Err(error)) if !matches!(error, VerifyError::UnknownKid(_)) => {
                return Err(error.to_string());
            }
            // No keys yet, or a key newer than ours: refresh once, then decide.
            _ => self.refresh_keys().await?,
        }
        match self.verify_with_current_keys(token, &expected).await {
            Some(result) => result.map_err(|error| error.to_string()),
            None => Err("the gateway's signing keys are not available yet".to_owned()),
        }
    }

    async fn verify_with_current_keys(
        &self,
        token: &str,
        expected: &Expected<'_>,
    ) -> Option<Result<VerifiedToken, VerifyError>> {
        let verifier = self.verifier.read().await;
        verifier.as_ref().map(|v| v.verify(token, expected))
    }

    async fn refresh_keys(&self) -> Result<(), String> {
        let mut last_fetch = self.last_fetch.lock().await;
        if last_fetch.is_some_and(|at| at.elapsed() < MIN_REFETCH_INTERVAL) {
            // Someone just fetched (so retrying with their keys is right), or the kid is
            // unknown to the gateway too (so fetching again would not help).
            return Ok(());
        }
        *last_fetch = Some(Instant::now());
        let keys = self.fetch_keys().await.map_err(|error| {
            format!(
                "fetching signing keys from {} failed: {error:#}",
                self.config.jwks_url
            )
        })?;
        tracing::info!(
            url = %self.config.jwks_url,
            keys = keys.len(),
            "fetched gateway signing keys"
        );
        *self.verifier.write().await = Some(Verifier::new(self.config.issuer.clone(), keys));
        Ok(())
    }

    async fn fetch_keys(&self) -> anyhow::Result<KeySet> {
        let jwks: JwkSet = self
            .http
            .get(&self.config.jwks_url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(KeySet::from_jwks(&jwks)?)
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

// --- The MCP tools ---

#[derive(Clone)]
struct ExpensesServer {
    state: ExpensesState,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct AttachReceipt {
    /// The expense the receipt is for.
    expense: u64,
    /// The receipt's text.
    content: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct SubmitExpense {
    /// The amount to claim; must be positive.
    amount: f64,
    /// What the expense is for, such as `travel` or `meals`.
    category: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct SlowReport {
    /// How long the report takes, in seconds (default 10, at most 60).
    seconds: Option<u32>,
}

/// Who is calling, as the verified token says: the user and the actor chain.
fn caller(parts: &Parts) -> (String, Vec<String>) {
    match parts.extensions.get::<VerifiedToken>() {
        Some(token) => (token.claims().subject.clone(), actor_subjects(token)),
        None => ("anonymous".to_owned(), Vec::new()),
    }
}

/// `120 travel for alice via expense-agent`
fn describe(expense: &Expense) -> String {
    let mut text = format!(
        "{} {} for {}",
        expense.amount, expense.category, expense.user
    );
    for actor in &expense.actors {
        text.push_str(" via ");
        text.push_str(actor);
    }
    text
}

/// A generated tool of a realistic size: a description and a schema of three typed arguments.
fn catalog_tool(i: usize) -> rmcp::handler::server::router::tool::ToolRoute<ExpensesServer> {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "account": {"type": "string", "description": "The account to act on."},
            "amount": {"type": "number", "minimum": 0},
            "dry_run": {"type": "boolean", "default": true}
        },
        "required": ["account"]
    });
    let tool = rmcp::model::Tool::new(
        format!("catalog_{i:04}"),
        format!("Catalog operation number {i}: reads or changes one account of the ledger."),
        schema.as_object().expect("an object").clone(),
    );
    rmcp::handler::server::router::tool::ToolRoute::new_dyn(tool, |_context| {
        Box::pin(async {
            Ok(
                rmcp::model::CallToolResult::success(vec![rmcp::model::ContentBlock::text("ok")])
                    .into(),
            )
        })
    })
}

#[tool_router]
impl ExpensesServer {
    fn new(state: ExpensesState) -> Self {
        let mut tool_router = Self::tool_router();
        for i in 0..state.inner.catalog.load(Ordering::Relaxed) {
            tool_router.add_route(catalog_tool(i));
        }
        for (tool, description) in lock(&state.inner.redefined).iter() {
            if let Some(route) = tool_router.map.get_mut(tool.as_str()) {
                route.attr.description = Some(description.clone().into());
            }
        }
        Self { state, tool_router }
    }

    #[tool(description = "Submit an expense claim for the signed-in user.")]
    async fn submit_expense(
        &self,
        Parameters(SubmitExpense { amount, category }): Parameters<SubmitExpense>,
        Extension(parts): Extension<Parts>,
    ) -> Result<String, ErrorData> {
        if !(amount.is_finite() && amount > 0.0) {
            return Err(ErrorData::invalid_params(
                "amount must be a positive number",
                None,
            ));
        }
        let (user, actors) = caller(&parts);
        let expense = self.state.add_expense(amount, category, user, actors);
        Ok(format!(
            "expense #{} recorded: {}",
            expense.id,
            describe(&expense)
        ))
    }

    #[tool(description = "Attach a receipt's text, of any length, to an expense.")]
    async fn attach_receipt(
        &self,
        Parameters(AttachReceipt { expense, content }): Parameters<AttachReceipt>,
        Extension(parts): Extension<Parts>,
    ) -> String {
        let (user, _) = caller(&parts);
        let bytes = content.len();
        lock(&self.state.inner.ledger).receipts.push(Receipt {
            expense,
            content,
            user,
        });
        format!("receipt of {bytes} bytes attached to expense #{expense}")
    }

    #[tool(
        description = "List every recorded expense.",
        annotations(read_only_hint = true)
    )]
    async fn list_expenses(&self) -> String {
        let expenses = self.state.expenses();
        if expenses.is_empty() {
            return "no expenses recorded".to_owned();
        }
        expenses
            .iter()
            .map(|expense| format!("#{} {}", expense.id, describe(expense)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tool(
        description = "Delete every recorded expense, of every user. Irreversible.",
        annotations(destructive_hint = true)
    )]
    async fn delete_all_expenses(&self) -> String {
        let deleted = self.state.delete_all_expenses();
        format!("deleted all {deleted} expenses")
    }

    #[tool(
        description = "Build a report, one step per second, with progress when asked for.",
        annotations(read_only_hint = true)
    )]
    async fn slow_report(
        &self,
        Parameters(SlowReport { seconds }): Parameters<SlowReport>,
        context: RequestContext<RoleServer>,
    ) -> String {
        let seconds = seconds
            .unwrap_or(DEFAULT_REPORT_SECONDS)
            .min(MAX_REPORT_SECONDS);
        let progress_token = context.meta.get_progress_token();
        for elapsed in 1..=seconds {
            tokio::select! {
                () = context.ct.cancelled() => {
                    self.state.record_cancelled_report();
                    return format!("report cancelled after {} of {seconds} s", elapsed - 1);
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if let Some(token) = &progress_token {
                let progress = ProgressNotificationParam::new(token.clone(), f64::from(elapsed))
                    .with_total(f64::from(seconds))
                    .with_message(format!("{elapsed} of {seconds} s"));
                // A client that went away cancels the request; the next loop turn sees that.
                if let Err(error) = context.peer.notify_progress(progress).await {
                    tracing::debug!(%error, "could not send progress");
                }
            }
        }
        format!("report ready after {seconds} s")
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "expenses",
    instructions = "Expense claims, recorded for the user and agents named by the caller's token."
)]
impl ServerHandler for ExpensesServer {}
